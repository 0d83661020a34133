package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// decodeAll decodes a whole segment image, returning the entries decoded
// before the first error (io.EOF is not an error).
func decodeAll(b []byte) (segmentHeader, []entry, error) {
	r := bytes.NewReader(b)
	h, err := readHeader(r)
	if err != nil {
		return h, nil, err
	}
	d := newDecoder(r, HeaderSize)
	var es []entry
	for {
		seq, data, err := d.next()
		if err == io.EOF {
			return h, es, nil
		}
		if err != nil {
			return h, es, err
		}
		es = append(es, entry{seq, string(data)})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	b := appendHeader(nil, 42)
	want := []entry{{42, "a"}, {43, ""}, {44, string(make([]byte, 3<<20))}, {7, "any sequence"}}
	for _, e := range want {
		b = appendEntry(b, e.seq, []byte(e.data))
	}
	h, got, err := decodeAll(b)
	if err != nil || h.FirstSeq != 42 || h.Version != Version {
		t.Fatalf("decode: %+v, %v", h, err)
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entry %d = %d/%d bytes, want %d/%d bytes", i, got[i].seq, len(got[i].data), want[i].seq, len(want[i].data))
		}
	}
}

func TestFormatErrors(t *testing.T) {
	good := appendEntry(appendHeader(nil, 1), 1, []byte("hello"))
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", good[:HeaderSize-1], ErrTruncated},
		{"magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), ErrBadMagic},
		{"header checksum", mod(func(b []byte) []byte { b[9] ^= 1; return b }), ErrHeaderChecksum},
		{"version", append(headerWithVersion(9, 1), good[HeaderSize:]...), ErrVersion},
		{"short frame header", good[:HeaderSize+3], ErrTruncated},
		{"short payload", good[:len(good)-1], ErrTruncated},
		{"payload checksum", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrChecksum},
		{"sequence checksum", mod(func(b []byte) []byte { b[HeaderSize+8] ^= 1; return b }), ErrChecksum},
		{"too large", mod(func(b []byte) []byte { b[HeaderSize+3] = 0xff; return b }), ErrTooLarge},
	} {
		_, _, err := decodeAll(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// headerWithVersion encodes a valid segment header of another version.
func headerWithVersion(version uint16, first uint64) []byte {
	h := appendHeader(nil, first)[:16]
	binary.LittleEndian.PutUint16(h[4:], version)
	return binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

// FuzzDecode feeds arbitrary bytes to the segment decoder: it must never
// panic, and every entry it accepts must re-encode to exactly the bytes
// it was decoded from.
func FuzzDecode(f *testing.F) {
	seg := appendHeader(nil, 1)
	f.Add(seg)
	seg = appendEntry(seg, 1, []byte("one"))
	seg = appendEntry(seg, 2, nil)
	f.Add(seg)
	f.Add(seg[:len(seg)-2])
	f.Add(append(bytes.Clone(seg), make([]byte, 40)...))
	f.Add([]byte("SKWL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, es, err := decodeAll(b)
		if err != nil && len(es) == 0 && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadMagic) &&
			!errors.Is(err, ErrHeaderChecksum) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrChecksum) &&
			!errors.Is(err, ErrTooLarge) {
			t.Fatalf("untyped error %v", err)
		}
		if len(es) == 0 {
			return
		}
		re := appendHeader(nil, h.FirstSeq)
		for _, e := range es {
			re = appendEntry(re, e.seq, []byte(e.data))
		}
		if !bytes.Equal(re, b[:len(re)]) {
			t.Fatalf("re-encoding %d decoded entries does not give the input prefix", len(es))
		}
	})
}

// FuzzRoundTrip encodes entries cut from the fuzzer's bytes and decodes
// them back.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), []byte("hello"), uint8(2))
	f.Add(uint64(1<<63), []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, first uint64, data []byte, parts uint8) {
		var want []entry
		b := appendHeader(nil, first)
		rest := data
		for i := range int(parts%8) + 1 {
			k := len(rest) / (int(parts%8) + 1 - i)
			e := entry{first + uint64(i), string(rest[:k])}
			rest = rest[k:]
			want = append(want, e)
			b = appendEntry(b, e.seq, []byte(e.data))
		}
		h, got, err := decodeAll(b)
		if err != nil || h.FirstSeq != first || len(got) != len(want) {
			t.Fatalf("decode: %+v, %d entries, %v", h, len(got), err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("entry %d differs", i)
			}
		}
	})
}

// FuzzOpen writes arbitrary bytes as the last segment of a journal and
// opens it: Open must never panic, and when it succeeds the journal must
// replay consistently and accept an append.
func FuzzOpen(f *testing.F) {
	seg := appendHeader(nil, 1)
	seg = appendEntry(seg, 1, []byte("one"))
	seg = appendEntry(seg, 2, []byte("two"))
	f.Add(seg)
	f.Add(seg[:len(seg)-1])
	f.Add(seg[:10])
	f.Add(append(bytes.Clone(seg), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := Open(dir, &Options{Logger: discard, NoSync: true})
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.File != path {
				t.Fatalf("Open: %v, want *CorruptError for %s", err, path)
			}
			return
		}
		defer j.Close()
		n := uint64(0)
		err = j.Replay(0, func(seq uint64, data []byte) error {
			n++
			if seq != n {
				t.Fatalf("replayed seq %d, want %d", seq, n)
			}
			return nil
		})
		if err != nil || n != j.LastSeq() {
			t.Fatalf("Replay: %d entries, LastSeq %d, %v", n, j.LastSeq(), err)
		}
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Recovery leaves a prefix of the input, or a fresh header in
		// place of a torn one.
		if !bytes.HasPrefix(b, after) && !bytes.Equal(after, appendHeader(nil, 1)) {
			t.Fatalf("recovered file %x is neither a prefix of the input nor a fresh header", after)
		}
		if seq, err := j.Append(t.Context(), []byte("x")); err != nil || seq != n+1 {
			t.Fatalf("Append after recovery = %d, %v", seq, err)
		}
	})
}

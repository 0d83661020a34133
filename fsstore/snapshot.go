package fsstore

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
)

// Index snapshot.
//
// The file .synk/index.zst is the magic "SYNKIDX1" followed by one zstd
// frame (with its content checksum) of:
//
//	uvarint(journal seq covered) str(epoch) uvarint(version) uvarint(floor)
//	uvarint(nMeta) {str(key) bytes(value)}...
//	uvarint(nKeys) {str(type) str(id) uvarint(version) byte(flags)
//	                [varint(deletion time) if deleted]
//	                uvarint(size) varint(mtime) hash[16]}...
//
// where an mtime of math.MinInt64 marks a file that must be read before
// its stat is trusted (see racy.go)
//
// in key order. It is written whole (temp file, fsync, rename, fsync of the
// folder) at each checkpoint, so it is either the old or the new one.

const snapMagic = "SYNKIDX1"

// state is everything a snapshot holds.
type state struct {
	seq     uint64 // last journal entry reflected
	epoch   string
	version uint64
	floor   uint64
	meta    map[string][]byte
	idx     *index
}

var (
	zenc     *zstd.Encoder
	zdec     *zstd.Decoder
	zstdOnce sync.Once
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		// Both are safe for concurrent EncodeAll/DecodeAll; nil writers and
		// readers cannot fail with these options.
		zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true))
		zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<32))
	})
	return zenc, zdec
}

func encodeSnapshot(s *state) []byte {
	e := encoder{b: make([]byte, 0, 64+len(s.idx.m)*64)}
	e.uvarint(s.seq)
	e.str(s.epoch)
	e.uvarint(s.version)
	e.uvarint(s.floor)
	mk := make([]string, 0, len(s.meta))
	for k := range s.meta {
		mk = append(mk, k)
	}
	slices.Sort(mk)
	e.uvarint(uint64(len(mk)))
	for _, k := range mk {
		e.str(k)
		e.bytes(s.meta[k])
	}
	keys := s.idx.sortedKeys()
	now := time.Now().UnixNano()
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		en := s.idx.m[k]
		e.str(k.Type)
		e.str(k.ID)
		e.uvarint(en.Version)
		if en.Deleted {
			e.b = append(e.b, 1)
			e.varint(en.DelTime)
		} else {
			e.b = append(e.b, 0)
		}
		e.uvarint(uint64(en.Size))
		e.varint(snapshotMTime(en, now)) // racy entries are smudged
		e.b = append(e.b, en.Hash[:]...)
	}
	enc, _ := zstdCodecs()
	return enc.EncodeAll(e.b, []byte(snapMagic))
}

func decodeSnapshot(data []byte) (*state, error) {
	rest, ok := bytes.CutPrefix(data, []byte(snapMagic))
	if !ok {
		return nil, errors.New("not an index snapshot (bad magic)")
	}
	_, dec := zstdCodecs()
	raw, err := dec.DecodeAll(rest, nil)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	d := &decoder{b: raw}
	s := &state{meta: map[string][]byte{}, idx: newIndex()}
	s.seq = d.uvarint()
	s.epoch = d.str()
	s.version = d.uvarint()
	s.floor = d.uvarint()
	for range d.count(2) {
		k := d.str()
		s.meta[k] = bytes.Clone(d.bytes())
		if s.meta[k] == nil {
			s.meta[k] = []byte{}
		}
	}
	n := d.count(2 + 1 + 1 + 1 + 1 + hashLen)
	entries := make([]entry, n)
	s.idx.keys = make([]synkfs.Key, 0, n)
	s.idx.m = make(map[synkfs.Key]*entry, n)
	for i := range n {
		k := synkfs.Key{Type: d.str(), ID: d.str()}
		en := &entries[i]
		en.Version = d.uvarint()
		switch d.byte() {
		case 0:
		case 1:
			en.Deleted = true
			en.DelTime = d.varint()
		default:
			d.fail(errors.New("bad flags"))
		}
		en.Size = int64(d.uvarint())
		en.MTime = d.varint()
		if !en.Deleted {
			en.Checked = loadedChecked(en.MTime)
		}
		d.fixed(en.Hash[:])
		if d.err != nil {
			break
		}
		if _, dup := s.idx.m[k]; dup {
			d.fail(fmt.Errorf("key %s twice", k))
			break
		}
		s.idx.m[k] = en
		s.idx.keys = append(s.idx.keys, k)
		if !en.Deleted {
			s.idx.live++
		}
		s.idx.log = append(s.idx.log, verKey{en.Version, k})
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	s.idx.keysSorted = slices.IsSortedFunc(s.idx.keys, synkfs.Key.Compare)
	s.idx.dirty = true // the log is in key order; sorted on first use
	return s, nil
}

// writeSnapshot writes data as the file path atomically and durably.
func writeSnapshot(fsys vfs.FS, path string, data []byte, noSync bool) error {
	dir := filepath.Dir(path)
	f, err := fsys.CreateTemp(dir, ".index-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && !noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return err
	}
	if noSync {
		return nil
	}
	return fsys.SyncDir(dir)
}

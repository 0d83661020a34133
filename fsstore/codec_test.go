package fsstore

import (
	"bytes"
	"maps"
	"reflect"
	"testing"

	"github.com/synkfs/synkfs"
)

func sampleBatch() synkfs.Batch {
	return synkfs.Batch{
		Version: 7,
		Puts:    []synkfs.Record{{Key: synkfs.Key{Type: "u", ID: "1"}, Version: 7, Body: []byte(`{"a":1}`)}},
		Deletes: []synkfs.Tombstone{{Key: synkfs.Key{Type: "u", ID: "2"}, Version: 5}},
		Meta:    map[string][]byte{"set": []byte("x"), "empty": {}, "gone": nil},
	}
}

func TestOpRoundTrip(t *testing.T) {
	b := sampleBatch()
	o, err := decodeOp(encodeBatch(&b, 1234))
	if err != nil {
		t.Fatal(err)
	}
	if o.kind != opBatch || o.time != 1234 || !reflect.DeepEqual(o.batch.Puts, b.Puts) || !reflect.DeepEqual(o.batch.Deletes, b.Deletes) {
		t.Fatalf("round trip = %+v", o)
	}
	if v, ok := o.batch.Meta["gone"]; !ok || v != nil {
		t.Error("a meta removal lost its nil")
	}
	if v, ok := o.batch.Meta["empty"]; !ok || v == nil {
		t.Error("an empty meta value became a removal")
	}
	if o, err := decodeOp(encodeCompact(-5)); err != nil || o.kind != opCompact || o.time != -5 {
		t.Fatalf("compact round trip = %+v, %v", o, err)
	}
	full := encodeBatch(&b, 1)
	for i := range full {
		if _, err := decodeOp(full[:i]); err == nil {
			t.Fatalf("truncated entry (%d of %d bytes) decoded", i, len(full))
		}
	}
}

func FuzzDecodeOp(f *testing.F) {
	b := sampleBatch()
	f.Add(encodeBatch(&b, 99))
	f.Add(encodeCompact(1))
	f.Add([]byte{opBatch, 1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := decodeOp(data)
		if err != nil || o.kind != opBatch {
			return
		}
		again := encodeBatch(&o.batch, o.time)
		o2, err := decodeOp(again)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if !bytes.Equal(encodeBatch(&o2.batch, o2.time), again) {
			t.Fatal("encoding is not stable")
		}
	})
}

func TestSnapshotRoundTrip(t *testing.T) {
	st := &state{seq: 9, epoch: "e", version: 12, floor: 3, meta: map[string][]byte{"a": []byte("1"), "e": {}}, idx: newIndex()}
	st.idx.set(synkfs.Key{Type: "b", ID: "2"}, entry{Version: 12, Size: 10, MTime: 5, Checked: 5 + int64(racyFine), Hash: [hashLen]byte{1}})
	st.idx.set(synkfs.Key{Type: "a", ID: "1"}, entry{Version: 4, Deleted: true, DelTime: 77})
	// Racily clean (recorded in the tick of its mtime): kept smudged.
	racyKey := synkfs.Key{Type: "c", ID: "3"}
	st.idx.set(racyKey, entry{Version: 12, Size: 10, MTime: 7, Checked: 8, Hash: [hashLen]byte{2}})
	got, err := decodeSnapshot(encodeSnapshot(st))
	if err != nil {
		t.Fatal(err)
	}
	if got.seq != 9 || got.epoch != "e" || got.version != 12 || got.floor != 3 || !maps.EqualFunc(got.meta, st.meta, bytes.Equal) || got.idx.live != 2 {
		t.Fatalf("snapshot round trip = %+v", got)
	}
	if g, _ := got.idx.get(racyKey); g.MTime != smudgedMTime {
		t.Errorf("racy entry kept mtime %d, want it smudged", g.MTime)
	}
	for k, e := range st.idx.m {
		if k == racyKey {
			continue
		}
		if g, ok := got.idx.get(k); !ok || g != *e {
			t.Errorf("entry %s = %+v, want %+v", k, g, *e)
		}
	}
	if vks := got.idx.since(0); len(vks) != 3 || vks[0].version != 4 {
		t.Errorf("since after load = %+v", vks)
	}
	if _, err := decodeSnapshot([]byte("SYNKIDX1garbage")); err == nil {
		t.Error("garbage snapshot decoded")
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	st := &state{epoch: "e", meta: map[string][]byte{"m": []byte("v")}, idx: newIndex()}
	st.idx.set(synkfs.Key{Type: "t", ID: "1"}, entry{Version: 1, Size: 3})
	f.Add(encodeSnapshot(st))
	f.Add([]byte(snapMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSnapshot(data)
		if err != nil {
			return
		}
		s2, err := decodeSnapshot(encodeSnapshot(s))
		if err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
		if s2.idx.live != s.idx.live || len(s2.idx.m) != len(s.idx.m) || s2.epoch != s.epoch {
			t.Fatal("snapshot changed in a round trip")
		}
	})
}

package fsstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/synkfs/synkfs"
)

// statMatches fails unless ei agrees with the file at rel under dir.
func statMatches(t *testing.T, dir, rel string, ei EntryInfo) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	if !ei.Known || ei.Size != fi.Size() || !ei.Mtime.Equal(fi.ModTime()) {
		t.Fatalf("%s: entry %+v, file size %d mtime %v", rel, ei, fi.Size(), fi.ModTime())
	}
}

func TestEntriesListsOneTypeFromTheIndex(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := context.Background()
	put(t, s, 1, r("a", "1", 1, `{"x":1}`), r("b", "2", 1, `{"y":"two"}`), r("b", "1", 1, `{}`), r("c", "9", 1, `{}`))
	if err := s.Apply(ctx, synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: synkfs.Key{Type: "b", ID: "1"}, Version: 2}}}); err != nil {
		t.Fatal(err)
	}
	put(t, s, 3, r("b", "0", 3, `{"z":[1,2,3]}`), r("b", "2", 3, `{"y":"two, longer now"}`))

	got := s.Entries("b")
	if len(got) != 2 || got[0].Key.ID != "0" || got[1].Key.ID != "2" {
		t.Fatalf("Entries(b) = %+v, want b/0 and b/2 in order", got)
	}
	for _, ei := range got {
		if ei.Version != 3 {
			t.Errorf("%s: version %d, want 3", ei.Key, ei.Version)
		}
		rel, _ := KeyPath(ei.Key)
		statMatches(t, dir, rel, ei)
	}
	if got := s.Entries("nothing"); len(got) != 0 {
		t.Errorf("Entries of an unknown type = %+v", got)
	}
	if _, ok := s.Entry(synkfs.Key{Type: "b", ID: "1"}); ok {
		t.Error("Entry of a deleted record is found")
	}
	ei, ok := s.Entry(synkfs.Key{Type: "a", ID: "1"})
	if !ok || ei.Version != 1 {
		t.Fatalf("Entry(a/1) = %+v, %v", ei, ok)
	}
	statMatches(t, dir, "a/1.json", ei)

	// Entries of a reopened store come from its snapshot: a known entry
	// still matches its file; a smudged one says it is not known.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Entries("b") != nil {
		t.Error("Entries of a closed store is not nil")
	}
	s2 := openTest(t, dir)
	for _, ei := range s2.Entries("b") {
		if ei.Known {
			rel, _ := KeyPath(ei.Key)
			statMatches(t, dir, rel, ei)
		}
	}
}

// An adopted user's file is described as it is; an adopt whose file did
// not match leaves the entry unknown.
func TestEntryAfterAdopt(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := context.Background()
	write(t, dir, "user/1.json", `{"b":2,"a":1}`)
	adopt := ApplyOptions{Guard: true, Adopt: true}
	if err := s.ApplyWith(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{r("user", "1", 1, `{"a":1,"b":2}`)}}, adopt); err != nil {
		t.Fatal(err)
	}
	ei, ok := s.Entry(synkfs.Key{Type: "user", ID: "1"})
	if !ok {
		t.Fatal("adopted record not found")
	}
	statMatches(t, dir, "user/1.json", ei)

	write(t, dir, "user/2.json", `{"a":"saved again"}`)
	if err := s.ApplyWith(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{r("user", "2", 2, `{"a":"first save"}`)}}, adopt); err != nil {
		t.Fatal(err)
	}
	if ei, ok := s.Entry(synkfs.Key{Type: "user", ID: "2"}); !ok || ei.Known || ei.Version != 2 {
		t.Fatalf("entry of a stale adopt = %+v, %v; want version 2, not known", ei, ok)
	}
}

// Under WriteBehind a put whose file is not written yet is not known;
// once the writer wrote it, its entry describes the file.
func TestEntryWriteBehind(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{NoSync: true, WriteBehind: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := synkfs.Key{Type: "t", ID: "1"}
	for v := uint64(1); v <= 20; v++ {
		put(t, s, v, r("t", "1", v, fmt.Sprintf(`{"a":%d}`, v*v*v)))
		ei, ok := s.Entry(k)
		s.mu.RLock() // the writer only ever empties it: still there, so it was then
		_, unwritten := s.unwritten[k]
		s.mu.RUnlock()
		if !ok || ei.Version != v || (unwritten && ei.Known) {
			t.Fatalf("entry of put %d (unwritten: %v) = %+v, %v", v, unwritten, ei, ok)
		}
	}
	if err := s.settle(); err != nil {
		t.Fatal(err)
	}
	ei, ok := s.Entry(k)
	if !ok {
		t.Fatal("record not found")
	}
	statMatches(t, dir, "t/1.json", ei)
}

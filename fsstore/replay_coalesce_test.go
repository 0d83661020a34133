package fsstore

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/merge"
)

// crashAfterApplies applies bs in turn with no checkpoint, then "crashes"
// as crashAfterApply does: every batch lives only in the journal.
func crashAfterApplies(t *testing.T, dir string, bs ...synkfs.Batch) {
	t.Helper()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(dir, &Options{FS: f, CheckpointEvery: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if err := s.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	f.CrashAfter(1)
	_ = s.Close()
}

// TestReplayRemovedWhileDownStaysRemoved is the interleaving the chaos
// harness found (seed 833845, the `synkfs sync` process after SIGKILL):
// a record created and edited twice since the last checkpoint, its file
// removed by the user while no replica ran. The replay used to write each
// entry in turn: the first (the create) brought the removed file back, the
// user saved an edit of what they saw, and the next entry's rename
// replaced that save with an older body; the removal was lost too. Now a
// file is looked at and written only for the last entry that changes its
// record, so a removed file stays removed and the next scan reports the
// removal. The hook saves the user's edit right before any rename of a
// temporary file into the record's folder, the moment the race needs.
func TestReplayRemovedWhileDownStaysRemoved(t *testing.T) {
	k := synkfs.Key{Type: "task", ID: "0"}
	put := func(v uint64, body string) synkfs.Batch {
		return synkfs.Batch{Version: v, Puts: []synkfs.Record{{Key: k, Version: v, Body: []byte(body)}}}
	}
	dir := t.TempDir()
	crashAfterApplies(t, dir, put(1, `{"a":"one"}`), put(2, `{"a":"two","c":"x"}`), put(3, `{"a":"two","b":"y","c":"x"}`))
	p := filepath.Join(dir, "task", "0.json")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}

	saved := []byte(`{"a":"mine"}`)
	var renames atomic.Int32
	f := vfs.NewFault(vfs.OS)
	f.FailWhen(func(op vfs.Op, name string) error {
		if op == vfs.OpRename && isTempIn(name, filepath.Dir(p)) {
			renames.Add(1)
			// A save lands between the replay's last look and its rename.
			if err := os.WriteFile(p, saved, 0o644); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	s, err := Open(dir, &Options{FS: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := renames.Load(); n != 0 {
		got, _ := os.ReadFile(p)
		t.Fatalf("the replay wrote the removed record's file %d times (file now %q): a removal made while down is undone, and a save made during the replay can be replaced", n, got)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("the removed file is back after the replay: %v", err)
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 1 || rep.Deleted[0].Key != k || rep.Deleted[0].Version != 3 || len(rep.Edited)+len(rep.Created) != 0 {
		t.Fatalf("scan after the replay: %+v, want the removal of %s at version 3", rep, k.Path())
	}
}

// TestReplayBringsStaleFileToLastBody: a file left at an older body of
// the store's own (a power loss undoes renames never flushed) is brought
// to the last entry's body, however many entries back that body was
// written; one the user edited is left alone.
func TestReplayBringsStaleFileToLastBody(t *testing.T) {
	stale := synkfs.Key{Type: "t", ID: "stale"}
	mine := synkfs.Key{Type: "t", ID: "mine"}
	batch := func(v uint64, body string) synkfs.Batch {
		return synkfs.Batch{Version: v, Puts: []synkfs.Record{
			{Key: stale, Version: v, Body: []byte(body)},
			{Key: mine, Version: v, Body: []byte(body)},
		}}
	}
	dir := t.TempDir()
	ps := filepath.Join(dir, "t", "stale.json")
	pm := filepath.Join(dir, "t", "mine.json")
	crashAfterApplies(t, dir, batch(1, `{"v":1}`))
	first, err := os.ReadFile(ps)
	if err != nil {
		t.Fatal(err)
	}
	crashAfterApplies(t, dir, batch(2, `{"v":2}`), batch(3, `{"v":3}`))
	if err := os.WriteFile(ps, first, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pm, []byte(`{"v":"mine"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := os.ReadFile(ps); !merge.Equal(got, []byte(`{"v":3}`)) {
		t.Fatalf("file left at the store's first body: %q after the replay, want the last body", got)
	}
	if got, _ := os.ReadFile(pm); !merge.Equal(got, []byte(`{"v":"mine"}`)) {
		t.Fatalf("the user's edit was replaced by the replay: %q", got)
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].Key != mine || len(rep.Deleted)+len(rep.Created) != 0 {
		t.Fatalf("scan after the replay: %+v, want only the user's edit", rep)
	}
}

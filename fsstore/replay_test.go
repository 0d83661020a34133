package fsstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/merge"
)

// crashAfterApply applies b with no checkpoint, then
// "crashes": the store is abandoned without writing anything more, so the
// batch lives only in the journal.
func crashAfterApply(t *testing.T, dir string, b synkfs.Batch) {
	t.Helper()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(dir, &Options{FS: f, CheckpointEvery: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	f.CrashAfter(1)
	_ = s.Close()
}

// TestReplayKeepsEditsMadeWhileDown: after a crash, files edited, removed
// or made again by hand before the store reopens are the user's: the
// journal replay must not overwrite them, and the next scan reports them.
func TestReplayKeepsEditsMadeWhileDown(t *testing.T) {
	dir := t.TempDir()
	put := func(id, body string) synkfs.Record {
		return synkfs.Record{Key: synkfs.Key{Type: "t", ID: id}, Version: 1, Body: []byte(body)}
	}
	// "removed" is live before the batch that crashes: a file the batch
	// creates and the user removes cannot be told from a write the crash
	// prevented, and comes back (nothing is lost either way).
	s0, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{put("removed", `{"v":0}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}
	crashAfterApply(t, dir, synkfs.Batch{Version: 2, Puts: []synkfs.Record{
		put("edited", `{"v":1}`), put("removed", `{"v":1}`), put("kept", `{"v":1}`),
	}})
	// While down: one edit, one removal; "kept" is left as written.
	if err := os.WriteFile(filepath.Join(dir, "t", "edited.json"), []byte(`{"v":"mine"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "t", "removed.json")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data, err := os.ReadFile(filepath.Join(dir, "t", "edited.json"))
	if err != nil || !merge.Equal(data, []byte(`{"v":"mine"}`)) {
		t.Fatalf("edited file after replay: %q, %v (the replay overwrote the user's edit)", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "t", "removed.json")); !os.IsNotExist(err) {
		t.Fatalf("removed file is back after replay: %v", err)
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].Key.ID != "edited" || len(rep.Deleted) != 1 || rep.Deleted[0].Key.ID != "removed" || len(rep.Created) != 0 {
		t.Fatalf("scan after replay: %+v", rep)
	}
	if c, ok := s.Lookup(synkfs.Key{Type: "t", ID: "kept"}); !ok || c.Deleted {
		t.Fatalf("kept: %+v %v", c, ok)
	}

	// A delete replayed over a file made again by hand keeps the file.
	dir2 := t.TempDir()
	s2, err := Open(dir2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{put("again", `{"v":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	crashAfterApply(t, dir2, synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: synkfs.Key{Type: "t", ID: "again"}, Version: 2}}})
	if err := os.WriteFile(filepath.Join(dir2, "t", "again.json"), []byte(`{"v":"new"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(dir2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	rep, err = s3.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created) != 1 || !merge.Equal(rep.Created[0].Body, []byte(`{"v":"new"}`)) {
		t.Fatalf("a file made again by hand after a replayed delete: %+v", rep)
	}
}

package fsstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
)

// TestRecoverAfterDiskFull: a full disk interrupts a batch after it is
// journaled; the store is broken (Apply fails, Broken says the disk is
// full) and Recover fails while the disk is still full. Once writes work
// again Recover finishes the batch's files from the journal, keeps a file
// the user saved meanwhile (the next scan reports it), and Apply works.
func TestRecoverAfterDiskFull(t *testing.T) {
	root := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(root, &Options{FS: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a, b, c := synkfs.Key{Type: "doc", ID: "a"}, synkfs.Key{Type: "doc", ID: "b"}, synkfs.Key{Type: "doc", ID: "c"}
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec(a, 1, `{"n":1}`), rec(b, 1, `{"n":1}`)}}); err != nil {
		t.Fatal(err)
	}

	f.FailWith(vfs.OpRename, syscall.ENOSPC) // the journal never renames: the batch is journaled, its files fail
	err = s.Apply(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{rec(a, 2, `{"n":2}`), rec(c, 2, `{"n":2}`)}, Meta: map[string][]byte{"m": []byte("2")}})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("apply on a full disk = %v, want ENOSPC", err)
	}
	if err := s.Broken(); !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Broken = %v, want ErrNoSpace wrapping ENOSPC", err)
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 3}); err == nil {
		t.Fatal("apply on a broken store succeeded")
	}
	// The user saves b while the store is broken.
	bPath := filepath.Join(root, "doc", "b.json")
	if err := os.WriteFile(bPath, []byte(`{"type":"doc","id":"b","n":"mine"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Recover on a full disk = %v, want ENOSPC", err)
	}
	if s.Broken() == nil {
		t.Fatal("store works after a failed Recover")
	}

	f.FailWith(vfs.OpRename, nil)
	if err := s.Recover(); err != nil {
		t.Fatalf("Recover = %v", err)
	}
	if err := s.Broken(); err != nil {
		t.Fatalf("Broken after Recover = %v", err)
	}
	if err := s.Recover(); err != nil {
		t.Fatalf("Recover on a working store = %v", err)
	}
	for _, k := range []synkfs.Key{a, c} {
		if r, err := s.Get(k); err != nil || r.Version != 2 || string(r.Body) != `{"n":2}` {
			t.Fatalf("get %s after Recover = %+v, %v", k, r, err)
		}
	}
	if m, ok := s.Meta("m"); !ok || string(m) != "2" {
		t.Fatalf("meta after Recover = %q, %v", m, ok)
	}
	if s.Version() != 2 {
		t.Fatalf("version after Recover = %d, want 2", s.Version())
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].Key != b || len(rep.Created)+len(rep.Deleted)+len(rep.Bad) != 0 {
		t.Fatalf("scan after Recover = %+v, want only the user's edit of b", rep)
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 3, Puts: []synkfs.Record{rec(c, 3, `{"n":3}`)}}); err != nil {
		t.Fatalf("apply after Recover = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Nothing is left to replay, and the reopened store agrees.
	s2, err := Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if r, err := s2.Get(c); err != nil || r.Version != 3 || string(r.Body) != `{"n":3}` {
		t.Fatalf("get after reopen = %+v, %v", r, err)
	}
	if r, err := s2.Get(b); err != nil || string(r.Body) != `{"n":"mine"}` {
		t.Fatalf("user's edit after reopen = %s, %v", r.Body, err)
	}
}

// TestRecoverWriteBehind: a write-behind store whose writer fails on a
// full disk is broken, but keeps serving the committed batch from memory;
// Recover fails while the disk is full and then, once writes work,
// replays the journal into the files and starts a new writer. A journal
// that fails breaks the store with the writer still healthy: Recover
// abandons that writer too. A reopen afterwards finds everything.
func TestRecoverWriteBehind(t *testing.T) {
	root := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(root, &Options{FS: f, WriteBehind: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a, b := synkfs.Key{Type: "doc", ID: "a"}, synkfs.Key{Type: "doc", ID: "b"}
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec(a, 1, `{"n":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.settle(); err != nil {
		t.Fatal(err)
	}

	f.FailWith(vfs.OpRename, syscall.ENOSPC) // the journal never renames: only the writer fails
	if err := s.Apply(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{rec(a, 2, `{"n":2}`), rec(b, 2, `{"n":2}`)}, Meta: map[string][]byte{"m": []byte("2")}}); err != nil {
		t.Fatalf("apply (journaled) = %v", err)
	}
	if err := s.settle(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writer on a full disk = %v, want ENOSPC", err)
	}
	if err := s.Broken(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Broken = %v, want ErrNoSpace", err)
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 3, Puts: []synkfs.Record{rec(b, 3, `{}`)}}); err == nil {
		t.Fatal("apply on a broken store succeeded")
	}
	if err := s.Recover(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Recover on a full disk = %v, want ENOSPC", err)
	}
	if s.Broken() == nil {
		t.Fatal("store works after a failed Recover")
	}
	// Reads keep working while broken, from memory.
	for _, k := range []synkfs.Key{a, b} {
		if r, err := s.Get(k); err != nil || r.Version != 2 || string(r.Body) != `{"n":2}` {
			t.Fatalf("get %s while broken = %+v, %v", k, r, err)
		}
	}

	f.FailWith(vfs.OpRename, nil)
	if err := s.Recover(); err != nil {
		t.Fatalf("Recover = %v", err)
	}
	if err := s.Broken(); err != nil {
		t.Fatalf("Broken after Recover = %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "doc", "b.json")); err != nil || !strings.Contains(string(data), `"n": 2`) {
		t.Fatalf("b's file after Recover = %q, %v", data, err)
	}
	if m, ok := s.Meta("m"); !ok || string(m) != "2" {
		t.Fatalf("meta after Recover = %q, %v", m, ok)
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 3, Puts: []synkfs.Record{rec(b, 3, `{"n":3}`)}}); err != nil {
		t.Fatalf("apply after Recover = %v", err)
	}
	if rep, err := s.ScanChanges(); err != nil || len(rep.Edited)+len(rep.Created)+len(rep.Deleted)+len(rep.Bad) != 0 {
		t.Fatalf("scan after Recover = %+v, %v; want nothing (the new writer wrote the files)", rep, err)
	}

	// The journal fails (its fsync): the entry may or may not be durable,
	// and the writer is healthy.
	f.FailWith(vfs.OpSync, syscall.EIO)
	if err := s.Apply(ctx, synkfs.Batch{Version: 4, Puts: []synkfs.Record{rec(a, 4, `{"n":4}`)}}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("apply with a failing journal = %v, want EIO", err)
	}
	if err := s.Broken(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Broken = %v, want EIO", err)
	}
	if err := s.Recover(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Recover with a failing disk = %v, want EIO", err)
	}
	if _, err := s.ScanChanges(); err == nil {
		t.Fatal("scan waiting for an abandoned writer succeeded")
	}
	f.FailWith(vfs.OpSync, nil)
	if err := s.Recover(); err != nil {
		t.Fatalf("Recover = %v", err)
	}
	v := s.Version()
	if v != 3 && v != 4 {
		t.Fatalf("version after Recover = %d, want 3 or 4", v)
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 5, Puts: []synkfs.Record{rec(a, 5, `{"n":5}`)}}); err != nil {
		t.Fatalf("apply after Recover = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	want := map[synkfs.Key]string{a: `{"n":5}`, b: `{"n":3}`}
	for k, body := range want {
		if r, err := s2.Get(k); err != nil || string(r.Body) != body {
			t.Fatalf("get %s after reopen = %+v, %v", k, r, err)
		}
	}
	if rep, err := s2.ScanChanges(); err != nil || len(rep.Edited)+len(rep.Created)+len(rep.Deleted)+len(rep.Bad) != 0 {
		t.Fatalf("scan after reopen = %+v, %v", rep, err)
	}
}

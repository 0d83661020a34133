package fsstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

// sameStatEdit replaces the file at rel with data (of the same size) and
// gives it back its old mtime: a save within the mtime granularity.
func sameStatEdit(t *testing.T, dir, rel, data string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(data)) {
		t.Fatalf("edit of %s changes the size: %d -> %d", rel, fi.Size(), len(data))
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func TestRacilyCleanEditIsSeen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	k := synkfs.Key{Type: "user", ID: "1"}
	put(t, s, 1, r("user", "1", 1, `{"a":"x"}`))
	// The store wrote "{\n  \"a\": \"x\"\n}\n"; the user saves "y" in the
	// same clock tick.
	sameStatEdit(t, dir, "user/1.json", "{\n  \"a\": \"y\"\n}\n")

	if !s.Dirty(k) {
		t.Error("Dirty missed a same-size save with the same mtime")
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || string(rep.Edited[0].Body) != `{"a":"y"}` {
		t.Errorf("ScanChanges = %+v, want the edit", rep)
	}
	err = s.ApplyWith(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{r("user", "1", 2, `{"a":"z"}`)}}, ApplyOptions{Guard: true})
	if !errors.Is(err, ErrDirty) {
		t.Errorf("guarded put over the edit: %v, want ErrDirty", err)
	}
}

func TestRacilyCleanAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	put(t, s, 1, r("user", "1", 1, `{"a":"x"}`))
	if err := s.Close(); err != nil { // the snapshot is written while racy
		t.Fatal(err)
	}
	sameStatEdit(t, dir, "user/1.json", "{\n  \"a\": \"y\"\n}\n")
	s = openTest(t, dir)
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || string(rep.Edited[0].Body) != `{"a":"y"}` {
		t.Errorf("ScanChanges after reopen = %+v, want the edit", rep)
	}
}

// Once a scan has confirmed a file well after its mtime, its stat is
// trusted again: the file is not read (so a same-stat swap, which only a
// clock tick shared with the store's write could make, goes unseen).
func TestConfirmedFileTrustedByStat(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	put(t, s, 1, r("user", "1", 1, `{"a":"x"}`))
	time.Sleep(2 * racyFine)
	if rep, err := s.ScanChanges(); err != nil || !rep.Empty() {
		t.Fatalf("scan = %+v, %v", rep, err)
	}
	sameStatEdit(t, dir, "user/1.json", "{\n  \"a\": \"y\"\n}\n")
	if rep, err := s.ScanChanges(); err != nil || !rep.Empty() {
		t.Errorf("confirmed file read again: %+v, %v", rep, err)
	}
	// And the confirmation survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if rep, err := s.ScanChanges(); err != nil || !rep.Empty() {
		t.Errorf("after reopen the confirmed file was read: %+v, %v", rep, err)
	}
}

func TestRacyWindow(t *testing.T) {
	sec := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	fine := sec + 123456789
	for _, c := range []struct {
		m, checked int64
		want       bool
	}{
		{fine, fine, true},
		{fine, fine + int64(racyFine) - 1, true},
		{fine, fine + int64(racyFine), false},
		{sec, sec + int64(time.Second), true}, // whole seconds: coarse
		{sec, sec + int64(racyCoarse), false},
		{fine, fine - int64(time.Hour), true}, // clock went back
	} {
		if got := racy(c.m, c.checked); got != c.want {
			t.Errorf("racy(%d, %d) = %v, want %v", c.m, c.checked, got, c.want)
		}
	}
}

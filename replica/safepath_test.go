package replica

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

// outsideFiles lists the files under dir (the target of a planted link).
func outsideFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// link replaces the folder rel of side s with a symbolic link to a new
// folder outside it, holding a copy of what rel held, and returns it.
func link(t *testing.T, s *side, rel string) string {
	t.Helper()
	outside := t.TempDir()
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if ents, err := os.ReadDir(p); err == nil {
		for _, e := range ents {
			if data, err := os.ReadFile(filepath.Join(p, e.Name())); err == nil {
				if err := os.WriteFile(filepath.Join(outside, e.Name()), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, p); err != nil {
		t.Fatalf("make a symbolic link: %v", err)
	}
	return outside
}

// The files the replica writes itself (conflict copies and their
// sidecars, recovery copies, a resolved record) follow the store's
// confinement rules: a folder on the way that is a link to elsewhere is
// refused, so nothing lands outside the synced folder.
func TestOwnFilesNotWrittenThroughLinks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		strategy Strategy
		linked   string // the folder replaced by a link before the conflict
	}{
		{"keep both, linked type folder", KeepBoth, "n"},
		{"keep both, linked sidecar folder", KeepBoth, StateDir + "/" + conflictsDir + "/n"},
		{"server wins, linked type folder", ServerWins, "n"},
		{"server wins, linked recovery folder", ServerWins, StateDir + "/" + recoveryDir + "/n"},
		{"client wins, linked recovery folder", ClientWins, StateDir + "/" + recoveryDir + "/n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			a := newSide(t, srv.url, &Options{OnConflict: tc.strategy})
			b := newSide(t, srv.url, nil)
			a.write("n/1.json", `{"n":0}`)
			a.sync()
			b.sync()
			a.write("n/1.json", `{"n":1}`)
			if err := a.r.Scan(); err != nil {
				t.Fatal(err)
			}
			outside := link(t, a, tc.linked)
			before := outsideFiles(t, outside)
			b.write("n/1.json", `{"n":2}`)
			b.sync()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = a.r.SyncOnce(ctx, a.c) // may refuse; what matters is where files went
			if got := outsideFiles(t, outside); len(got) != len(before) {
				t.Fatalf("files changed through the link: %v (had %v)", got, before)
			}
		})
	}
}

// Resolve reads, writes and moves files itself: a linked recovery folder
// or type folder makes it refuse, not write outside.
func TestResolveNotThroughLinks(t *testing.T) {
	for _, linked := range []string{StateDir + "/" + recoveryDir + "/n", StateDir + "/" + conflictsDir + "/n"} {
		t.Run(linked, func(t *testing.T) {
			a, _ := conflictSetup(t, KeepBoth, `{"n":0}`, `{"n":1}`, `{"n":2}`)
			if cs, _ := ListConflicts(a.dir); len(cs) != 1 {
				t.Fatalf("conflicts %+v, want one", cs)
			}
			outside := link(t, a, linked)
			before := outsideFiles(t, outside)
			_, _ = Resolve(a.dir, synkfs.Key{Type: "n", ID: "1"}, Ours, nil)
			if got := outsideFiles(t, outside); len(got) != len(before) {
				t.Fatalf("files changed through the link: %v (had %v)", got, before)
			}
		})
	}
}

package fsstore

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/merge"
)

// TestReplayKeepsSaveUnderWay: a replica killed after a batch reached only
// the journal is restarted while the user is half-way through saving one
// of the batch's files (an editor that truncates and writes in place). The
// replay must not replace that file by rename: the rest of the save would
// go into a file no longer in the folder, and the edit would be lost
// without a trace. Whatever the save's first half looks like, the whole
// save must end up in the record file or in a recovery copy, and when it
// is left in place the next scan reports it as an edit of the batch's
// version.
func TestReplayKeepsSaveUnderWay(t *testing.T) {
	k := synkfs.Key{Type: "note", ID: "2"}
	journaled := `{"a":"shared","b":"x","c":"y","d":"journaled"}`
	cases := []struct {
		name, saved string
		inPlace     bool // the first half differs from the store's bytes
	}{
		// The edit is in the first half: no torn write of the store's looks so.
		{"edit early", `{"a":"mine","b":"x","c":"y","d":"journaled"}`, true},
		// The edit is in the second half: the first half is a prefix of
		// what the store writes, as a torn write of its own would be.
		{"edit late", `{"a":"shared","b":"x","c":"y","d":"mine"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s0, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s0.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{{Key: k, Version: 1, Body: []byte(`{"a":"shared"}`)}}}); err != nil {
				t.Fatal(err)
			}
			if err := s0.Close(); err != nil {
				t.Fatal(err)
			}
			crashAfterApply(t, dir, synkfs.Batch{Version: 2, Puts: []synkfs.Record{{Key: k, Version: 2, Body: []byte(journaled)}}})

			data, err := merge.Pretty([]byte(tc.saved))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "note", "2.json")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			half := len(data) / 2
			if _, err := f.Write(data[:half]); err != nil {
				t.Fatal(err)
			}

			s, err := Open(dir, nil) // replays the batch under the save
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := f.Write(data[half:]); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			got, _ := os.ReadFile(p)
			inPlace := bytes.Equal(got, data)
			if !inPlace && !inRecovery(t, dir, data) {
				t.Fatalf("the save is neither in %s (which holds %q) nor in a recovery copy: the replay lost it", p, got)
			}
			if tc.inPlace && !inPlace {
				t.Fatalf("a save that is no torn write of the store's was moved away: %s holds %q", p, got)
			}
			rep, err := s.ScanChanges()
			if err != nil {
				t.Fatal(err)
			}
			if inPlace {
				if len(rep.Edited) != 1 || rep.Edited[0].Version != 2 || !merge.Equal(rep.Edited[0].Body, []byte(tc.saved)) {
					t.Fatalf("scan after the save: %+v, want the save as an edit of version 2", rep)
				}
				return
			}
			// Moved away: the record file holds the journaled body again.
			if !rep.Empty() {
				t.Fatalf("scan after the replay: %+v, want nothing", rep)
			}
			if r, err := s.Get(k); err != nil || !merge.Equal(r.Body, []byte(journaled)) {
				t.Fatalf("record after the replay: %s, %v", r.Body, err)
			}
		})
	}
}

// inRecovery reports whether a file under the state folder's recovery
// folder holds exactly data.
func inRecovery(t *testing.T, root string, data []byte) bool {
	t.Helper()
	found := false
	_ = filepath.WalkDir(filepath.Join(root, StateDir, "recovery"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, data) {
			found = true
		}
		return nil
	})
	return found
}

// TestReplayWriteLooksAgain: a save that starts after the replay looked at
// a file (which then still held the body the index had before the
// journaled batch) but before the replay replaces it must not be lost: the
// replay looks again right before the rename, as a guarded apply does.
func TestReplayWriteLooksAgain(t *testing.T) {
	k := synkfs.Key{Type: "note", ID: "1"}
	dir := t.TempDir()
	s0, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{{Key: k, Version: 1, Body: []byte(`{"a":"one"}`)}}}); err != nil {
		t.Fatal(err)
	}
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "note", "1.json")
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	crashAfterApply(t, dir, synkfs.Batch{Version: 2, Puts: []synkfs.Record{{Key: k, Version: 2, Body: []byte(`{"a":"two"}`)}}})
	// The batch's write did reach the file before the crash; put the old
	// body back, as if it had not, so that the replay writes the file.
	if err := os.WriteFile(p, before, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}

	saved := []byte("{\n  \"a\": \"mine, saved during the replay\"\n}\n")
	f := vfs.NewFault(vfs.OS)
	var once sync.Once
	f.FailWhen(func(op vfs.Op, name string) error {
		// The replay's temporary file for the record: the user saves now.
		if op == vfs.OpCreate && isTempIn(name, filepath.Dir(p)) {
			once.Do(func() {
				if err := os.WriteFile(p, saved, 0o644); err != nil {
					t.Error(err)
				}
			})
		}
		return nil
	})
	s, err := Open(dir, &Options{FS: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fired := false
	once.Do(func() { fired = true })
	if fired {
		t.Fatal("the replay wrote no temporary file: the test does not test what it says")
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, saved) {
		t.Fatalf("the save made during the replay was replaced: file holds %q", got)
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].Version != 2 || !merge.Equal(rep.Edited[0].Body, saved) {
		t.Fatalf("scan after the replay: %+v, want the save as an edit of version 2", rep)
	}
}

// isTempIn reports whether name is one of the store's temporary files in
// dir.
func isTempIn(name, dir string) bool {
	ok, _ := filepath.Match(filepath.Join(dir, tempPattern), name)
	return ok
}

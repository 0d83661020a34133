package fsstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
)

// saveAsEditor replaces p with data the way most editors save: a
// temporary file renamed over it.
func saveAsEditor(t *testing.T, p, data string) {
	t.Helper()
	tmp := p + ".tmp~"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Error(err)
	}
}

// TestGuardKeepsSavesMadeDuringApply: a guarded batch is checked against
// the files before it is journaled, but the journal's fsync takes time,
// and a user may save a file of the batch meanwhile. That save must not be
// overwritten or removed: the file is left as the user saved it, and the
// next scan reports it against the batch's version.
func TestGuardKeepsSavesMadeDuringApply(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(dir, &Options{FS: f})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	key := func(id string) synkfs.Key { return synkfs.Key{Type: "t", ID: id} }
	rec := func(id, body string, v uint64) synkfs.Record {
		return synkfs.Record{Key: key(id), Version: v, Body: []byte(body)}
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{
		rec("edited", `{"v":0}`, 1), rec("deleted", `{"v":0}`, 1), rec("same", `{"v":0}`, 1), rec("quiet", `{"v":0}`, 1), rec("late", `{"v":0}`, 1),
	}}); err != nil {
		t.Fatal(err)
	}

	// The user saves while the guarded batch is being journaled, that
	// is after the guard looked at the files; and one file while the
	// temporary file that is to replace it is written.
	var once, onceLate sync.Once
	f.FailWhen(func(op vfs.Op, name string) error {
		if op == vfs.OpCreate && isTempIn(name, filepath.Join(dir, "t")) {
			onceLate.Do(func() { saveAsEditor(t, filepath.Join(dir, "t", "late.json"), `{"v":"late"}`) })
		}
		if op == vfs.OpWrite && strings.Contains(filepath.ToSlash(name), "/journal/") {
			once.Do(func() {
				saveAsEditor(t, filepath.Join(dir, "t", "edited.json"), `{"v":"mine"}`)
				saveAsEditor(t, filepath.Join(dir, "t", "deleted.json"), `{"v":"mine too"}`)
				saveAsEditor(t, filepath.Join(dir, "t", "same.json"), `{"v":2}`)
			})
		}
		return nil
	})
	err = s.ApplyWith(ctx, synkfs.Batch{Version: 2,
		Puts:    []synkfs.Record{rec("late", `{"v":1}`, 2), rec("edited", `{"v":1}`, 2), rec("same", `{"v":2}`, 2), rec("quiet", `{"v":1}`, 2)},
		Deletes: []synkfs.Tombstone{{Key: key("deleted"), Version: 2}},
	}, ApplyOptions{Guard: true})
	f.FailWhen(nil)
	if err != nil {
		t.Fatal(err)
	}

	read := func(id string) string {
		data, err := os.ReadFile(filepath.Join(dir, "t", id+".json"))
		if err != nil {
			return "error: " + err.Error()
		}
		return strings.Join(strings.Fields(string(data)), "")
	}
	if got := read("edited"); got != `{"v":"mine"}` {
		t.Errorf("edited.json holds %s, want the user's save", got)
	}
	if got := read("deleted"); got != `{"v":"minetoo"}` {
		t.Errorf("deleted.json holds %s, want the user's save", got)
	}
	if got := read("late"); got != `{"v":"late"}` {
		t.Errorf("late.json holds %s, want the user's save", got)
	}
	if got := read("quiet"); !strings.Contains(got, `"v":1`) {
		t.Errorf("quiet.json holds %s, want the batch's put", got)
	}

	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 2 || rep.Edited[0].Key != key("edited") || rep.Edited[0].Version != 2 || string(rep.Edited[0].Body) != `{"v":"mine"}` ||
		rep.Edited[1].Key != key("late") || rep.Edited[1].Version != 2 || string(rep.Edited[1].Body) != `{"v":"late"}` {
		t.Errorf("scan edited = %s, want t/edited and t/late at version 2 with the user's bodies", rep.Edited)
	}
	if len(rep.Created) != 1 || rep.Created[0].Key != key("deleted") || rep.Created[0].Version != 2 {
		t.Errorf("scan created = %+v, want t/deleted over the version 2 tombstone", rep.Created)
	}
	if len(rep.Deleted)+len(rep.Bad) != 0 {
		t.Errorf("scan deleted %v, bad %v; want none", rep.Deleted, rep.Bad)
	}
	if c, ok := s.Lookup(key("deleted")); !ok || !c.Deleted || c.Version != 2 {
		t.Errorf("t/deleted in the index = %+v, want the version 2 tombstone", c)
	}
	if c, ok := s.Lookup(key("edited")); !ok || c.Deleted || c.Version != 2 {
		t.Errorf("t/edited in the index = %+v, want version 2", c)
	}
}

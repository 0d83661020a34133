package fsstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/synkfs/synkfs"
)

func TestScanPaths(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	put(t, s, 1, r("user", "1", 1, `{"a":1}`), r("user", "2", 1, `{"a":2}`), r("user", "3", 1, `{"a":3}`),
		r("note", "x", 1, `{}`), r("note", "y", 1, `{}`))
	write(t, dir, "user/1.json", `{"a":10}`) // edited
	os.Remove(filepath.Join(dir, "user", "2.json"))
	write(t, dir, "user/4.json", `{"a":4}`)     // created
	write(t, dir, "user/5.json", `{`)           // bad
	write(t, dir, "user/3.json", `{"a":30}`)    // edited, not reported to ScanPaths
	write(t, dir, "user/x.json.swp", `swap`)    // ignored
	write(t, dir, "other/9.json", `{"b":true}`) // created, not reported

	rep, err := s.ScanPaths([]string{"user/1.json", "user/2.json", "user/4.json", "user/5.json",
		"user/1.json", "user/x.json.swp", ".synk/index.zst", "user/nothing.json"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].ID != "1" || string(rep.Edited[0].Body) != `{"a":10}` {
		t.Errorf("Edited = %+v", rep.Edited)
	}
	if len(rep.Created) != 1 || rep.Created[0].ID != "4" {
		t.Errorf("Created = %+v", rep.Created)
	}
	if len(rep.Deleted) != 1 || rep.Deleted[0].ID != "2" {
		t.Errorf("Deleted = %+v", rep.Deleted)
	}
	if len(rep.Bad) != 1 || rep.Bad[0].Path != "user/5.json" {
		t.Errorf("Bad = %+v", rep.Bad)
	}

	// A type folder removed whole, reported by its name.
	if err := os.RemoveAll(filepath.Join(dir, "note")); err != nil {
		t.Fatal(err)
	}
	rep, err = s.ScanPaths([]string{"note"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 2 || rep.Deleted[0] != (synkfs.Tombstone{Key: synkfs.Key{Type: "note", ID: "x"}, Version: 1}) || len(rep.Edited)+len(rep.Created) != 0 {
		t.Errorf("folder removed: %+v", rep)
	}
	// A folder that appeared with files in it.
	rep, err = s.ScanPaths([]string{"other"})
	if err != nil || len(rep.Created) != 1 || rep.Created[0].Key != (synkfs.Key{Type: "other", ID: "9"}) {
		t.Errorf("new folder: %+v, %v", rep, err)
	}
}

package replica

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
)

// A user's file is staged and pushed as it is: the bytes the user wrote
// (one compact line, no newline) and its mtime stay, while the server and
// the other replica get the record.
func TestStagedEditKeepsUserBytes(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	p := filepath.Join(a.dir, "n", "1.json")
	check := func(want string, before os.FileInfo) {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if string(data) != want || !fi.ModTime().Equal(before.ModTime()) {
			t.Fatalf("file became %q (mtime %v -> %v), want %q untouched", data, before.ModTime(), fi.ModTime(), want)
		}
	}
	for _, body := range []string{`{"b":1,"a":"x"}`, `{"b":2,"a":"y","c":[1,2]}`} {
		a.write("n/1.json", body) // a create, then an edit
		before, _ := os.Stat(p)
		a.sync()
		check(body, before)
		if a.r.Pending() != 0 {
			t.Fatalf("still staged: %d", a.r.Pending())
		}
		b.sync()
		if got := b.read("n/1.json"); got != canon(t, body) {
			t.Fatalf("b has %q, want %q", got, body)
		}
		a.sync() // the record coming back changes nothing
		check(body, before)
	}
}

// A same-size save in the tick of the replica's own write of a remote
// change is staged when the watcher reports its path.
func TestRacySaveAfterRemoteWrite(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	a.write("n/1.json", `{"v":"aa"}`)
	a.sync()
	b.sync() // b's store writes n/1.json
	p := filepath.Join(b.dir, "n", "1.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("{\n  \"v\": \"bb\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := b.r.ScanPaths([]string{"n/1.json"}); err != nil {
		t.Fatal(err)
	}
	if b.r.Pending() != 1 {
		t.Fatalf("racy save not staged: pending %d", b.r.Pending())
	}
	b.sync()
	a.sync()
	if got := a.read("n/1.json"); got != canon(t, `{"v":"bb"}`) {
		t.Fatalf("a has %q", got)
	}
}

// ScanPaths looks only at the paths given; Scan at everything.
func TestScanPathsStagesOnlyThosePaths(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	a.write("n/1.json", `{"i":1}`)
	a.write("n/2.json", `{"i":2}`)
	a.sync()
	a.write("n/1.json", `{"i":10}`)
	a.write("n/2.json", `{"i":20}`)
	if err := a.r.ScanPaths([]string{"n/1.json"}); err != nil {
		t.Fatal(err)
	}
	st := a.r.Status()
	if len(st.Staged) != 1 || st.Staged[0].Key.ID != "1" {
		t.Fatalf("staged %+v, want only n/1", st.Staged)
	}
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	if a.r.Pending() != 2 {
		t.Fatalf("full scan: pending %d, want 2", a.r.Pending())
	}
}

// A bad entry found by a full scan stays reported when a partial scan
// looks elsewhere, and goes when a partial scan sees it fixed.
func TestBadEntryKeptAcrossPartialScans(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	a.write("n/bad.json", `{`)
	a.write("n/ok.json", `{}`)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	if err := a.r.ScanPaths([]string{"n/ok.json"}); err != nil {
		t.Fatal(err)
	}
	if st := a.r.Status(); len(st.Bad) != 1 {
		t.Fatalf("bad entries after an unrelated partial scan: %+v", st.Bad)
	}
	a.write("n/bad.json", `{"fixed":true}`)
	if err := a.r.ScanPaths([]string{"n/bad.json"}); err != nil {
		t.Fatal(err)
	}
	if st := a.r.Status(); len(st.Bad) != 0 {
		t.Fatalf("fixed entry still reported: %+v", st.Bad)
	}
}

// A record whose id holds ".conflict-" syncs as a record; a file shaped
// like a conflict copy is never one, even when it is not valid JSON.
func TestConflictLookingIDsAndCopies(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	k := synkfs.Key{Type: "n", ID: "x.conflict-host-20260102T030405"}
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		t.Fatal(err)
	}
	a.write(rel, `{"real":true}`)
	a.write("n/y.conflict-host-20260102T030405.json", `not json`)
	a.sync()
	b.sync()
	if got := b.read(rel); got != canon(t, `{"real":true}`) {
		t.Fatalf("b: %s = %q", rel, got)
	}
	if got := b.read("n/y.conflict-host-20260102T030405.json"); got != "" {
		t.Fatal("a conflict copy was synced")
	}
	st := a.r.Status()
	if len(st.Bad) != 0 {
		t.Fatalf("conflict copy reported as bad: %+v", st.Bad)
	}
	if len(st.Conflicts) != 1 || st.Conflicts[0].Key.ID != "y" {
		t.Fatalf("conflicts %+v", st.Conflicts)
	}
}

// Deleting a conflict copy removes it from status and its sidecar from
// the state folder.
func TestDeletedCopyDropsSidecar(t *testing.T) {
	a, _ := conflictSetup(t, KeepBoth, `{"n":0}`, `{"n":1}`, `{"n":2}`)
	cs, _ := ListConflicts(a.dir)
	if len(cs) != 1 {
		t.Fatalf("conflicts %+v", cs)
	}
	side := filepath.Join(a.dir, filepath.FromSlash(sidecarRel(cs[0].Copy)))
	if _, err := os.Stat(side); err != nil {
		t.Fatalf("no sidecar: %v", err)
	}
	a.remove(cs[0].Copy)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(side); !os.IsNotExist(err) {
		t.Fatalf("sidecar of a deleted copy is still there: %v", err)
	}
	if st := a.r.Status(); len(st.Conflicts) != 0 {
		t.Fatalf("status lists %+v", st.Conflicts)
	}
}

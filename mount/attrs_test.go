package mount_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/server"
)

// Listings and attributes come from the store's index; these tests check
// that what `ls -l` shows always agrees with what a read returns and with
// the file in the state folder, whatever wrote it.

// expectConsistent lists dir in the mount and checks that it names
// exactly want, and that each file's size (from the listing's lookups
// and from a stat) is the length of what reading it returns, which is
// what the state folder's file holds.
func expectConsistent(t *testing.T, c *child, typ string, want ...string) {
	t.Helper()
	settle(t, c.mnt)
	dir := filepath.Join(c.mnt, typ)
	ents, err := os.ReadDir(dir)
	mustOK(t, "readdir", err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		info, err := e.Info()
		mustOK(t, "lstat "+e.Name(), err)
		content := readFile(t, filepath.Join(dir, e.Name()))
		if info.Size() != int64(len(content)) {
			t.Errorf("%s: listed with size %d, reads %d bytes: %q", e.Name(), info.Size(), len(content), content)
		}
		var st syscall.Stat_t
		mustOK(t, "stat", syscall.Stat(filepath.Join(dir, e.Name()), &st))
		if st.Size != int64(len(content)) {
			t.Errorf("%s: stat size %d, reads %d bytes", e.Name(), st.Size, len(content))
		}
		if disk, err := os.ReadFile(filepath.Join(c.state, typ, e.Name())); err != nil || string(disk) != content {
			t.Errorf("%s: the mount reads %q, the state folder holds %q (%v)", e.Name(), content, disk, err)
		}
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("%s lists %v, want %v", typ, names, want)
	}
}

func TestAttributesFollowContent(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	mustOK(t, "mkdir", os.MkdirAll(mnt, 0o755))
	st, err := fsstore.Open(state, &fsstore.Options{NoSync: true})
	mustOK(t, "open store", err)
	batch := synkfs.Batch{Version: 1}
	for _, id := range []string{"a", "b", "c", "d"} {
		batch.Puts = append(batch.Puts, synkfs.Record{Key: synkfs.Key{Type: "items", ID: id}, Version: 1, Body: []byte(`{"id":"` + id + `","n":1}`)})
	}
	mustOK(t, "apply", st.Apply(context.Background(), batch))
	mustOK(t, "close store", st.Close())
	// A scan well after the writes confirms the files, so that the index
	// vouches for their size and mtime from then on (see fsstore's racy.go).
	time.Sleep(50 * time.Millisecond)
	st, err = fsstore.Open(state, &fsstore.Options{NoSync: true})
	mustOK(t, "reopen store", err)
	if rep, err := st.ScanChanges(); err != nil || !rep.Empty() {
		t.Fatalf("scan: %+v, %v", rep, err)
	}
	mustOK(t, "close store", st.Close())

	// Changed in the state folder while nothing was mounted: the index
	// does not describe these files.
	items := filepath.Join(state, "items")
	mustOK(t, "edit", os.WriteFile(filepath.Join(items, "a.json"), []byte(`{"n": 1, "edited": "by hand, longer"}`), 0o644))
	mustOK(t, "remove", os.Remove(filepath.Join(items, "b.json")))
	mustOK(t, "break", os.WriteFile(filepath.Join(items, "c.json"), []byte(`{"n": `), 0o644))
	mustOK(t, "create", os.WriteFile(filepath.Join(items, "new.json"), []byte(`{"made": "by hand"}`), 0o644))

	c := startChild(t, "store", state, mnt)
	expectConsistent(t, c, "items", "a.json", "c.json", "d.json", "new.json")
	if _, err := os.Stat(filepath.Join(mnt, "items", "b.json")); !os.IsNotExist(err) {
		t.Fatalf("stat of a record whose file was removed: %v", err)
	}

	// Saves through the mount: valid, bad, bad made valid, a new record.
	p := func(name string) string { return filepath.Join(mnt, "items", name) }
	save(t, p("d.json"), `{"n": 2, "much": "longer than it was before this save"}`)
	save(t, p("a.json"), `{"broken`)
	save(t, p("c.json"), `{"fixed": true}`)
	save(t, p("e.json"), `{"e": 1}`)
	expectConsistent(t, c, "items", "a.json", "c.json", "d.json", "e.json", "new.json")

	// Changes from elsewhere, over a bad entry too.
	c.remote("items", "d", `{"n": 3}`)
	c.remote("items", "a", `{"from": "the server, replacing a bad entry"}`)
	c.remote("items", "f", `{"f": "new from the server"}`)
	c.remote("items", "e", "")
	waitFor(t, "the remote changes", func() bool {
		return strings.Contains(readFile(t, p("d.json")), "3") && slices.Contains(listDir(t, filepath.Join(mnt, "items")), "f.json")
	})
	expectConsistent(t, c, "items", "a.json", "c.json", "d.json", "f.json", "new.json")

	// Deletes through the mount, of a record and of a hand-made file.
	mustOK(t, "unlink", syscall.Unlink(p("new.json")))
	mustOK(t, "unlink", syscall.Unlink(p("c.json")))
	expectConsistent(t, c, "items", "a.json", "d.json", "f.json")
}

// In a synced mount the engine stages saves; a save it cannot adopt (a bad
// entry) is still listed as the file it is.
func TestSyncedMountAttributes(t *testing.T) {
	needFUSE(t)
	srv := server.New(memstore.New(), nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	mustOK(t, "mkdir", os.MkdirAll(mnt, 0o755))
	c := startChild(t, "replica", state, mnt, childServerEnv+"="+url)

	mustOK(t, "mkdir", syscall.Mkdir(filepath.Join(mnt, "notes"), 0o755))
	p := func(name string) string { return filepath.Join(mnt, "notes", name) }
	save(t, p("a.json"), `{"a": 1}`)
	save(t, p("b.json"), `{"b": 1}`)
	expectConsistent(t, c, "notes", "a.json", "b.json")
	save(t, p("a.json"), `{"a": "not json yet`)
	save(t, p("new.json"), `{"also": broken}`)
	save(t, p("b.json"), `{"b": 2, "longer": "than before"}`)
	expectConsistent(t, c, "notes", "a.json", "b.json", "new.json")
	save(t, p("a.json"), `{"a": "json again"}`)
	mustOK(t, "unlink", syscall.Unlink(p("new.json")))
	expectConsistent(t, c, "notes", "a.json", "b.json")
}

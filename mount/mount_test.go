package mount_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The operations below are done with plain syscalls, in the order the
// programs named do them, against a mount served by another process.

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// open opens path with flags, returning the fd.
func open(t *testing.T, path string, flags int, perm uint32) int {
	t.Helper()
	fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, perm)
	mustOK(t, "open "+filepath.Base(path), err)
	return fd
}

func write(t *testing.T, fd int, s string) {
	t.Helper()
	n, err := syscall.Write(fd, []byte(s))
	mustOK(t, "write", err)
	if n != len(s) {
		t.Fatalf("short write %d of %d", n, len(s))
	}
}

func closeFD(t *testing.T, fd int) {
	t.Helper()
	mustOK(t, "close", syscall.Close(fd))
}

// save writes content to path the way a shell redirection does.
func save(t *testing.T, path, content string) {
	t.Helper()
	fd := open(t, path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o644)
	write(t, fd, content)
	closeFD(t, fd)
}

// saveSynced is save with an fsync before the close: the save is in the
// store when fsync returns.
func saveSynced(t *testing.T, path, content string) {
	t.Helper()
	fd := open(t, path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o644)
	write(t, fd, content)
	mustOK(t, "fsync", syscall.Fsync(fd))
	closeFD(t, fd)
}

// unsaved reads the list of files the mount holds unsaved from
// .synk/status.json.
func unsaved(t *testing.T, mnt string) []string {
	t.Helper()
	var st struct {
		Unsaved []string `json:"unsaved"`
	}
	mustOK(t, "decode status.json", json.Unmarshal([]byte(readFile(t, filepath.Join(mnt, ".synk", "status.json"))), &st))
	return st.Unsaved
}

// settle waits until the mount has saved every write made through it, as
// .synk/status.json tells; writes are saved once they are quiet.
func settle(t *testing.T, mnt string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u := unsaved(t, mnt)
		if len(u) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mount still holds unsaved writes to %v after 5s", u)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	mustOK(t, "read "+path, err)
	return string(data)
}

// expectRecord checks d holds key with body (canonical JSON).
func expectRecord(t *testing.T, d dump, key, body string) {
	t.Helper()
	r, ok := d.Records[key]
	if !ok {
		t.Fatalf("store has no record %s; records: %v", key, keys(d))
	}
	if r.Body != body {
		t.Fatalf("record %s: body %s, want %s", key, r.Body, body)
	}
}

func expectNoRecord(t *testing.T, d dump, key string) {
	t.Helper()
	if _, ok := d.Records[key]; ok {
		t.Fatalf("store still has record %s", key)
	}
}

func keys(d dump) []string {
	var out []string
	for k := range d.Records {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// oneVersion checks exactly one batch was applied between a and b.
func oneVersion(t *testing.T, a, b dump) {
	t.Helper()
	if b.Version != a.Version+1 {
		t.Fatalf("store version went from %d to %d, want exactly one new version", a.Version, b.Version)
	}
}

// oneSave checks that between a and b the mount saved exactly once and
// deleted nothing, and that the save made one new version.
func oneSave(t *testing.T, a, b dump) {
	t.Helper()
	oneVersion(t, a, b)
	if b.Puts-a.Puts != 1 || b.Deletes != a.Deletes {
		t.Fatalf("the mount made %d saves and %d deletes, want one save", b.Puts-a.Puts, b.Deletes-a.Deletes)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	mustOK(t, "readdir "+dir, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// expectTreeClean checks the state folder's type folder holds only the
// record files wanted: no editor leftovers ever reach the store.
func expectTreeClean(t *testing.T, c *child, typ string, want ...string) {
	t.Helper()
	got := listDir(t, filepath.Join(c.state, typ))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("state folder %s holds %v, want %v", typ, got, want)
	}
}

func TestMountOperations(t *testing.T) {
	c := newMount(t, childGraceEnv+"=300ms")
	m := c.mnt
	notes := filepath.Join(m, "notes")

	t.Run("mkdir makes a type", func(t *testing.T) {
		mustOK(t, "mkdir", syscall.Mkdir(notes, 0o755))
		if !slices.Contains(listDir(t, m), "notes") {
			t.Fatalf("root lists %v", listDir(t, m))
		}
		if err := syscall.Mkdir(filepath.Join(notes, "sub"), 0o755); err != syscall.EPERM {
			t.Fatalf("mkdir in a type folder: %v, want EPERM", err)
		}
		mustOK(t, "mkdir", syscall.Mkdir(filepath.Join(m, "empty"), 0o755))
		mustOK(t, "rmdir empty type", syscall.Rmdir(filepath.Join(m, "empty")))
		if slices.Contains(listDir(t, m), "empty") {
			t.Fatal("removed type still listed")
		}
	})

	t.Run("create is one version", func(t *testing.T) {
		before := c.dump()
		save(t, filepath.Join(notes, "a.json"), `{"title": "first", "n": 1}`)
		after := c.dump()
		oneSave(t, before, after)
		expectRecord(t, after, "notes/a", `{"n":1,"title":"first"}`)
		if got := readFile(t, filepath.Join(notes, "a.json")); got != "{\n  \"n\": 1,\n  \"title\": \"first\"\n}\n" {
			t.Fatalf("read back %q", got)
		}
		var st syscall.Stat_t
		mustOK(t, "stat", syscall.Stat(filepath.Join(notes, "a.json"), &st))
		if st.Size != int64(len(readFile(t, filepath.Join(notes, "a.json")))) {
			t.Fatalf("stat size %d does not match content", st.Size)
		}
	})

	t.Run("rmdir of a non-empty type", func(t *testing.T) {
		if err := syscall.Rmdir(notes); err != syscall.ENOTEMPTY {
			t.Fatalf("rmdir: %v, want ENOTEMPTY", err)
		}
	})

	t.Run("many writes, one version", func(t *testing.T) {
		before := c.dump()
		fd := open(t, filepath.Join(notes, "a.json"), syscall.O_WRONLY|syscall.O_TRUNC, 0)
		for _, part := range []string{`{"title":`, ` "second",`, ` "n": 2}`, "\n"} {
			write(t, fd, part)
		}
		// Quiet for longer than the save delay, but still open for
		// writing: nothing is saved yet.
		time.Sleep(3 * testSaveDelay)
		if d := c.dumpNow(); d.Version != before.Version || !slices.Equal(d.Unsaved, []string{"notes/a.json"}) {
			t.Fatalf("a write reached the store before the file was closed (version %d -> %d, unsaved %v)", before.Version, d.Version, d.Unsaved)
		}
		closeFD(t, fd)
		after := c.dump()
		oneSave(t, before, after)
		expectRecord(t, after, "notes/a", `{"n":2,"title":"second"}`)
	})

	t.Run("echo > f", func(t *testing.T) {
		before := c.dump()
		save(t, filepath.Join(notes, "a.json"), `{"n": 3}`+"\n")
		after := c.dump()
		oneSave(t, before, after)
		expectRecord(t, after, "notes/a", `{"n":3}`)
	})

	t.Run("truncate then write", func(t *testing.T) {
		before := c.dump()
		fd := open(t, filepath.Join(notes, "a.json"), syscall.O_RDWR, 0)
		mustOK(t, "ftruncate", syscall.Ftruncate(fd, 0))
		write(t, fd, `{"n": 4}`)
		mustOK(t, "fsync", syscall.Fsync(fd))
		closeFD(t, fd)
		after := c.dump()
		oneSave(t, before, after)
		expectRecord(t, after, "notes/a", `{"n":4}`)
	})

	t.Run("invalid JSON is a bad entry, then cat >> fixes it", func(t *testing.T) {
		p := filepath.Join(notes, "b.json")
		before := c.dump()
		save(t, p, `{"a": 1,`)
		mid := c.dump()
		if mid.Version != before.Version || mid.Puts != before.Puts+1 {
			t.Fatalf("an invalid save: version %d -> %d, %d saves; want no version, one save", before.Version, mid.Version, mid.Puts-before.Puts)
		}
		if len(mid.Bad) != 1 || mid.Bad[0].Path != "notes/b.json" {
			t.Fatalf("bad entries %+v, want notes/b.json", mid.Bad)
		}
		if got := readFile(t, p); got != `{"a": 1,` {
			t.Fatalf("the invalid content reads back as %q", got)
		}
		var listed []map[string]any
		mustOK(t, "decode bad-entries.json", json.Unmarshal([]byte(readFile(t, filepath.Join(m, ".synk", "bad-entries.json"))), &listed))
		if len(listed) != 1 || listed[0]["path"] != "notes/b.json" {
			t.Fatalf(".synk/bad-entries.json: %v", listed)
		}
		fd := open(t, p, syscall.O_WRONLY|syscall.O_APPEND, 0)
		write(t, fd, ` "b": 2}`)
		closeFD(t, fd)
		after := c.dump()
		oneSave(t, mid, after)
		expectRecord(t, after, "notes/b", `{"a":1,"b":2}`)
		if len(after.Bad) != 0 {
			t.Fatalf("fixed entry still bad: %+v", after.Bad)
		}
	})

	t.Run("unlink deletes", func(t *testing.T) {
		p := filepath.Join(notes, "gone.json")
		save(t, p, `{}`)
		before := c.dump()
		mustOK(t, "unlink", syscall.Unlink(p))
		after := c.dump()
		oneVersion(t, before, after)
		if after.Deletes != before.Deletes+1 || after.Puts != before.Puts {
			t.Fatalf("unlink made %d saves and %d deletes", after.Puts-before.Puts, after.Deletes-before.Deletes)
		}
		expectNoRecord(t, after, "notes/gone")
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat after unlink: %v", err)
		}
	})

	t.Run("rename changes the key", func(t *testing.T) {
		save(t, filepath.Join(notes, "r1.json"), `{"r": 1}`)
		mustOK(t, "rename", syscall.Rename(filepath.Join(notes, "r1.json"), filepath.Join(notes, "r2.json")))
		d := c.dump()
		expectNoRecord(t, d, "notes/r1")
		expectRecord(t, d, "notes/r2", `{"r":1}`)
		if got := readFile(t, filepath.Join(notes, "r2.json")); !strings.Contains(got, `"r": 1`) {
			t.Fatalf("renamed file reads %q", got)
		}
	})

	t.Run("rename across types and onto a record", func(t *testing.T) {
		mustOK(t, "mkdir", syscall.Mkdir(filepath.Join(m, "tasks"), 0o755))
		save(t, filepath.Join(m, "tasks", "t.json"), `{"old": true}`)
		mustOK(t, "rename", syscall.Rename(filepath.Join(notes, "r2.json"), filepath.Join(m, "tasks", "t.json")))
		d := c.dump()
		expectNoRecord(t, d, "notes/r2")
		expectRecord(t, d, "tasks/t", `{"r":1}`)
		if got := listDir(t, filepath.Join(m, "tasks")); !slices.Equal(got, []string{"t.json"}) {
			t.Fatalf("tasks lists %v", got)
		}
	})

	t.Run("mv to a non-record name deletes after the grace", func(t *testing.T) {
		p := filepath.Join(notes, "old.json")
		save(t, p, `{"x": 1}`)
		before := c.dump()
		mustOK(t, "rename", syscall.Rename(p, filepath.Join(notes, "old.json.bak")))
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the record name still exists: %v", err)
		}
		if got := readFile(t, filepath.Join(notes, "old.json.bak")); !strings.Contains(got, `"x": 1`) {
			t.Fatalf("the renamed file reads %q", got)
		}
		time.Sleep(600 * time.Millisecond)
		after := c.dump()
		oneVersion(t, before, after)
		expectNoRecord(t, after, "notes/old")
		mustOK(t, "unlink", syscall.Unlink(filepath.Join(notes, "old.json.bak")))
	})

	t.Run("status folder is read-only", func(t *testing.T) {
		var st map[string]any
		mustOK(t, "decode status.json", json.Unmarshal([]byte(readFile(t, filepath.Join(m, ".synk", "status.json"))), &st))
		if _, ok := st["records"]; !ok {
			t.Fatalf("status.json: %v", st)
		}
		if got := readFile(t, filepath.Join(m, ".synk", "conflicts.json")); got != "[]\n" {
			t.Fatalf("conflicts.json: %q", got)
		}
		// The kernel opens files without asking the mount (no-open
		// mode), so an open for writing succeeds; nothing written or
		// truncated gets through.
		if fd, err := syscall.Open(filepath.Join(m, ".synk", "status.json"), syscall.O_WRONLY, 0); err == nil {
			if _, err := syscall.Write(fd, []byte("{}")); err != syscall.EROFS {
				t.Errorf("write to status.json: %v, want EROFS", err)
			}
			closeFD(t, fd)
		}
		if err := syscall.Truncate(filepath.Join(m, ".synk", "status.json"), 0); err != syscall.EROFS {
			t.Errorf("truncate status.json: %v, want EROFS", err)
		}
		if _, err := syscall.Open(filepath.Join(m, ".synk", "x"), syscall.O_WRONLY|syscall.O_CREAT, 0o644); err == nil {
			t.Fatal("created a file in .synk")
		}
	})

	expectTreeClean(t, c, "notes", "a.json", "b.json")
}

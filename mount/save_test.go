package mount_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The kernel tells the mount nothing of closes (no-open mode): a written
// file is saved on fsync, once quiet and closed, or at unmount. These
// tests pin down what a user sees meanwhile.

// With a save delay too long to pass during the test: reads see the
// buffered writes at once, status.json lists the file as unsaved, the
// store has nothing yet; fsync saves at once as one version; a clean
// unmount saves what is left.
func TestSaveTiming(t *testing.T) {
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	mustOK(t, "mkdir", os.MkdirAll(mnt, 0o755))
	c := startChild(t, "store", state, mnt, childSaveEnv+"=1h")
	docs := filepath.Join(mnt, "docs")
	mustOK(t, "mkdir", syscall.Mkdir(docs, 0o755))
	p := func(name string) string { return filepath.Join(docs, name) }

	save(t, p("a.json"), `{"a": 1}`)
	if got := readFile(t, p("a.json")); got != `{"a": 1}` {
		t.Fatalf("echo > f; cat f reads %q", got)
	}
	if u := unsaved(t, mnt); !slices.Equal(u, []string{"docs/a.json"}) {
		t.Fatalf("status.json lists unsaved %v, want docs/a.json", u)
	}
	before := c.dumpNow()
	expectNoRecord(t, before, "docs/a")

	// More writes, then fsync: one save of everything, before fsync
	// returns.
	fd := open(t, p("a.json"), syscall.O_WRONLY|syscall.O_TRUNC, 0)
	write(t, fd, `{"a": 2,`)
	write(t, fd, ` "b": 3}`)
	mustOK(t, "fsync", syscall.Fsync(fd))
	after := c.dumpNow()
	oneSave(t, before, after)
	expectRecord(t, after, "docs/a", `{"a":2,"b":3}`)
	if len(after.Unsaved) != 0 {
		t.Fatalf("unsaved after fsync: %v", after.Unsaved)
	}
	closeFD(t, fd)
	// The read shows what the store kept (pretty-printed) once saved.
	if got := readFile(t, p("a.json")); got != "{\n  \"a\": 2,\n  \"b\": 3\n}\n" {
		t.Fatalf("read after fsync %q", got)
	}

	// Left unsaved, then a clean unmount: saved.
	save(t, p("b.json"), `{"b": "at unmount"}`)
	if d := c.dumpNow(); !slices.Equal(d.Unsaved, []string{"docs/b.json"}) {
		t.Fatalf("unsaved %v, want docs/b.json", d.Unsaved)
	}
	mustOK(t, "unmount", c.stop())
	c2 := startChild(t, "store", state, mnt)
	expectRecord(t, c2.dump(), "docs/b", `{"b":"at unmount"}`)
}

// A writer that pauses mid-file for longer than the save delay, holding
// the file open, still makes one version: the half-written (invalid)
// content is never saved, not even as a bad entry.
func TestSlowWriterOneVersion(t *testing.T) {
	c := newMount(t)
	docs := filepath.Join(c.mnt, "docs")
	mustOK(t, "mkdir", syscall.Mkdir(docs, 0o755))
	p := filepath.Join(docs, "slow.json")
	save(t, p, `{"v": 0}`)
	before := c.dump()

	fd := open(t, p, syscall.O_WRONLY|syscall.O_TRUNC, 0)
	for i, part := range []string{`{"v": 1,`, ` "slow":`, ` true}`} {
		if i > 0 {
			time.Sleep(3 * testSaveDelay)
			if d := c.dumpNow(); d.Version != before.Version || d.Puts != before.Puts || len(d.Bad) != 0 {
				t.Fatalf("saved mid-file: version %d -> %d, %d saves, bad %v", before.Version, d.Version, d.Puts-before.Puts, d.Bad)
			}
		}
		write(t, fd, part)
	}
	closeFD(t, fd)
	after := c.dump()
	oneSave(t, before, after)
	expectRecord(t, after, "docs/slow", `{"slow":true,"v":1}`)
}

// Two processes write one file: the writes land in one buffer (the file's,
// not a handle's) and the save waits for the last writer to close.
func TestTwoWritersOneFile(t *testing.T) {
	c := newMount(t)
	docs := filepath.Join(c.mnt, "docs")
	mustOK(t, "mkdir", syscall.Mkdir(docs, 0o755))
	p := filepath.Join(docs, "two.json")
	save(t, p, `{"v": 0}`)
	before := c.dump()

	fd := open(t, p, syscall.O_WRONLY|syscall.O_TRUNC, 0)
	write(t, fd, `{"first": 1,`)
	// The second writer appends and keeps the file open a while.
	sh := exec.Command("sh", "-c", `exec 3>>"$1"; printf ' "second": 2}' >&3; sleep 1`, "sh", p)
	mustOK(t, "start the second writer", sh.Start())
	t.Cleanup(func() { _ = sh.Process.Kill(); _ = sh.Wait() })
	want := int64(len(`{"first": 1, "second": 2}`))
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st syscall.Stat_t
		mustOK(t, "fstat", syscall.Fstat(fd, &st))
		if st.Size == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second writer's append did not arrive (size %d)", st.Size)
		}
		time.Sleep(10 * time.Millisecond)
	}
	closeFD(t, fd)
	time.Sleep(3 * testSaveDelay)
	if d := c.dumpNow(); d.Version != before.Version || !slices.Equal(d.Unsaved, []string{"docs/two.json"}) {
		t.Fatalf("saved while the second writer holds the file: version %d -> %d, unsaved %v", before.Version, d.Version, d.Unsaved)
	}
	mustOK(t, "second writer", sh.Wait())
	after := c.dump()
	oneSave(t, before, after)
	expectRecord(t, after, "docs/two", `{"first":1,"second":2}`)
}

// truncate(2) on the path and a write through a later open are one
// change when they come together, as a script's `: > f; echo x >> f`.
func TestTruncateThenAppendOneVersion(t *testing.T) {
	c := newMount(t)
	docs := filepath.Join(c.mnt, "docs")
	mustOK(t, "mkdir", syscall.Mkdir(docs, 0o755))
	p := filepath.Join(docs, "t.json")
	save(t, p, `{"v": 0}`)
	before := c.dump()
	mustOK(t, "truncate", syscall.Truncate(p, 0))
	fd := open(t, p, syscall.O_WRONLY|syscall.O_APPEND, 0)
	write(t, fd, `{"v": 1}`)
	closeFD(t, fd)
	after := c.dump()
	oneSave(t, before, after)
	expectRecord(t, after, "docs/t", `{"v":1}`)
}

// When the kernel drops the inode of a file with writes not saved yet (as
// under memory pressure), the mount saves them at once: a later lookup of
// the name must find them.
func TestForgottenInodeSaved(t *testing.T) {
	c := newMount(t, childSaveEnv+"=1h")
	docs := filepath.Join(c.mnt, "docs")
	mustOK(t, "mkdir", syscall.Mkdir(docs, 0o755))
	p := filepath.Join(docs, "f.json")
	save(t, p, `{"v": 1}`)
	before := c.dumpNow()
	if !slices.Equal(before.Unsaved, []string{"docs/f.json"}) {
		t.Fatalf("unsaved %v, want docs/f.json", before.Unsaved)
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0o200); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot drop caches: %v", err)
		}
		t.Skipf("cannot drop caches: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d := c.dumpNow(); len(d.Unsaved) > 0; d = c.dumpNow() {
		if time.Now().After(deadline) {
			t.Fatalf("still unsaved 5s after the kernel dropped its inodes: %v", d.Unsaved)
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := c.dumpNow()
	oneSave(t, before, after)
	expectRecord(t, after, "docs/f", `{"v":1}`)
	if got := readFile(t, p); got != "{\n  \"v\": 1\n}\n" {
		t.Fatalf("read after the save %q", got)
	}
}

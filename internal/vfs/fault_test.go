package vfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs/internal/vfs"
)

// writeWorkload creates dir/a, writes two chunks with a sync after each,
// renames it to dir/b and syncs the directory: 7 mutating operations.
func writeWorkload(fsys vfs.FS, dir string) error {
	f, err := fsys.OpenFile(filepath.Join(dir, "a"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, chunk := range []string{"hello ", "world!"} {
		if _, err := f.Write([]byte(chunk)); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := fsys.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

func TestFaultPassThroughCountsOps(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	if err := writeWorkload(f, dir); err != nil {
		t.Fatal(err)
	}
	if got := f.Ops(); got != 7 {
		t.Fatalf("Ops() = %d, want 7", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "b"))
	if err != nil || string(b) != "hello world!" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	// Read-only operations are not counted.
	if _, err := f.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if got := f.Ops(); got != 7 {
		t.Fatalf("Ops() after reads = %d, want 7", got)
	}
}

func TestFaultCrashAtEveryOp(t *testing.T) {
	// What must be on disk after crashing at operation i (1-based).
	want := map[int]struct {
		name, content string
	}{
		1: {"", ""}, // create fails: nothing
		2: {"a", ""},
		3: {"a", "hello "},
		4: {"a", "hello "},
		5: {"a", "hello world!"},
		6: {"a", "hello world!"},
		7: {"b", "hello world!"},
	}
	for i := 1; i <= 7; i++ {
		dir := t.TempDir()
		f := vfs.NewFault(vfs.OS)
		f.CrashAfter(i)
		err := writeWorkload(f, dir)
		if !errors.Is(err, vfs.ErrCrashed) {
			t.Fatalf("crash at %d: err = %v, want ErrCrashed", i, err)
		}
		if !f.Crashed() || f.CrashedAt() == "" {
			t.Fatalf("crash at %d: Crashed() = false", i)
		}
		// Every later operation fails, mutating or not.
		if _, err := f.ReadDir(dir); !errors.Is(err, vfs.ErrCrashed) {
			t.Fatalf("crash at %d: ReadDir after crash: %v", i, err)
		}
		if err := f.MkdirAll(filepath.Join(dir, "x"), 0o755); !errors.Is(err, vfs.ErrCrashed) {
			t.Fatalf("crash at %d: MkdirAll after crash: %v", i, err)
		}
		es, _ := os.ReadDir(dir)
		w := want[i]
		if w.name == "" {
			if len(es) != 0 {
				t.Fatalf("crash at %d: dir has %d entries, want none", i, len(es))
			}
			continue
		}
		if len(es) != 1 || es[0].Name() != w.name {
			t.Fatalf("crash at %d: entries %v, want [%s]", i, es, w.name)
		}
		b, _ := os.ReadFile(filepath.Join(dir, w.name))
		if string(b) != w.content {
			t.Fatalf("crash at %d (%s): content %q, want %q", i, f.CrashedAt(), b, w.content)
		}
	}
}

func TestFaultCrashAfterCountsFromCall(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	if err := f.MkdirAll(filepath.Join(dir, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.CrashAfter(2)
	if err := f.MkdirAll(filepath.Join(dir, "y"), 0o755); err != nil {
		t.Fatalf("first op after CrashAfter(2): %v", err)
	}
	if err := f.MkdirAll(filepath.Join(dir, "z"), 0o755); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("second op after CrashAfter(2): %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "z")); !os.IsNotExist(err) {
		t.Fatalf("crashing mkdir took effect: %v", err)
	}
}

func TestFaultTornWrite(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	f.TornWrites(true)
	g, err := f.OpenFile(filepath.Join(dir, "t"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.CrashAfter(1)
	n, err := g.Write([]byte("0123456789"))
	if !errors.Is(err, vfs.ErrCrashed) || n != 5 {
		t.Fatalf("torn write = %d, %v; want 5, ErrCrashed", n, err)
	}
	if err := g.Close(); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("Close after crash: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "t"))
	if string(b) != "01234" {
		t.Fatalf("content %q, want %q", b, "01234")
	}
}

func TestFaultDropUnsynced(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "d")
	if err := os.WriteFile(name, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := vfs.NewFault(vfs.OS)
	f.DropUnsynced(true)
	g, err := f.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	mustWrite := func(s string) {
		t.Helper()
		if _, err := g.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite("+synced")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	mustWrite("+lost")
	// Rename the file before crashing: the loss follows the file.
	if err := f.Rename(name, name+"2"); err != nil {
		t.Fatal(err)
	}
	f.CrashAfter(1)
	if err := f.SyncDir(dir); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("SyncDir: %v", err)
	}
	b, _ := os.ReadFile(name + "2")
	if string(b) != "old+synced" {
		t.Fatalf("content after crash %q, want %q", b, "old+synced")
	}
}

func TestFaultFailWith(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	g, err := f.OpenFile(filepath.Join(dir, "f"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	f.FailWith(vfs.OpWrite, syscall.ENOSPC)
	if _, err := g.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write: %v, want ENOSPC", err)
	}
	if err := g.Sync(); err != nil {
		t.Fatalf("Sync should be unaffected: %v", err)
	}
	f.FailWith(vfs.OpSync, syscall.EIO)
	if err := g.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync: %v, want EIO", err)
	}
	if f.Crashed() {
		t.Fatal("FailWith must not crash")
	}
	f.FailWith(vfs.OpWrite, nil)
	f.FailWith(vfs.OpSync, nil)
	if _, err := g.Write([]byte("x")); err != nil {
		t.Fatalf("Write after clearing: %v", err)
	}
	if err := g.Sync(); err != nil {
		t.Fatalf("Sync after clearing: %v", err)
	}
	// "" matches every operation, read-only ones too.
	f.FailWith("", syscall.EIO)
	if _, err := f.ReadDir(dir); !errors.Is(err, syscall.EIO) {
		t.Fatalf("ReadDir: %v, want EIO", err)
	}
	f.FailWith("", nil)

	// FailWhen matches by name.
	bad := filepath.Join(dir, "bad")
	f.FailWhen(func(op vfs.Op, name string) error {
		if op == vfs.OpCreate && name == bad {
			return syscall.EACCES
		}
		return nil
	})
	if _, err := f.OpenFile(bad, os.O_CREATE|os.O_WRONLY, 0o644); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("OpenFile bad: %v, want EACCES", err)
	}
	g2, err := f.OpenFile(filepath.Join(dir, "good"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("OpenFile good: %v", err)
	}
	g2.Close()
}

func TestFaultLatency(t *testing.T) {
	f := vfs.NewFault(vfs.OS)
	f.SetLatency(20 * time.Millisecond)
	start := time.Now()
	if _, err := f.Stat(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Stat took %v, want >= 20ms", d)
	}
}

func TestFaultConcurrent(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	f.CrashAfter(50)
	var wg sync.WaitGroup
	var mu sync.Mutex
	crashed := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				err := f.MkdirAll(filepath.Join(dir, string(rune('a'+i)), string(rune('a'+j))), 0o755)
				if errors.Is(err, vfs.ErrCrashed) {
					mu.Lock()
					crashed++
					mu.Unlock()
				} else if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// Operations after the crash are refused before they are counted.
	if f.Ops() != 50 {
		t.Fatalf("Ops() = %d, want 50", f.Ops())
	}
	if crashed != 160-49 {
		t.Fatalf("%d operations failed, want %d", crashed, 160-49)
	}
}

// writeTemp writes s to a new temporary file in dir through f, closes it
// without syncing and renames it to name: how a store writes a file.
func writeTemp(t *testing.T, f *vfs.Fault, dir, name, s string, sync bool) {
	t.Helper()
	g, err := f.CreateTemp(dir, ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := g.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Rename(g.Name(), name); err != nil {
		t.Fatal(err)
	}
}

// TestFaultDropUnsyncedSyncedElsewhere: a file written through one
// descriptor, closed, and synced later through another (as a checkpoint
// flushes the files written since the last one) keeps its data.
func TestFaultDropUnsyncedSyncedElsewhere(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "r")
	f := vfs.NewFault(vfs.OS)
	f.DropUnsynced(true)
	writeTemp(t, f, dir, name, "durable", false)
	g, err := f.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	g.Close()
	f.CrashAfter(1)
	if err := f.SyncDir(dir); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("SyncDir: %v", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "durable" {
		t.Fatalf("content after crash %q, want %q", b, "durable")
	}
}

// TestFaultDropUnsyncedReplacedFile: the unsynced data of a file replaced
// by a rename, or removed, is gone with it; the crash does not cut the
// synced file that now has its name.
func TestFaultDropUnsyncedReplacedFile(t *testing.T) {
	dir := t.TempDir()
	name, other := filepath.Join(dir, "r"), filepath.Join(dir, "s")
	f := vfs.NewFault(vfs.OS)
	f.DropUnsynced(true)
	writeTemp(t, f, dir, name, "first", false)
	writeTemp(t, f, dir, name, "second, synced", true)
	writeTemp(t, f, dir, other, "removed", false)
	if err := f.Remove(other); err != nil {
		t.Fatal(err)
	}
	writeTemp(t, f, dir, other, "made again, synced", true)
	f.CrashAfter(1)
	if err := f.SyncDir(dir); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("SyncDir: %v", err)
	}
	for path, want := range map[string]string{name: "second, synced", other: "made again, synced"} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Errorf("%s after crash: %q, want %q", filepath.Base(path), b, want)
		}
	}
}

package vfs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/synkfs/synkfs/internal/vfs"
)

// needExchange skips where the file system under dir cannot swap (a
// failure under CI, which must test it).
func needExchange(t *testing.T, fsys vfs.FS, a, b string) {
	t.Helper()
	err := fsys.Exchange(a, b)
	if errors.Is(err, errors.ErrUnsupported) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("exchange unsupported under CI: %v", err)
		}
		t.Skipf("exchange unsupported here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Exchange(a, b); err != nil { // back
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

func TestExchangeSwaps(t *testing.T) {
	for _, fsys := range []struct {
		name string
		fs   vfs.FS
	}{{"OS", vfs.OS}, {"Fault", vfs.NewFault(vfs.OS)}} {
		t.Run(fsys.name, func(t *testing.T) {
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
			writeFile(t, a, "A")
			writeFile(t, b, "B")
			needExchange(t, fsys.fs, a, b)
			fa, _ := os.Stat(a)
			if err := fsys.fs.Exchange(a, b); err != nil {
				t.Fatal(err)
			}
			if readFile(t, a) != "B" || readFile(t, b) != "A" {
				t.Fatalf("after exchange a=%q b=%q", readFile(t, a), readFile(t, b))
			}
			if fb, _ := os.Stat(b); !os.SameFile(fa, fb) {
				t.Fatal("the file that was at a is not the one now at b")
			}
			// Both must exist.
			if err := fsys.fs.Exchange(a, filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("exchange with a missing file: %v, want not exist", err)
			}
			if readFile(t, a) != "B" {
				t.Fatal("a failed exchange changed a")
			}
		})
	}
}

func TestRenameNoReplace(t *testing.T) {
	for _, fsys := range []struct {
		name string
		fs   vfs.FS
	}{{"OS", vfs.OS}, {"Fault", vfs.NewFault(vfs.OS)}} {
		t.Run(fsys.name, func(t *testing.T) {
			dir := t.TempDir()
			a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
			writeFile(t, a, "A")
			writeFile(t, b, "B")
			err := fsys.fs.RenameNoReplace(a, b)
			if errors.Is(err, errors.ErrUnsupported) {
				if os.Getenv("CI") == "true" {
					t.Fatal(err)
				}
				t.Skip(err)
			}
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("rename onto an existing file: %v, want exist", err)
			}
			if readFile(t, a) != "A" || readFile(t, b) != "B" {
				t.Fatal("a refused rename changed a file")
			}
			if err := fsys.fs.RenameNoReplace(a, c); err != nil {
				t.Fatal(err)
			}
			if readFile(t, c) != "A" {
				t.Fatalf("c = %q", readFile(t, c))
			}
			if _, err := os.Lstat(a); !os.IsNotExist(err) {
				t.Fatal("a still there after the rename")
			}
		})
	}
}

// TestFaultExchangeCrash: an exchange is a crash point like a rename:
// the crashing one takes no effect, and each file's unsynced data follows
// it to its new name.
func TestFaultExchangeCrash(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "A")
	writeFile(t, b, "B")
	needExchange(t, vfs.OS, a, b)

	f := vfs.NewFault(vfs.OS)
	f.CrashAfter(1)
	if err := f.Exchange(a, b); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("crashing exchange: %v", err)
	}
	if readFile(t, a) != "A" || readFile(t, b) != "B" {
		t.Fatal("the crashing exchange took effect")
	}
	if got := f.CrashedAt(); got != "exchange "+a {
		t.Fatalf("CrashedAt = %q", got)
	}

	// Power loss after an exchange: a's unsynced tail is cut at its new
	// name, b's synced content is untouched at a.
	f = vfs.NewFault(vfs.OS)
	f.DropUnsynced(true)
	g, err := f.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Write([]byte("+lost")); err != nil {
		t.Fatal(err)
	}
	if err := f.Exchange(a, b); err != nil {
		t.Fatal(err)
	}
	f.CrashAfter(1)
	if err := f.SyncDir(dir); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("SyncDir: %v", err)
	}
	if readFile(t, b) != "A" || readFile(t, a) != "B" {
		t.Fatalf("after the power loss a=%q b=%q, want B and A", readFile(t, a), readFile(t, b))
	}
}

// TestFaultExchangeCounted: an exchange counts as a mutating operation,
// and a rule for renames fails it too.
func TestFaultExchangeCounted(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "A")
	writeFile(t, b, "B")
	needExchange(t, vfs.OS, a, b)
	f := vfs.NewFault(vfs.OS)
	if err := f.Exchange(a, b); err != nil {
		t.Fatal(err)
	}
	if err := f.RenameNoReplace(a, filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	if n := f.Ops(); n != 2 {
		t.Fatalf("Ops = %d, want 2", n)
	}
	f.FailWith(vfs.OpRename, syscall.ENOSPC)
	if err := f.Exchange(b, filepath.Join(dir, "c")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("exchange under a rename rule: %v, want ENOSPC", err)
	}
	f.FailWith(vfs.OpRename, nil)
	f.FailWith(vfs.OpExchange, syscall.EIO)
	if err := f.Exchange(b, filepath.Join(dir, "c")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("exchange under its own rule: %v, want EIO", err)
	}
	if err := f.Rename(b, filepath.Join(dir, "d")); err != nil {
		t.Fatalf("a rule for exchanges failed a rename: %v", err)
	}
	if readFile(t, filepath.Join(dir, "d")) != "A" || readFile(t, filepath.Join(dir, "c")) != "B" {
		t.Fatal("unexpected contents")
	}
}

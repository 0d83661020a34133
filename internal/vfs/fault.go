package vfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrCrashed is wrapped by every error a Fault returns once its simulated
// crash has happened.
var ErrCrashed = errors.New("simulated crash")

// Op names a kind of file operation, for CrashAfter counting and FailWith
// matching.
type Op string

// Mutating operations: these are counted by Ops and can be crash points.
const (
	OpWrite  Op = "write"
	OpSync   Op = "sync"
	OpRename Op = "rename" // Rename and RenameNoReplace
	// OpExchange is Exchange. It is a rename too: a FailWith rule for
	// OpRename also fails exchanges (one for OpExchange fails only them),
	// so a test that fails renames needs no new rule for code that swaps.
	OpExchange Op = "exchange"
	OpRemove   Op = "remove" // Remove and RemoveAll
	OpTruncate Op = "truncate"
	OpCreate   Op = "create" // OpenFile with O_CREATE or O_TRUNC, CreateTemp
	OpMkdir    Op = "mkdir"
	OpSyncDir  Op = "syncdir"
)

// Read-only operations: never counted, never a crash point, but FailWith
// can still make them fail.
const (
	OpOpen    Op = "open" // OpenFile without O_CREATE or O_TRUNC
	OpRead    Op = "read" // Read, ReadAt, ReadFile
	OpReadDir Op = "readdir"
	OpStat    Op = "stat" // Stat, Lstat, File.Stat, Seek
)

// Fault is an FS over another FS with fault knobs: a simulated crash at
// the n-th mutating operation, torn writes, loss of unsynced data at the
// crash, injected errors (ENOSPC, EIO, ...) and latency. The zero knobs
// pass every call straight through. A Fault is safe for concurrent use;
// the knobs may be changed while it is in use.
//
// A crash test typically runs a workload once over NewFault(OS) to learn
// the number of mutating operations N = Ops(), then for each i in 1..N
// runs it again over a fresh Fault with CrashAfter(i), and finally reopens
// the directory with OS and checks the invariants.
type Fault struct {
	base FS

	mu        sync.Mutex
	ops       int  // mutating operations attempted so far
	crashAt   int  // absolute op number that crashes; 0: never
	crashed   bool // the crash has happened
	torn      bool
	drop      bool
	latency   time.Duration
	rules     map[Op]error
	hook      func(op Op, name string) error
	unsynced  map[*faultFile]struct{} // files written past their synced size
	crashedAt string                  // "op name" of the crash point
}

// NewFault returns a Fault over base with no fault armed.
func NewFault(base FS) *Fault {
	return &Fault{base: base, rules: map[Op]error{}, unsynced: map[*faultFile]struct{}{}}
}

// CrashAfter arms a crash: counting from this call, the n-th mutating
// operation fails without taking effect (but see TornWrites), and every
// later operation of any kind fails too, all with errors wrapping
// ErrCrashed. n <= 0 disarms a crash that has not happened yet.
func (f *Fault) CrashAfter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 {
		f.crashAt = 0
		return
	}
	f.crashAt = f.ops + n
}

// TornWrites makes a crashing write persist the first half of its bytes
// instead of none.
func (f *Fault) TornWrites(on bool) {
	f.mu.Lock()
	f.torn = on
	f.mu.Unlock()
}

// DropUnsynced makes the crash also discard what was written to a file
// since its last Sync (or since it was opened), by truncating the file back
// to the size it had then, as a power loss would. A Sync through any
// descriptor of a file counts (fsync makes the file durable, whichever
// descriptor asks), and a file removed or replaced by a rename loses
// nothing more. This models append-only
// writers faithfully; overwrites in place are not undone, nor are
// directory entries that were never made durable with SyncDir.
func (f *Fault) DropUnsynced(on bool) {
	f.mu.Lock()
	f.drop = on
	f.mu.Unlock()
}

// FailWith makes every later operation of kind op fail with err (wrapped
// in an *fs.PathError), without taking effect and without crashing. op ""
// matches every kind. A nil err removes the rule for op.
func (f *Fault) FailWith(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.rules, op)
		return
	}
	f.rules[op] = err
}

// FailWhen installs a general matcher, consulted after the FailWith rules:
// a non-nil result fails the operation like FailWith. fn is called with no
// Fault lock held and must be safe for concurrent use. nil removes it.
func (f *Fault) FailWhen(fn func(op Op, name string) error) {
	f.mu.Lock()
	f.hook = fn
	f.mu.Unlock()
}

// SetLatency delays every operation by d.
func (f *Fault) SetLatency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// Ops reports how many mutating operations have been attempted so far,
// including ones that failed and the crashing one, but not those refused
// after the crash.
func (f *Fault) Ops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// Crashed reports whether the simulated crash has happened.
func (f *Fault) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashed
}

// CrashedAt describes the operation that crashed ("write /dir/file"),
// or "" before the crash.
func (f *Fault) CrashedAt() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashedAt
}

// verdict is what check decided for one operation.
type verdict int

const (
	proceed  verdict = iota
	crashNow         // this op is the crash point
	failed           // the op fails with the returned error
)

// check decides the fate of one operation. For crashNow the caller may
// perform a torn prefix, then must call finishCrash.
func (f *Fault) check(op Op, name string, mutating bool) (verdict, error) {
	f.mu.Lock()
	if d := f.latency; d > 0 {
		f.mu.Unlock()
		time.Sleep(d)
		f.mu.Lock()
	}
	if f.crashed {
		f.mu.Unlock()
		return failed, &fs.PathError{Op: string(op), Path: name, Err: ErrCrashed}
	}
	if mutating {
		f.ops++
		if f.crashAt > 0 && f.ops >= f.crashAt {
			f.crashed = true
			f.crashedAt = string(op) + " " + name
			f.mu.Unlock()
			return crashNow, &fs.PathError{Op: string(op), Path: name, Err: ErrCrashed}
		}
	}
	err, ok := f.rules[op]
	if !ok && op == OpExchange {
		err, ok = f.rules[OpRename]
	}
	if !ok {
		err, ok = f.rules[""]
	}
	hook := f.hook
	f.mu.Unlock()
	if ok {
		return failed, &fs.PathError{Op: string(op), Path: name, Err: err}
	}
	if hook != nil {
		if err := hook(op, name); err != nil {
			return failed, &fs.PathError{Op: string(op), Path: name, Err: err}
		}
	}
	return proceed, nil
}

// finishCrash applies DropUnsynced after the crash point.
func (f *Fault) finishCrash() {
	f.mu.Lock()
	drop := f.drop
	files := make([]*faultFile, 0, len(f.unsynced))
	for ff := range f.unsynced {
		files = append(files, ff)
	}
	f.unsynced = map[*faultFile]struct{}{}
	f.mu.Unlock()
	if !drop {
		return
	}
	for _, ff := range files {
		ff.mu.Lock()
		name, size := ff.path, ff.synced
		ff.mu.Unlock()
		if g, err := f.base.OpenFile(name, os.O_WRONLY, 0); err == nil {
			_ = g.Truncate(size)
			_ = g.Close()
		}
	}
}

// do runs one path-level operation through check.
func (f *Fault) do(op Op, name string, mutating bool, fn func() error) error {
	v, err := f.check(op, name, mutating)
	if v == crashNow {
		f.finishCrash()
	}
	if v != proceed {
		return err
	}
	return fn()
}

// OpenFile opens name on the base FS; with O_CREATE or O_TRUNC it counts
// as a mutating OpCreate, otherwise as OpOpen.
func (f *Fault) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	op, mut := OpOpen, false
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		op, mut = OpCreate, true
	}
	var g File
	err := f.do(op, name, mut, func() (err error) {
		g, err = f.base.OpenFile(name, flag, perm)
		return err
	})
	if err != nil {
		return nil, err
	}
	return f.wrap(g, name)
}

// CreateTemp creates a temporary file on the base FS (OpCreate).
func (f *Fault) CreateTemp(dir, pattern string) (File, error) {
	var g File
	err := f.do(OpCreate, dir, true, func() (err error) {
		g, err = f.base.CreateTemp(dir, pattern)
		return err
	})
	if err != nil {
		return nil, err
	}
	return f.wrap(g, g.Name())
}

func (f *Fault) wrap(g File, name string) (File, error) {
	fi, err := g.Stat()
	if err != nil {
		g.Close()
		return nil, err
	}
	return &faultFile{fs: f, f: g, path: name, synced: fi.Size()}, nil
}

// Rename renames on the base FS (OpRename).
func (f *Fault) Rename(oldpath, newpath string) error {
	return f.do(OpRename, oldpath, true, func() error {
		if err := f.base.Rename(oldpath, newpath); err != nil {
			return err
		}
		f.mu.Lock()
		f.forgetLocked(func(p string) bool { return p == newpath }) // the file replaced
		for ff := range f.unsynced {
			ff.mu.Lock()
			if ff.path == oldpath {
				ff.path = newpath
			}
			ff.mu.Unlock()
		}
		f.mu.Unlock()
		return nil
	})
}

// RenameNoReplace renames on the base FS unless newpath exists
// (OpRename). Nothing is replaced, so no unsynced data is forgotten.
func (f *Fault) RenameNoReplace(oldpath, newpath string) error {
	return f.do(OpRename, oldpath, true, func() error {
		if err := f.base.RenameNoReplace(oldpath, newpath); err != nil {
			return err
		}
		f.follow(func(p string) (string, bool) { return newpath, p == oldpath })
		return nil
	})
}

// Exchange swaps two files on the base FS (OpExchange; FailWith rules for
// OpRename apply to it too). Like Rename it is atomic: a crash leaves
// both names as they were before it or both swapped, never one file
// under both names or under neither. Each file's unsynced data follows
// it to its new name, so DropUnsynced cuts what was written to the file
// now at each name, as it would for a rename.
func (f *Fault) Exchange(oldpath, newpath string) error {
	return f.do(OpExchange, oldpath, true, func() error {
		if err := f.base.Exchange(oldpath, newpath); err != nil {
			return err
		}
		f.follow(func(p string) (string, bool) {
			switch p {
			case oldpath:
				return newpath, true
			case newpath:
				return oldpath, true
			}
			return "", false
		})
		return nil
	})
}

// follow renames the tracked files for which to reports a new name. It
// takes f.mu.
func (f *Fault) follow(to func(path string) (string, bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ff := range f.unsynced {
		ff.mu.Lock()
		if n, ok := to(ff.path); ok {
			ff.path = n
		}
		ff.mu.Unlock()
	}
}

// forgetLocked drops the unsynced data of the files whose name matches:
// they are gone (removed, or replaced by a rename), so a crash has
// nothing of theirs to cut, and must not cut the file that now has the
// name. f.mu must be held.
func (f *Fault) forgetLocked(match func(path string) bool) {
	for ff := range f.unsynced {
		ff.mu.Lock()
		gone := match(ff.path)
		ff.mu.Unlock()
		if gone {
			delete(f.unsynced, ff)
		}
	}
}

// Remove removes name on the base FS (OpRemove).
func (f *Fault) Remove(name string) error {
	return f.do(OpRemove, name, true, func() error {
		if err := f.base.Remove(name); err != nil {
			return err
		}
		f.mu.Lock()
		f.forgetLocked(func(p string) bool { return p == name })
		f.mu.Unlock()
		return nil
	})
}

// RemoveAll removes name and its children on the base FS (OpRemove).
func (f *Fault) RemoveAll(name string) error {
	return f.do(OpRemove, name, true, func() error {
		if err := f.base.RemoveAll(name); err != nil {
			return err
		}
		prefix := name + string(filepath.Separator)
		f.mu.Lock()
		f.forgetLocked(func(p string) bool { return p == name || strings.HasPrefix(p, prefix) })
		f.mu.Unlock()
		return nil
	})
}

// MkdirAll creates directories on the base FS (OpMkdir).
func (f *Fault) MkdirAll(name string, perm fs.FileMode) error {
	return f.do(OpMkdir, name, true, func() error { return f.base.MkdirAll(name, perm) })
}

// SyncDir syncs a directory on the base FS (OpSyncDir).
func (f *Fault) SyncDir(name string) error {
	return f.do(OpSyncDir, name, true, func() error { return f.base.SyncDir(name) })
}

// ReadDir lists a directory on the base FS (OpReadDir).
func (f *Fault) ReadDir(name string) ([]fs.DirEntry, error) {
	var es []fs.DirEntry
	err := f.do(OpReadDir, name, false, func() (err error) {
		es, err = f.base.ReadDir(name)
		return err
	})
	return es, err
}

// ReadFile reads a whole file on the base FS (OpRead).
func (f *Fault) ReadFile(name string) ([]byte, error) {
	var b []byte
	err := f.do(OpRead, name, false, func() (err error) {
		b, err = f.base.ReadFile(name)
		return err
	})
	return b, err
}

// Stat stats name on the base FS (OpStat).
func (f *Fault) Stat(name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := f.do(OpStat, name, false, func() (err error) {
		fi, err = f.base.Stat(name)
		return err
	})
	return fi, err
}

// Lstat lstats name on the base FS (OpStat).
func (f *Fault) Lstat(name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := f.do(OpStat, name, false, func() (err error) {
		fi, err = f.base.Lstat(name)
		return err
	})
	return fi, err
}

// faultFile is a File whose operations go through its Fault.
type faultFile struct {
	fs *Fault
	f  File

	mu     sync.Mutex
	path   string // current name, followed across Rename
	synced int64  // size at open or at the last successful Sync
}

func (ff *faultFile) name() string {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	return ff.path
}

func (ff *faultFile) Name() string { return ff.f.Name() }

func (ff *faultFile) Read(p []byte) (n int, err error) {
	err = ff.fs.do(OpRead, ff.name(), false, func() error {
		n, err = ff.f.Read(p)
		return err
	})
	return n, err
}

func (ff *faultFile) ReadAt(p []byte, off int64) (n int, err error) {
	err = ff.fs.do(OpRead, ff.name(), false, func() error {
		n, err = ff.f.ReadAt(p, off)
		return err
	})
	return n, err
}

func (ff *faultFile) Seek(offset int64, whence int) (n int64, err error) {
	err = ff.fs.do(OpStat, ff.name(), false, func() error {
		n, err = ff.f.Seek(offset, whence)
		return err
	})
	return n, err
}

func (ff *faultFile) Stat() (fi fs.FileInfo, err error) {
	err = ff.fs.do(OpStat, ff.name(), false, func() error {
		fi, err = ff.f.Stat()
		return err
	})
	return fi, err
}

// Write writes through; at the crash point with TornWrites it persists
// the first half of p and reports that count with the crash error.
func (ff *faultFile) Write(p []byte) (int, error) {
	name := ff.name()
	v, err := ff.fs.check(OpWrite, name, true)
	switch v {
	case crashNow:
		n := 0
		ff.fs.mu.Lock()
		torn := ff.fs.torn
		ff.fs.mu.Unlock()
		if torn && len(p) > 1 {
			n, _ = ff.f.Write(p[:len(p)/2])
			ff.fs.markUnsynced(ff)
		}
		ff.fs.finishCrash()
		return n, err
	case failed:
		return 0, err
	}
	n, err := ff.f.Write(p)
	if n > 0 {
		ff.fs.markUnsynced(ff)
	}
	return n, err
}

func (f *Fault) markUnsynced(ff *faultFile) {
	f.mu.Lock()
	f.unsynced[ff] = struct{}{}
	f.mu.Unlock()
}

func (ff *faultFile) Truncate(size int64) error {
	return ff.fs.do(OpTruncate, ff.name(), true, func() error {
		if err := ff.f.Truncate(size); err != nil {
			return err
		}
		ff.mu.Lock()
		if size < ff.synced {
			ff.synced = size
		}
		ff.mu.Unlock()
		return nil
	})
}

func (ff *faultFile) Sync() error {
	return ff.fs.do(OpSync, ff.name(), true, func() error {
		if err := ff.f.Sync(); err != nil {
			return err
		}
		fi, err := ff.f.Stat()
		if err != nil {
			return err
		}
		// fsync makes the file durable, not the descriptor: what was
		// written through other descriptors of it (one since closed
		// included) is safe too.
		name, size := ff.name(), fi.Size()
		ff.fs.mu.Lock()
		for other := range ff.fs.unsynced {
			other.mu.Lock()
			if other.path == name {
				other.synced = size
				delete(ff.fs.unsynced, other)
			}
			other.mu.Unlock()
		}
		ff.fs.mu.Unlock()
		ff.mu.Lock()
		ff.synced = size
		ff.mu.Unlock()
		return nil
	})
}

// Close always closes the underlying file, so crash tests do not leak
// descriptors, but reports ErrCrashed after the crash.
func (ff *faultFile) Close() error {
	err := ff.f.Close()
	if ff.fs.Crashed() {
		return &fs.PathError{Op: "close", Path: ff.name(), Err: ErrCrashed}
	}
	return err
}

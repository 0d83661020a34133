// Package mount shows a store of JSON records as a FUSE file system: type
// folders at the top, <id>.json files in them, with the engine underneath
// (see Backend) deciding what a save or a delete means.
//
// # What the mount keeps
//
// Record files are served from the Backend: their attributes come from its
// index, their content is read when a file is opened. The kernel caches
// entries, attributes and pages (Options' timeouts, FOPEN_KEEP_CACHE); the
// mount invalidates exactly the entries that change, when it changes them
// itself and when the Backend reports a change made elsewhere.
//
// # When a save happens
//
// The mount runs the kernel's "no open" mode: it answers the first OPEN and
// FLUSH with ENOSYS, and from then on the kernel sends no OPEN, FLUSH or
// RELEASE for any file of the mount. An open+read+close of a file whose
// pages the kernel holds then costs no round trip to the mount at all, but
// the mount no longer hears of opens and closes.
//
// So writes to a record file are buffered per file (whichever process wrote
// them) and become one Put, one new version, at the first of:
//   - the file is fsync'ed (at once, before fsync returns: vim and emacs
//     fsync their saves);
//   - no write or truncation reached it for Options.SaveDelay and no process
//     holds it open for writing (as /proc shows; a writer the mount cannot
//     see, in another PID namespace, gets the delay alone);
//   - the mount is unmounted.
//
// Nothing is saved when nothing was written since the last Put. A save
// by rename (VS Code, sed -i) is one Put at the rename. Until the
// Put, reads see the buffered content, .synk/status.json lists the file
// under "unsaved", and the change is in memory only: kill -9 of the mount
// process loses it.
//
// Every other name (editors' swap, backup, lock and temporary files:
// anything that is not <type>/<id>.json, names starting with '.', vim's
// 4913 probe, x.json~, #x.json#) lives only in the mount's memory and is
// never synced. Renaming such a file onto a record name saves it as that
// record (the write-temp-and-rename save of VS Code and sed -i). Renaming a
// record to such a name (the backup rename of vim and emacs) hides the
// record and delays its delete by Options.DeleteGrace: when the editor
// writes the record's name again within that time, the save is one new
// version and nothing is deleted.
//
// A read-only .synk/ folder at the root shows status.json, conflicts.json
// and bad-entries.json from the Backend.
//
// # Deadlocks
//
// A process must not use its own mount (go-fuse can deadlock when it
// does): run programs and tests that use the mount in another process.
package mount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"golang.org/x/sys/unix"
)

// Defaults for Options.
const (
	DefaultTimeout     = time.Minute
	DefaultDeleteGrace = 3 * time.Second
	DefaultSaveDelay   = 300 * time.Millisecond
)

// ErrNoFUSE is wrapped by Mount's error when FUSE cannot be used here.
var ErrNoFUSE = errors.New("FUSE is not available")

// Options configure Mount. The zero value and nil both work.
type Options struct {
	// EntryTimeout, AttrTimeout and NegativeTimeout are how long the
	// kernel may cache names, attributes and failed lookups. The mount
	// invalidates what changes, so they can be long. 0 means
	// DefaultTimeout; a negative value means no caching.
	EntryTimeout    time.Duration
	AttrTimeout     time.Duration
	NegativeTimeout time.Duration
	// DeleteGrace is how long the delete of a record renamed to a name
	// that is not a record waits for the name to be saved again (see the
	// package comment). 0 means DefaultDeleteGrace.
	DeleteGrace time.Duration
	// SaveDelay is how long a written record file must be quiet (no
	// write, no truncation, not open for writing) before its writes are
	// saved as one Put (see the package comment). 0 means
	// DefaultSaveDelay.
	SaveDelay time.Duration
	// Matcher holds the ignore rules deciding which names are records
	// (typically the store's .synkignore); nil means the built-in rules.
	Matcher *fsstore.Matcher
	// Logger receives errors the kernel only sees as EIO; nil discards.
	Logger *slog.Logger
	// Debug logs every FUSE request to stderr.
	Debug bool
}

func (o *Options) withDefaults() Options {
	var opts Options
	if o != nil {
		opts = *o
	}
	for _, t := range []*time.Duration{&opts.EntryTimeout, &opts.AttrTimeout, &opts.NegativeTimeout} {
		if *t == 0 {
			*t = DefaultTimeout
		} else if *t < 0 {
			*t = 0
		}
	}
	if opts.DeleteGrace <= 0 {
		opts.DeleteGrace = DefaultDeleteGrace
	}
	if opts.SaveDelay <= 0 {
		opts.SaveDelay = DefaultSaveDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return opts
}

// Server is a mounted file system. Unmount it to stop it.
type Server struct {
	b          Backend
	opts       Options
	log        *slog.Logger
	mountpoint string // absolute, symlinks resolved
	root       *dirNode
	fuse       *fuse.Server
	started    time.Time
	saver      *saver
	// noOpen: the kernel offers "no open" mode, and OPEN answers ENOSYS.
	noOpen bool

	// nsMu serialises the operations that change names (create, unlink,
	// rename, mkdir, rmdir, symlink, delayed deletes). Lock order:
	// nsMu, then a dirNode's mu, then a file's mu.
	nsMu sync.Mutex

	// Kernel notifications run on the notifier goroutine, never inside a
	// FUSE request.
	qmu       sync.Mutex
	queue     []func()
	keys      map[synkfs.Key]struct{}
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	stopWatch func()

	served    chan struct{} // closed once the file system is unmounted
	closeOnce sync.Once
	closeErr  error
}

// Mount mounts b at mountpoint and returns once the file system is ready.
// A stale mount left there by a process that died is detached first. It
// mounts with mount(2) directly when running as root, so fusermount is not
// needed then.
func Mount(mountpoint string, b Backend, opts *Options) (*Server, error) {
	o := opts.withDefaults()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("mount %s: %w: /dev/fuse: %v", mountpoint, ErrNoFUSE, err)
	}
	root := os.Geteuid() == 0
	if !root {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return nil, fmt.Errorf("mount %s: %w: neither fusermount nor root privileges", mountpoint, ErrNoFUSE)
			}
		}
	}
	if stale, err := RecoverStale(mountpoint); err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	} else if stale {
		o.Logger.Warn("detached a stale mount left by a process that died", "mountpoint", mountpoint)
	}
	abs, err := filepath.Abs(mountpoint)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	s := &Server{
		b: b, opts: o, log: o.Logger, mountpoint: abs, started: time.Now(),
		keys: map[synkfs.Key]struct{}{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	s.root = &dirNode{srv: s, locals: map[string]*file{}, hidden: map[string]*time.Timer{}}
	s.saver = newSaver(s, o.SaveDelay)
	fo := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        "synkfs",
			Name:          "synkfs",
			DirectMount:   root,
			Debug:         o.Debug,
			DisableXAttrs: true,
			MaxReadAhead:  128 << 10,
		},
		EntryTimeout:    &o.EntryTimeout,
		AttrTimeout:     &o.AttrTimeout,
		NegativeTimeout: &o.NegativeTimeout,
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
	}
	srv, err := fs.Mount(mountpoint, s.root, fo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	s.fuse = srv
	s.noOpen = srv.KernelSettings().Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0
	s.served = make(chan struct{})
	go func() { srv.Wait(); close(s.served) }()
	go s.notifier()
	go s.saver.run()
	s.stopWatch = b.Watch(s.changed)
	return s, nil
}

// Mountpoint returns where the file system is mounted.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Wait blocks until the file system is unmounted (by Unmount, or by
// someone running umount).
func (s *Server) Wait() { <-s.served }

// Unmount applies the delayed deletes, saves every written file, unmounts
// and stops the server's goroutines. Files still open make the unmount fail with EBUSY at first;
// it retries for a few seconds, then detaches the mount lazily. It is
// safe to call more than once.
func (s *Server) Unmount() error {
	s.closeOnce.Do(func() {
		s.stopWatch()
		s.flushHidden()
		s.saver.settle(true)
		var err error
		for i := 0; i < 20 && !s.unmounted(); i++ {
			if err = s.fuse.Unmount(); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && !s.unmounted() {
			s.log.Warn("unmount failed; detaching lazily", "mountpoint", s.mountpoint, "err", err)
			err = unix.Unmount(s.mountpoint, unix.MNT_DETACH)
		} else {
			err = nil
		}
		// Writes that came before the kernel let go are saved too.
		s.saver.close()
		s.saver.settle(true)
		close(s.stop)
		<-s.done
		if err != nil {
			s.closeErr = fmt.Errorf("unmount %s: %w", s.mountpoint, err)
			return
		}
		select {
		case <-s.served:
		case <-time.After(5 * time.Second):
			// Lazily detached with files still open: the server stops
			// when the last of them is closed.
		}
	})
	return s.closeErr
}

func (s *Server) unmounted() bool {
	select {
	case <-s.served:
		return true
	default:
		return false
	}
}

// RecoverStale detaches a dead FUSE mount at mountpoint: one whose server
// process is gone, so that every access fails with ENOTCONN. A live mount
// or a plain folder is left alone. It reports whether it detached one.
func RecoverStale(mountpoint string) (bool, error) {
	var st unix.Stat_t
	err := unix.Stat(mountpoint, &st)
	if !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) {
		return false, nil
	}
	if err := unix.Unmount(mountpoint, unix.MNT_DETACH); err != nil {
		return false, fmt.Errorf("detach the stale mount at %s: %w", mountpoint, err)
	}
	return true, nil
}

// changed is the Backend's Watch callback: it queues the keys for the
// notifier and never blocks.
func (s *Server) changed(keys []synkfs.Key) {
	s.qmu.Lock()
	for _, k := range keys {
		s.keys[k] = struct{}{}
	}
	s.qmu.Unlock()
	s.kick()
}

// later runs fn on the notifier goroutine.
func (s *Server) later(fn func()) {
	s.qmu.Lock()
	s.queue = append(s.queue, fn)
	s.qmu.Unlock()
	s.kick()
}

func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// notifier owns the kernel notifications.
func (s *Server) notifier() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		s.qmu.Lock()
		q, keys := s.queue, s.keys
		s.queue, s.keys = nil, map[synkfs.Key]struct{}{}
		s.qmu.Unlock()
		for _, fn := range q {
			fn()
		}
		for k := range keys {
			s.invalidate(k)
		}
	}
}

// invalidate brings the mount and the kernel's caches up to date with a
// change of k made elsewhere.
func (s *Server) invalidate(k synkfs.Key) {
	tname := fsstore.EscapeName(k.Type)
	tin := s.root.GetChild(tname)
	if tin == nil {
		// Perhaps a new type: forget a cached "no such folder" and the
		// cached listing of the root.
		s.root.NotifyEntry(tname)
		s.root.NotifyContent(0, 0)
		return
	}
	tin.NotifyContent(0, 0) // the folder's cached listing
	d, ok := tin.Operations().(*dirNode)
	if !ok {
		return
	}
	d.mu.Lock()
	d.recent = nil
	name := fsstore.EscapeName(k.ID) + fsstore.Ext
	_, local := d.locals[name]
	_, hidden := d.hidden[name]
	d.mu.Unlock()
	if local || hidden {
		return // the mount's own state for that name wins until it is saved
	}
	ch := d.GetChild(name)
	if ch == nil {
		tin.NotifyEntry(name)
		return
	}
	fn, ok := ch.Operations().(*fileNode)
	if !ok {
		return
	}
	f := fn.f
	_, err := s.b.Stat(k)
	gone := errors.Is(err, synkfs.ErrNotFound)
	f.mu.Lock()
	if f.rec && f.key == k && !f.dirty {
		if gone {
			f.gone, f.rec = true, false
		} else {
			f.reload()
		}
	}
	f.mu.Unlock()
	if gone {
		tin.NotifyDelete(name, ch)
	} else {
		ch.NotifyContent(0, 0)
	}
}

// invalidateFile drops the kernel's pages and attributes of f's inode, on
// the notifier goroutine.
func (s *Server) invalidateFile(f *file) {
	s.later(func() {
		f.mu.Lock()
		n, d, name := f.node, f.dir, f.name
		f.mu.Unlock()
		if n != nil {
			n.NotifyContent(0, 0)
			return
		}
		// The kernel forgot f's inode before the save (see OnForget):
		// a lookup since may have made another for the name, from
		// what the Backend held before.
		if ch := d.GetChild(name); ch != nil {
			if fn, ok := ch.Operations().(*fileNode); ok && fn.f != f {
				fn.f.mu.Lock()
				if fn.f.rec && !fn.f.dirty {
					fn.f.reload()
				}
				fn.f.mu.Unlock()
			}
			ch.NotifyContent(0, 0)
		}
	})
}

// flushHidden applies every delayed delete now.
func (s *Server) flushHidden() {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	dirs := []*dirNode{s.root}
	for _, ch := range s.root.Children() {
		if d, ok := ch.Operations().(*dirNode); ok {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		d.mu.Lock()
		names := make([]string, 0, len(d.hidden))
		for name, t := range d.hidden {
			t.Stop()
			names = append(names, name)
		}
		clear(d.hidden)
		d.mu.Unlock()
		for _, name := range names {
			if k, ok := d.recordKey(name); ok {
				if err := s.b.Delete(context.Background(), k); err != nil && !errors.Is(err, synkfs.ErrNotFound) {
					s.log.Error("delete record renamed away", "key", k, "err", err)
				}
			}
		}
	}
}

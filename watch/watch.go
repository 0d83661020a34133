// Package watch tells the replica engine which record files under a synced
// folder <root>/<type>/<id>.json may have changed.
//
// Events are hints, scans are truth: a Watcher reports paths that may have
// changed once they have settled (no half-written file is reported
// mid-write, an editor's save-by-rename burst becomes one report), and
// asks for a full rescan whenever it cannot be sure it saw everything
// (kernel queue overflow, a type folder renamed away, a switch to
// polling). A consumer that does its own startup scan after New, handles
// every reported path by looking at the file, and rescans on Rescan,
// misses nothing.
//
// The watcher uses inotify through fsnotify, watching the root and each
// type folder (one level deep). When inotify cannot be used (out of
// watches, out of instances, or not supported), it falls back to polling:
// it walks the tree every PollInterval and compares size, mtime, ctime and
// inode with the previous walk, and logs a plain warning saying so.
//
// One goroutine owns all the state; fsnotify's reader is never blocked by
// a slow consumer, because pending paths are merged into a set.
package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for the zero Options.
const (
	DefaultDebounce     = 50 * time.Millisecond
	DefaultMaxDelay     = time.Second
	DefaultPollInterval = 2 * time.Second
)

// Options configure a Watcher. A nil *Options, and every zero field, take
// the defaults.
type Options struct {
	// Debounce is the quiet time after the last event on a path before
	// it is reported: long enough that a half-written file is never
	// reported mid-write and that an editor's create/rename/remove burst
	// settles into one report. Default 50ms.
	Debounce time.Duration

	// MaxDelay bounds how long a path written continuously waits: it is
	// reported this long after the first event of its burst even if it
	// never goes quiet. Default 1s.
	MaxDelay time.Duration

	// Ignore reports whether a file path (relative to the root,
	// '/'-separated, e.g. "notes/a.json" or "x.txt") is never reported.
	// It is called from the watcher's goroutine only. Nil ignores paths
	// with a component starting with '.'. With the store's matcher:
	// Ignore: m.IsIgnored, IgnoreDir: m.IsIgnoredDir (and let the
	// ignore file itself through if its edits should be noticed).
	Ignore func(rel string) bool

	// IgnoreDir reports whether a folder directly under the root (its
	// name, e.g. ".synk") is neither watched nor walked: nothing under it
	// is reported. Nil ignores names starting with '.'. It is separate
	// from Ignore because a record matcher typically rejects "notes" as a
	// file path while still wanting the folder watched.
	IgnoreDir func(rel string) bool

	// PollInterval is the time between walks in polling mode. Default 2s.
	PollInterval time.Duration

	// Poll starts in polling mode without trying inotify, for file systems
	// where inotify misses changes (network and some FUSE file systems).
	Poll bool

	// Logger receives the fallback warning and watch errors. Nil uses
	// slog.Default().
	Logger *slog.Logger

	// addHook, when set, is called before each inotify watch is added and
	// its error is treated as the add's error; tests use it to simulate
	// running out of watches.
	addHook func(path string) error
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Debounce <= 0 {
		r.Debounce = DefaultDebounce
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = DefaultMaxDelay
	}
	if r.MaxDelay < r.Debounce {
		r.MaxDelay = r.Debounce
	}
	if r.PollInterval <= 0 {
		r.PollInterval = DefaultPollInterval
	}
	if r.Ignore == nil {
		r.Ignore = hasDotComponent
	}
	if r.IgnoreDir == nil {
		r.IgnoreDir = hasDotComponent
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r
}

// hasDotComponent reports whether any component of the '/'-separated rel
// starts with '.'.
func hasDotComponent(rel string) bool {
	for c := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(c, ".") {
			return true
		}
	}
	return false
}

// Event is one delivery to the consumer.
type Event struct {
	// Paths are the '/'-separated paths, relative to the root, that may
	// have changed (created, written, removed, renamed away or onto),
	// each at most once. They are hints: the consumer looks at each
	// file to learn what, if anything, changed. A path may also name a
	// file outside the <type>/<id>.json layout that Ignore let through.
	Paths []string

	// Rescan means the watcher lost track (kernel queue overflow, a type
	// folder renamed away, a switch to polling): the consumer must scan
	// the whole tree. Paths may still be set.
	Rescan bool
}

// Modes returned by Watcher.Mode.
const (
	ModeInotify = "inotify"
	ModePolling = "polling"
)

// Watcher watches one synced folder. Create it with New; stop it with
// Close. Its methods are safe for concurrent use.
type Watcher struct {
	root string // absolute, clean
	opt  Options
	log  *slog.Logger

	events  chan Event
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	polling atomic.Bool

	// Owned by the loop goroutine after New returns.
	deb      *debouncer
	fsw      *fsnotify.Watcher // nil in polling mode
	dirs     map[string]struct{}
	snap     map[string]fileState // polling mode: the last walk
	ticker   *time.Ticker         // polling mode
	timer    *time.Timer
	armedAt  time.Time // when timer fires; zero when stopped
	closeErr error
}

// New starts watching root. The watch is armed before New returns, so a
// consumer that scans the tree after New misses no change made after
// that scan started. New fails if root is not a readable directory; it
// does not fail when inotify is unavailable, it polls instead (see Mode).
func New(root string, opts *Options) (*Watcher, error) {
	abs, err := absClean(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("watch %s: not a directory", root)
	}
	o := opts.withDefaults()
	w := &Watcher{
		root:   abs,
		opt:    o,
		log:    o.Logger,
		events: make(chan Event),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		deb:    newDebouncer(o.Debounce, o.MaxDelay),
		dirs:   make(map[string]struct{}),
	}
	w.timer = time.NewTimer(time.Hour)
	w.timer.Stop()

	if !o.Poll {
		if err := w.startNotify(); err != nil {
			if !fallbackErr(err) {
				return nil, fmt.Errorf("watch %s: %w", root, err)
			}
			w.warnFallback(err)
			w.startPolling()
		}
	} else {
		w.startPolling()
	}
	go w.run()
	return w, nil
}

// Events returns the channel of settled changes. It is unbuffered: an
// event is assembled from everything pending at the moment the consumer
// receives, so a slow consumer gets fewer, larger events and nothing is
// dropped. The channel is closed when the Watcher is closed.
func (w *Watcher) Events() <-chan Event { return w.events }

// Mode reports ModeInotify or ModePolling. It changes from inotify to
// polling when the watcher falls back at run time, never back.
func (w *Watcher) Mode() string {
	if w.polling.Load() {
		return ModePolling
	}
	return ModeInotify
}

// Close stops the watcher and waits for its goroutines to exit; pending
// paths that had not been delivered are discarded. It closes the Events
// channel and is safe to call more than once; later calls return the
// first call's result.
func (w *Watcher) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.closeErr
}

// run is the loop goroutine: it owns the debouncer, the fsnotify watcher
// and the polling state.
func (w *Watcher) run() {
	defer close(w.done)
	defer close(w.events)
	defer w.timer.Stop()
	defer func() {
		if w.ticker != nil {
			w.ticker.Stop()
		}
		if w.fsw != nil {
			if err := w.fsw.Close(); err != nil {
				w.closeErr = fmt.Errorf("watch: close inotify: %w", err)
			}
		}
	}()

	for {
		var (
			fsEvents chan fsnotify.Event
			fsErrs   chan error
			tick     <-chan time.Time
			out      chan<- Event
		)
		if w.fsw != nil {
			fsEvents, fsErrs = w.fsw.Events, w.fsw.Errors
		}
		if w.ticker != nil {
			tick = w.ticker.C
		}
		if w.deb.hasReady() {
			out = w.events
		}
		select {
		case <-w.stop:
			return
		case ev, ok := <-fsEvents:
			if !ok {
				w.fallback(errors.New("inotify stopped"))
				break
			}
			w.handleNotify(ev, time.Now())
		case err, ok := <-fsErrs:
			if !ok {
				w.fallback(errors.New("inotify stopped"))
				break
			}
			w.handleNotifyErr(err)
		case <-tick:
			w.poll(time.Now())
		case <-w.timer.C:
			w.armedAt = time.Time{}
			w.deb.flush(time.Now())
		case out <- w.deb.peek():
			w.deb.take()
		}
		w.rearm()
	}
}

// rearm points the timer at the debouncer's next deadline.
func (w *Watcher) rearm() {
	at, ok := w.deb.next()
	if !ok {
		if !w.armedAt.IsZero() {
			w.timer.Stop()
			w.armedAt = time.Time{}
		}
		return
	}
	if at.Equal(w.armedAt) {
		return
	}
	w.armedAt = at
	w.timer.Reset(time.Until(at))
}

// ignoreFile and ignoreDir apply the options to a relative path.
func (w *Watcher) ignoreFile(rel string) bool { return w.opt.Ignore(rel) }
func (w *Watcher) ignoreDir(rel string) bool  { return w.opt.IgnoreDir(rel) }

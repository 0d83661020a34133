package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// startNotify creates the inotify watcher and watches the root and every
// type folder in it. On error nothing is left open.
func (w *Watcher) startNotify() error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("start inotify: %w", err)
	}
	w.fsw = fsw
	if err := w.addWatch(w.root); err != nil {
		w.closeNotify()
		return err
	}
	entries, err := os.ReadDir(w.root)
	if err != nil {
		w.closeNotify()
		return fmt.Errorf("list root: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || w.ignoreDir(e.Name()) {
			continue
		}
		if err := w.addDir(e.Name(), false, time.Time{}); err != nil {
			w.closeNotify()
			return err
		}
	}
	return nil
}

// closeNotify drops the inotify watcher, if any.
func (w *Watcher) closeNotify() {
	if w.fsw == nil {
		return
	}
	if err := w.fsw.Close(); err != nil {
		w.log.Warn("watch: close inotify", "err", err)
	}
	w.fsw = nil
	clear(w.dirs)
}

// addWatch adds one inotify watch on an absolute path.
func (w *Watcher) addWatch(abs string) error {
	if w.opt.addHook != nil {
		if err := w.opt.addHook(abs); err != nil {
			return fmt.Errorf("watch %s: %w", abs, err)
		}
	}
	if err := w.fsw.Add(abs); err != nil {
		return fmt.Errorf("watch %s: %w", abs, err)
	}
	return nil
}

// addDir watches the type folder rel. With scan, it then reports every
// entry already in the folder: they may have been created before the
// watch was armed. A folder that vanished before it could be watched is
// not an error.
func (w *Watcher) addDir(rel string, scan bool, now time.Time) error {
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	if err := w.addWatch(abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	w.dirs[rel] = struct{}{}
	if !scan {
		return nil
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("watch: list new folder", "dir", abs, "err", err)
			w.deb.rescan = true
		}
		return nil
	}
	for _, e := range entries {
		if p := rel + "/" + e.Name(); !w.ignoreFile(p) {
			w.deb.touch(p, now)
		}
	}
	return nil
}

// relPath turns an absolute event name into a '/'-separated path relative
// to the root; "." is the root itself.
func (w *Watcher) relPath(name string) (string, bool) {
	if name == w.root {
		return ".", true
	}
	rel, ok := strings.CutPrefix(name, w.root+string(filepath.Separator))
	if !ok {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// handleNotify turns one fsnotify event into debouncer touches, watch
// changes, or a rescan.
func (w *Watcher) handleNotify(ev fsnotify.Event, now time.Time) {
	// Chmod alone never changes content (and inotify sends one before
	// each delete, which the Remove that follows reports).
	if ev.Op&^fsnotify.Chmod == 0 {
		return
	}
	rel, ok := w.relPath(ev.Name)
	if !ok {
		return
	}
	gone := ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
	if rel == "." {
		if gone {
			w.fallback(errRootGone)
		}
		return
	}
	if dir, name, nested := strings.Cut(rel, "/"); nested {
		// Inside a type folder. Deeper levels are not watched.
		if strings.Contains(name, "/") || w.ignoreDir(dir) || w.ignoreFile(rel) {
			return
		}
		w.deb.touch(rel, now)
		return
	}

	// Directly under the root: a type folder or a stray file.
	if _, known := w.dirs[rel]; known {
		if gone {
			// inotify drops the folder's watch by itself. Its files
			// were reported one by one if it was removed (a folder
			// must be empty to be removed), but not if it was moved.
			delete(w.dirs, rel)
			if ev.Has(fsnotify.Rename) {
				w.deb.rescan = true
			}
		}
		if !ev.Has(fsnotify.Create) {
			return
		}
	}
	if ev.Has(fsnotify.Create) {
		fi, err := os.Lstat(ev.Name)
		if err == nil && fi.IsDir() {
			if w.ignoreDir(rel) {
				return
			}
			if err := w.addDir(rel, true, now); err != nil {
				w.fallback(err)
			}
			return
		}
	}
	if !w.ignoreFile(rel) {
		w.deb.touch(rel, now)
	}
}

// handleNotifyErr handles an error from fsnotify's reader.
func (w *Watcher) handleNotifyErr(err error) {
	w.deb.rescan = true
	if !errors.Is(err, fsnotify.ErrEventOverflow) {
		w.log.Warn("watch: inotify error; rescanning", "root", w.root, "err", err)
		return
	}
	w.log.Info("watch: inotify queue overflowed; rescanning", "root", w.root)
	// Type folders created during the overflow were never seen: watch
	// them now. The rescan covers their files.
	entries, lerr := os.ReadDir(w.root)
	if lerr != nil {
		w.fallback(fmt.Errorf("list root: %w", lerr))
		return
	}
	present := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		if !e.IsDir() || w.ignoreDir(e.Name()) {
			continue
		}
		present[e.Name()] = struct{}{}
		if _, ok := w.dirs[e.Name()]; ok {
			continue
		}
		if err := w.addDir(e.Name(), false, time.Time{}); err != nil {
			w.fallback(err)
			return
		}
	}
	for d := range w.dirs {
		if _, ok := present[d]; !ok {
			delete(w.dirs, d)
		}
	}
}

// errRootGone is the reason for polling when the watched folder itself
// was removed or moved: inotify cannot see it come back, polling can.
var errRootGone = errors.New("the folder was removed or moved")

// fallbackErr reports whether err means inotify cannot be used and
// polling should take over, rather than that the folder is unusable.
func fallbackErr(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) ||
		errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOSYS) ||
		errors.Is(err, errors.ErrUnsupported) ||
		strings.Contains(err.Error(), "not supported")
}

// warnFallback logs, in plain words, that the watcher polls and why.
func (w *Watcher) warnFallback(err error) {
	msg := "watch: cannot use inotify; falling back to polling"
	var hint string
	switch {
	case errors.Is(err, errRootGone):
		msg = "watch: the synced folder was removed or moved; polling until it is back"
	case errors.Is(err, syscall.ENOSPC):
		msg = "watch: out of inotify watches; falling back to polling"
		hint = "raise the limit with: sudo sysctl fs.inotify.max_user_watches=524288 " +
			"(add it to /etc/sysctl.d/ to keep it after a reboot)"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		msg = "watch: out of inotify instances or file descriptors; falling back to polling"
		hint = "raise the limits with: sudo sysctl fs.inotify.max_user_instances=1024 " +
			"fs.inotify.max_user_watches=524288, or ulimit -n"
	}
	attrs := []any{"root", w.root, "interval", w.opt.PollInterval, "err", err}
	if hint != "" {
		attrs = append(attrs, "hint", hint)
	}
	w.log.Warn(msg, attrs...)
}

// fallback switches a running watcher from inotify to polling: it drops
// inotify, takes the baseline walk, and asks the consumer to rescan,
// since changes between the failure and the walk were not seen.
func (w *Watcher) fallback(err error) {
	if w.polling.Load() {
		return
	}
	w.warnFallback(err)
	w.closeNotify()
	w.startPolling()
	w.deb.rescan = true
}

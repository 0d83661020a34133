package watch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileState is what a polling walk compares between two walks.
type fileState struct {
	size  int64
	mtime int64 // UnixNano
	ctime int64 // UnixNano; 0 where unknown
	ino   uint64
	mode  fs.FileMode
}

func stateOf(fi fs.FileInfo) fileState {
	s := fileState{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode().Type()}
	s.ctime, s.ino = sysState(fi)
	return s
}

// startPolling switches to polling mode and takes the baseline walk.
func (w *Watcher) startPolling() {
	w.snap = w.walk(nil)
	w.ticker = time.NewTicker(w.opt.PollInterval)
	w.polling.Store(true)
}

// poll walks the tree and touches every path that appeared, disappeared
// or changed since the last walk.
func (w *Watcher) poll(now time.Time) {
	cur := w.walk(w.snap)
	for p, s := range cur {
		if old, ok := w.snap[p]; !ok || old != s {
			w.deb.touch(p, now)
		}
	}
	for p := range w.snap {
		if _, ok := cur[p]; !ok {
			w.deb.touch(p, now)
		}
	}
	w.snap = cur
}

// walk lists the files directly under the root and in each type folder,
// skipping ignored ones. A folder that cannot be read (other than because
// it is gone) keeps its entries from prev, so a transient error does not
// look like a mass delete.
func (w *Watcher) walk(prev map[string]fileState) map[string]fileState {
	cur := make(map[string]fileState, len(prev))
	entries, err := os.ReadDir(w.root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("watch: poll root", "root", w.root, "err", err)
			return prev
		}
		return cur
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			if !w.ignoreDir(name) {
				w.walkDir(name, cur, prev)
			}
			continue
		}
		if w.ignoreFile(name) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			cur[name] = stateOf(fi)
		}
	}
	return cur
}

func (w *Watcher) walkDir(dir string, cur, prev map[string]fileState) {
	entries, err := os.ReadDir(filepath.Join(w.root, dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		w.log.Warn("watch: poll folder", "dir", dir, "err", err)
		prefix := dir + "/"
		for p, s := range prev {
			if strings.HasPrefix(p, prefix) {
				cur[p] = s
			}
		}
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // not a record; deeper levels are not watched
		}
		p := dir + "/" + e.Name()
		if w.ignoreFile(p) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			cur[p] = stateOf(fi)
		}
	}
}

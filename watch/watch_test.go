package watch

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// waitLimit bounds every wait for an event; events normally arrive within
// tens of milliseconds.
const waitLimit = 3 * time.Second

// start makes a root with the given type folders, starts a Watcher on it
// and closes it at the end of the test.
func start(t *testing.T, opts *Options, dirs ...string) (*Watcher, string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		mkdir(t, filepath.Join(root, d))
	}
	if opts == nil {
		opts = &Options{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	w, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w, root
}

type testWriter struct{ t *testing.T }

func (tw testWriter) Write(p []byte) (int, error) {
	tw.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

// seen accumulates what a test received.
type seen struct {
	counts map[string]int // path -> number of events naming it
	events int
	rescan bool
}

func (s *seen) add(t *testing.T, ev Event) {
	t.Helper()
	s.events++
	s.rescan = s.rescan || ev.Rescan
	once := map[string]bool{}
	for _, p := range ev.Paths {
		if once[p] {
			t.Errorf("path %q twice in one event %v", p, ev.Paths)
		}
		once[p] = true
		s.counts[p]++
	}
}

func (s *seen) paths() []string {
	var ps []string
	for p := range s.counts {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// waitFor reads events until every wanted path was reported (and a
// rescan, if wantRescan), failing after waitLimit.
func waitFor(t *testing.T, w *Watcher, wantRescan bool, want ...string) *seen {
	t.Helper()
	s := &seen{counts: map[string]int{}}
	deadline := time.After(waitLimit)
	for {
		done := !wantRescan || s.rescan
		for _, p := range want {
			if s.counts[p] == 0 {
				done = false
			}
		}
		if done {
			return s
		}
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("events closed; got %v", s.paths())
			}
			s.add(t, ev)
		case <-deadline:
			t.Fatalf("timed out waiting for %v (rescan %v); got %v (rescan %v)", want, wantRescan, s.paths(), s.rescan)
		}
	}
}

// quiet collects whatever arrives during d, which should be nothing.
func quiet(t *testing.T, w *Watcher, d time.Duration) *seen {
	t.Helper()
	s := &seen{counts: map[string]int{}}
	deadline := time.After(d)
	for {
		select {
		case ev := <-w.Events():
			s.add(t, ev)
		case <-deadline:
			return s
		}
	}
}

// Tests that count reports use a longer Debounce than the default, so a
// loaded machine that delays the watcher between two events of one save
// does not split it into two reports.
const countingDebounce = 150 * time.Millisecond

func TestWriteReportedOnceAfterSettling(t *testing.T) {
	w, root := start(t, &Options{Debounce: countingDebounce}, "notes")
	if w.Mode() != ModeInotify {
		t.Fatalf("mode %q, want inotify", w.Mode())
	}
	write(t, filepath.Join(root, "notes", "a.json"), `{"x":1}`)
	s := waitFor(t, w, false, "notes/a.json")
	s2 := quiet(t, w, 300*time.Millisecond)
	if got := s.paths(); !slices.Equal(got, []string{"notes/a.json"}) || s.rescan {
		t.Fatalf("got %v rescan %v, want just notes/a.json", got, s.rescan)
	}
	if s2.events != 0 {
		t.Fatalf("a single write was reported again: %v", s2.paths())
	}
}

func TestBurstOfWritesIsOneReport(t *testing.T) {
	w, root := start(t, &Options{Debounce: 2 * countingDebounce}, "notes")
	p := filepath.Join(root, "notes", "a.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := fmt.Fprintf(f, `{"n":%d}`, i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, w, false, "notes/a.json")
	s2 := quiet(t, w, 300*time.Millisecond)
	if s.events+s2.events != 1 || s2.events != 0 {
		t.Fatalf("burst gave %d events (%v then %v), want 1", s.events+s2.events, s.paths(), s2.paths())
	}
}

// vimIgnore is what a record matcher would say about vim's leftovers.
func vimIgnore(rel string) bool {
	base := rel[strings.LastIndex(rel, "/")+1:]
	return hasDotComponent(rel) || base == "4913" || strings.HasSuffix(base, "~") ||
		strings.HasSuffix(base, ".swp")
}

func TestVimStyleSaveReportsOnlyTheRecord(t *testing.T) {
	w, root := start(t, &Options{Ignore: vimIgnore, Debounce: countingDebounce}, "notes")
	dir := filepath.Join(root, "notes")
	x := filepath.Join(dir, "x.json")
	write(t, x, `{"v":1}`)
	waitFor(t, w, false, "notes/x.json")

	// What vim does on :w with backupcopy=no.
	write(t, filepath.Join(dir, ".x.json.swp"), "swap")
	write(t, filepath.Join(dir, "4913"), "")
	remove(t, filepath.Join(dir, "4913"))
	rename(t, x, x+"~")
	write(t, x, `{"v":2}`)
	remove(t, x+"~")
	write(t, filepath.Join(dir, ".x.json.swp"), "swap again")

	s := waitFor(t, w, false, "notes/x.json")
	s2 := quiet(t, w, 300*time.Millisecond)
	if got := s.paths(); !slices.Equal(got, []string{"notes/x.json"}) || s.events != 1 || s2.events != 0 {
		t.Fatalf("vim save gave %d+%d events %v %v, want one event for notes/x.json", s.events, s2.events, got, s2.paths())
	}
}

func TestAtomicSaveByRenameReportsTarget(t *testing.T) {
	w, root := start(t, &Options{Debounce: countingDebounce}, "notes")
	dir := filepath.Join(root, "notes")
	write(t, filepath.Join(dir, "x.json"), `{"v":1}`)
	waitFor(t, w, false, "notes/x.json")

	tmp := filepath.Join(dir, ".x.json.tmp123")
	write(t, tmp, `{"v":2}`)
	rename(t, tmp, filepath.Join(dir, "x.json"))
	s := waitFor(t, w, false, "notes/x.json")
	s2 := quiet(t, w, 200*time.Millisecond)
	if got := s.paths(); !slices.Equal(got, []string{"notes/x.json"}) || s2.events != 0 {
		t.Fatalf("got %v then %v, want just notes/x.json", got, s2.paths())
	}
}

func TestDeleteReported(t *testing.T) {
	root := t.TempDir()
	mkdir(t, filepath.Join(root, "notes"))
	write(t, filepath.Join(root, "notes", "a.json"), `{}`)
	write(t, filepath.Join(root, "notes", "b.json"), `{}`)
	w, err := New(root, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	remove(t, filepath.Join(root, "notes", "a.json"))
	s := waitFor(t, w, false, "notes/a.json")
	if got := s.paths(); !slices.Equal(got, []string{"notes/a.json"}) {
		t.Fatalf("got %v, want notes/a.json", got)
	}

	// Removing the whole type folder reports each file in it.
	remove(t, filepath.Join(root, "notes"))
	waitFor(t, w, false, "notes/b.json")
}

func TestNewTypeFolderWithFilesInsideReported(t *testing.T) {
	w, root := start(t, nil)
	// Files that exist before the folder appears in the root can only be
	// found by scanning the new folder.
	outside := t.TempDir()
	staged := filepath.Join(outside, "tasks")
	mkdir(t, staged)
	write(t, filepath.Join(staged, "1.json"), `{}`)
	write(t, filepath.Join(staged, "2.json"), `{}`)
	rename(t, staged, filepath.Join(root, "tasks"))
	waitFor(t, w, false, "tasks/1.json", "tasks/2.json")

	// The folder is now watched: later files are reported too.
	write(t, filepath.Join(root, "tasks", "3.json"), `{}`)
	waitFor(t, w, false, "tasks/3.json")

	// mkdir then immediate writes, racing the watch being added.
	mkdir(t, filepath.Join(root, "people"))
	for i := range 5 {
		write(t, filepath.Join(root, "people", fmt.Sprintf("%d.json", i)), `{}`)
	}
	waitFor(t, w, false, "people/0.json", "people/1.json", "people/2.json", "people/3.json", "people/4.json")
}

func TestTypeFolderRenamedAwayAsksRescan(t *testing.T) {
	w, root := start(t, nil, "notes")
	write(t, filepath.Join(root, "notes", "a.json"), `{}`)
	waitFor(t, w, false, "notes/a.json")
	rename(t, filepath.Join(root, "notes"), filepath.Join(t.TempDir(), "gone"))
	waitFor(t, w, true)

	// A new folder under the old name is watched again.
	mkdir(t, filepath.Join(root, "notes"))
	write(t, filepath.Join(root, "notes", "b.json"), `{}`)
	waitFor(t, w, false, "notes/b.json")
}

func TestContinuousWriterReportedWithinMaxDelay(t *testing.T) {
	const maxDelay = 300 * time.Millisecond
	w, root := start(t, &Options{MaxDelay: maxDelay}, "notes")
	p := filepath.Join(root, "notes", "log.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := f.WriteString("x"); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)

	began := time.Now()
	select {
	case ev := <-w.Events():
		if !slices.Contains(ev.Paths, "notes/log.json") {
			t.Fatalf("got %v, want notes/log.json", ev.Paths)
		}
		t.Logf("continuous writer reported after %v (MaxDelay %v)", time.Since(began), maxDelay)
	case <-time.After(4 * maxDelay):
		t.Fatalf("a file written every 5ms was not reported within %v", 4*maxDelay)
	}
}

func TestIgnoredPathsNotReported(t *testing.T) {
	w, root := start(t, nil, "notes", ".synk")
	write(t, filepath.Join(root, ".synk", "journal"), "x")
	mkdir(t, filepath.Join(root, ".cache"))
	write(t, filepath.Join(root, ".cache", "c.json"), "x")
	write(t, filepath.Join(root, "notes", ".hidden.json"), "x")
	write(t, filepath.Join(root, "notes", "seen.json"), "x")
	s := waitFor(t, w, false, "notes/seen.json")
	s.add(t, quiet(t, w, 200*time.Millisecond).peekAll())
	if got := s.paths(); !slices.Equal(got, []string{"notes/seen.json"}) {
		t.Fatalf("got %v, want only notes/seen.json", got)
	}
}

// peekAll folds a seen back into one Event, for merging.
func (s *seen) peekAll() Event {
	ev := Event{Rescan: s.rescan}
	for p := range s.counts {
		ev.Paths = append(ev.Paths, p)
	}
	return ev
}

func TestPollingModeDetectsCreateEditDelete(t *testing.T) {
	w, root := start(t, &Options{Poll: true, PollInterval: 20 * time.Millisecond}, "notes")
	if w.Mode() != ModePolling {
		t.Fatalf("mode %q, want polling", w.Mode())
	}
	p := filepath.Join(root, "notes", "a.json")
	write(t, p, `{"v":1}`)
	waitFor(t, w, false, "notes/a.json")

	write(t, p, `{"v":22}`)
	waitFor(t, w, false, "notes/a.json")

	// Same size, new inode: an atomic replace is still seen.
	tmp := filepath.Join(root, "notes", ".tmp")
	write(t, tmp, `{"v":33}`)
	rename(t, tmp, p)
	waitFor(t, w, false, "notes/a.json")

	remove(t, p)
	waitFor(t, w, false, "notes/a.json")

	// New type folders need no watch in polling mode.
	mkdir(t, filepath.Join(root, "tasks"))
	write(t, filepath.Join(root, "tasks", "t.json"), `{}`)
	s := waitFor(t, w, false, "tasks/t.json")
	if s.rescan {
		t.Fatal("polling asked for a rescan without losing track")
	}
	if s2 := quiet(t, w, 150*time.Millisecond); s2.events != 0 {
		t.Fatalf("unchanged files reported: %v", s2.paths())
	}
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestOutOfWatchesAtRunTimeFallsBackToPolling(t *testing.T) {
	var logs logBuffer
	w, root := start(t, &Options{
		PollInterval: 20 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		addHook: func(path string) error {
			if filepath.Base(path) == "late" {
				return syscall.ENOSPC
			}
			return nil
		},
	}, "notes")
	if w.Mode() != ModeInotify {
		t.Fatalf("mode %q, want inotify before the limit is hit", w.Mode())
	}
	mkdir(t, filepath.Join(root, "late"))
	waitFor(t, w, true)
	if w.Mode() != ModePolling {
		t.Fatalf("mode %q after ENOSPC, want polling", w.Mode())
	}
	if out := logs.String(); !strings.Contains(out, "polling") || !strings.Contains(out, "fs.inotify.max_user_watches") {
		t.Fatalf("warning does not say what happened and how to fix it:\n%s", out)
	}
	write(t, filepath.Join(root, "late", "a.json"), `{}`)
	write(t, filepath.Join(root, "notes", "b.json"), `{}`)
	waitFor(t, w, false, "late/a.json", "notes/b.json")
}

func TestOutOfWatchesAtStartPolls(t *testing.T) {
	w, root := start(t, &Options{
		PollInterval: 20 * time.Millisecond,
		addHook:      func(string) error { return syscall.ENOSPC },
	}, "notes")
	if w.Mode() != ModePolling {
		t.Fatalf("mode %q, want polling", w.Mode())
	}
	write(t, filepath.Join(root, "notes", "a.json"), `{}`)
	waitFor(t, w, false, "notes/a.json")
}

func TestOtherWatchErrorFailsNew(t *testing.T) {
	root := t.TempDir()
	_, err := New(root, &Options{addHook: func(string) error { return syscall.EACCES }})
	if err == nil {
		t.Fatal("New succeeded although the root could not be watched")
	}
	if _, err := New(filepath.Join(root, "missing"), nil); err == nil {
		t.Fatal("New succeeded on a missing root")
	}
	write(t, filepath.Join(root, "file"), "")
	if _, err := New(filepath.Join(root, "file"), nil); err == nil {
		t.Fatal("New succeeded on a file")
	}
}

func TestOverflowAsksRescanAndWatchesMissedFolders(t *testing.T) {
	// The first attempt to watch "tasks" finds it gone, as if its
	// creation event had been lost: only the overflow's resync can
	// pick the folder up.
	var calls atomic.Int32
	tried := make(chan struct{})
	w, root := start(t, &Options{addHook: func(path string) error {
		if filepath.Base(path) == "tasks" && calls.Add(1) == 1 {
			close(tried)
			return syscall.ENOENT
		}
		return nil
	}}, "notes")
	mkdir(t, filepath.Join(root, "tasks"))
	select {
	case <-tried:
	case <-time.After(waitLimit):
		t.Fatal("the new folder's creation was not handled")
	}
	write(t, filepath.Join(root, "tasks", "a.json"), `{}`)
	if s := quiet(t, w, 200*time.Millisecond); s.events != 0 {
		t.Fatalf("an unwatched folder reported %v", s.paths())
	}

	w.fsw.Errors <- fsnotify.ErrEventOverflow
	waitFor(t, w, true)
	write(t, filepath.Join(root, "tasks", "b.json"), `{}`)
	waitFor(t, w, false, "tasks/b.json")
	if w.Mode() != ModeInotify {
		t.Fatalf("mode %q after an overflow, want inotify", w.Mode())
	}
}

func TestSlowConsumerGetsMergedEvents(t *testing.T) {
	w, root := start(t, nil, "notes")
	const n = 200
	for i := range n {
		write(t, filepath.Join(root, "notes", fmt.Sprintf("%d.json", i)), `{}`)
	}
	// Write some again while nobody reads.
	time.Sleep(150 * time.Millisecond)
	for i := range n / 2 {
		write(t, filepath.Join(root, "notes", fmt.Sprintf("%d.json", i)), `{"again":true}`)
	}
	time.Sleep(150 * time.Millisecond)
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("notes/%d.json", i)
	}
	s := waitFor(t, w, false, want...)
	if s.events > 3 {
		t.Fatalf("a slow consumer got %d events, want them merged", s.events)
	}
}

// TestLatency measures the time from a write returning to its event.
func TestLatency(t *testing.T) {
	w, root := start(t, nil, "notes")
	var lat []time.Duration
	for i := range 15 {
		p := fmt.Sprintf("notes/%d.json", i)
		began := time.Now()
		write(t, filepath.Join(root, filepath.FromSlash(p)), `{}`)
		waitFor(t, w, false, p)
		lat = append(lat, time.Since(began))
	}
	slices.Sort(lat)
	t.Logf("write to event with Debounce %v: min %v median %v max %v", DefaultDebounce, lat[0], lat[len(lat)/2], lat[len(lat)-1])
	if lat[0] < DefaultDebounce {
		t.Fatalf("reported after %v, before the %v debounce", lat[0], DefaultDebounce)
	}
	if lat[len(lat)/2] > time.Second {
		t.Fatalf("median latency %v", lat[len(lat)/2])
	}
}

func TestCloseStopsAllGoroutines(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			before := runtime.NumGoroutine()
			root := t.TempDir()
			mkdir(t, filepath.Join(root, "notes"))
			w, err := New(root, &Options{Poll: poll, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			// Leave an event pending that nobody reads.
			write(t, filepath.Join(root, "notes", "a.json"), `{}`)
			time.Sleep(100 * time.Millisecond)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, ok := <-w.Events(); ok {
				t.Fatal("events channel open after Close")
			}
			deadline := time.Now().Add(time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

func TestChmodAloneNotReported(t *testing.T) {
	w, root := start(t, nil, "notes")
	p := filepath.Join(root, "notes", "a.json")
	write(t, p, `{}`)
	waitFor(t, w, false, "notes/a.json")
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := quiet(t, w, 200*time.Millisecond); s.events != 0 {
		t.Fatalf("a mode change was reported: %v", s.paths())
	}
}

func TestRootRemovedFallsBackToPolling(t *testing.T) {
	root := filepath.Join(t.TempDir(), "r")
	mkdir(t, filepath.Join(root, "notes"))
	w, err := New(root, &Options{PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	remove(t, root)
	waitFor(t, w, true)
	if w.Mode() != ModePolling {
		t.Fatalf("mode %q after the root vanished, want polling", w.Mode())
	}
	// The folder comes back (a remounted disk): polling sees it.
	mkdir(t, filepath.Join(root, "notes"))
	write(t, filepath.Join(root, "notes", "a.json"), `{}`)
	waitFor(t, w, false, "notes/a.json")
}

package watch

import (
	"container/heap"
	"time"
)

// debouncer holds the paths that were touched but have not settled yet,
// and the settled ones waiting for the consumer. It is pure state driven
// by the caller's clock; it is not safe for concurrent use (the watcher's
// loop goroutine owns it).
//
// A path settles when it has been quiet for the quiet period, or when
// maxDelay has passed since the first touch of its current burst,
// whichever comes first. Settled paths accumulate in a set until taken,
// so a slow consumer merges reports instead of losing them.
type debouncer struct {
	quiet, maxDelay time.Duration

	pending map[string]*burst
	due     dueHeap // at most one entry per pending path

	ready    []string
	readySet map[string]struct{}
	rescan   bool
}

// burst is one pending path's run of touches.
type burst struct {
	first, last time.Time
}

func newDebouncer(quiet, maxDelay time.Duration) *debouncer {
	return &debouncer{
		quiet:    quiet,
		maxDelay: maxDelay,
		pending:  make(map[string]*burst),
		readySet: make(map[string]struct{}),
	}
}

// touch records an event on path at now. It costs O(1) for a path already
// pending and O(log n) for a new one.
func (d *debouncer) touch(path string, now time.Time) {
	if b, ok := d.pending[path]; ok {
		if now.After(b.last) {
			b.last = now
		}
		return
	}
	d.pending[path] = &burst{first: now, last: now}
	heap.Push(&d.due, dueEntry{at: now.Add(d.quiet), path: path})
}

// next returns the earliest time at which a pending path may settle.
// Entries in the heap may be early (a path touched again after its entry
// was pushed); flush then pushes them back with their real deadline.
func (d *debouncer) next() (time.Time, bool) {
	if len(d.due) == 0 {
		return time.Time{}, false
	}
	return d.due[0].at, true
}

// flush moves every path that has settled by now to the ready set.
func (d *debouncer) flush(now time.Time) {
	for len(d.due) > 0 && !d.due[0].at.After(now) {
		e := heap.Pop(&d.due).(dueEntry)
		b := d.pending[e.path]
		at := b.last.Add(d.quiet)
		if limit := b.first.Add(d.maxDelay); limit.Before(at) {
			at = limit
		}
		if at.After(now) {
			heap.Push(&d.due, dueEntry{at: at, path: e.path})
			continue
		}
		delete(d.pending, e.path)
		d.markReady(e.path)
	}
}

// markReady adds path to the ready set, skipping the debounce.
func (d *debouncer) markReady(path string) {
	if _, ok := d.readySet[path]; ok {
		return
	}
	d.readySet[path] = struct{}{}
	d.ready = append(d.ready, path)
}

// hasReady reports whether there is something to deliver.
func (d *debouncer) hasReady() bool { return len(d.ready) > 0 || d.rescan }

// peek returns the event that take would return, without clearing it.
// It does not copy, so it is cheap enough to build on every loop turn.
func (d *debouncer) peek() Event { return Event{Paths: d.ready, Rescan: d.rescan} }

// take clears the ready set after peek's event was delivered; the
// delivered slice is never touched again.
func (d *debouncer) take() {
	d.ready = nil
	clear(d.readySet)
	d.rescan = false
}

type dueEntry struct {
	at   time.Time
	path string
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = dueEntry{}
	*h = old[:len(old)-1]
	return e
}

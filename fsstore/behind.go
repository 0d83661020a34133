package fsstore

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/synkfs/synkfs"
)

// Write-behind (Options.WriteBehind).
//
// Apply makes a batch durable in the journal, applies it to the index and
// keeps its put bodies in memory (Store.unwritten), then hands the record
// files to one writer goroutine and returns. The writer applies batches to
// the files in journal order; once a put's file is in place its body leaves
// memory and its index entry gets the file's size and mtime. Reads of a
// record whose file is not written yet are served from memory.
//
// Crash safety is the journal's, as without write-behind: a checkpoint,
// which lets the journal drop entries, first waits for the writer to drain,
// and Open replays every entry after the last checkpoint, rewriting files.
// Whatever looks at the files themselves (ScanChanges, Dirty, Guard) also
// waits for the writer first.

// DefaultMaxBehind is the default for Options.MaxBehind.
const DefaultMaxBehind = 20_000

// unwrittenPut is a put whose file the writer has not written yet.
type unwrittenPut struct {
	seq  uint64 // journal entry of the batch
	body []byte // canonical
}

// behindJob is one batch's file work.
type behindJob struct {
	seq  uint64
	time int64
	b    *synkfs.Batch // puts and deletes only
}

// behind is the write-behind queue and its writer goroutine.
type behind struct {
	s    *Store
	max  int
	mu   sync.Mutex
	cond *sync.Cond
	jobs []behindJob
	ops  int  // puts and deletes queued or being written
	busy bool // the writer holds a job
	err  error
	stop bool
	done chan struct{}
}

func newBehind(s *Store, max int) *behind {
	w := &behind{s: s, max: max, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.run(w.done)
	return w
}

// push queues a batch's files, waiting while more than max operations are
// queued (so memory stays bounded when files are written slower than
// batches commit). It returns the writer's error, if it failed.
func (w *behind) push(j behindJob) error {
	n := len(j.b.Puts) + len(j.b.Deletes)
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && w.ops > 0 && w.ops+n > w.max {
		w.cond.Wait()
	}
	if w.err != nil {
		return w.err
	}
	w.jobs = append(w.jobs, j)
	w.ops += n
	w.cond.Broadcast()
	return nil
}

// drain waits until every queued file is written, and returns the writer's
// error, if it failed.
func (w *behind) drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && (len(w.jobs) > 0 || w.busy) {
		w.cond.Wait()
	}
	return w.err
}

// failed returns the writer's error, if it failed.
func (w *behind) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close stops the writer once it is idle (call drain first to write
// everything) and waits for it. It may be called more than once.
func (w *behind) close() {
	w.mu.Lock()
	w.stop = true
	w.cond.Broadcast()
	done := w.done
	w.mu.Unlock()
	<-done
}

// abandon stops the writer after the file it is writing, if any, and
// waits for it; the jobs still queued stay queued and are never written
// (a journal replay writes them). Unless the writer failed, cause becomes
// its error, so that waiters in drain and push return instead of waiting
// for a writer that is gone.
func (w *behind) abandon(cause error) {
	w.close()
	w.mu.Lock()
	if w.err == nil {
		w.err = cause
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// restart starts a new writer with nothing queued and no error, after
// abandon. The caller must make sure nothing is pushed meanwhile.
func (w *behind) restart() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jobs, w.ops, w.busy, w.err, w.stop = nil, 0, false, nil, false
	w.done = make(chan struct{})
	w.cond.Broadcast()
	go w.run(w.done)
}

func (w *behind) run(done chan struct{}) {
	defer close(done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.jobs) == 0 && !w.stop && w.err == nil {
			w.cond.Wait()
		}
		if w.stop || w.err != nil {
			return
		}
		j := w.jobs[0]
		w.jobs[0] = behindJob{}
		w.jobs = w.jobs[1:]
		w.busy = true
		w.mu.Unlock()
		err := w.s.writeBehind(j)
		w.mu.Lock()
		w.busy = false
		w.ops -= len(j.b.Puts) + len(j.b.Deletes)
		if err != nil {
			w.err = fmt.Errorf("write records of journal entry %d: %w", j.seq, err)
			w.s.log.Error("writing record files failed; the store is broken until Recover or a reopen replays the journal", "err", err)
		}
		w.cond.Broadcast()
	}
}

// applyMemory applies a journaled batch to the index and metadata, keeping
// put bodies in memory until the writer has written their files.
func (s *Store) applyMemory(b *synkfs.Batch, seq uint64, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Puts {
		s.unwritten[r.Key] = unwrittenPut{seq: seq, body: r.Body}
		// Size, mtime and hash stay zero until the writer has written
		// the file; nothing reads them before it drains.
		s.st.idx.set(r.Key, entry{Version: r.Version})
	}
	for _, d := range b.Deletes {
		delete(s.unwritten, d.Key) // an older put's file must not count
		s.st.idx.set(d.Key, entry{Version: d.Version, Deleted: true, DelTime: now})
	}
	for k, v := range b.Meta {
		if v == nil {
			delete(s.st.meta, k)
		} else {
			s.st.meta[k] = v
		}
	}
	s.st.version = max(s.st.version, b.Version)
	s.st.seq = seq
}

// writeBehind writes one batch's files: the writer goroutine's work.
func (s *Store) writeBehind(j behindJob) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	for _, r := range j.b.Puts {
		s.mu.RLock()
		u, ok := s.unwritten[r.Key]
		s.mu.RUnlock()
		if !ok || u.seq != j.seq {
			continue // deleted or put again since: a later job writes it
		}
		e, err := s.writeRecord(r)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if u, ok := s.unwritten[r.Key]; ok && u.seq == j.seq {
			delete(s.unwritten, r.Key)
			s.st.idx.set(r.Key, e)
		}
		s.mu.Unlock()
	}
	for _, d := range j.b.Deletes {
		s.mu.RLock()
		_, putAgain := s.unwritten[d.Key]
		s.mu.RUnlock()
		if putAgain {
			continue // a later job writes the file
		}
		if err := s.removeRecord(d.Key); err != nil {
			return err
		}
	}
	return nil
}

// readUnwritten returns k's body if its file is not written yet; s.mu
// must be held.
func (s *Store) readUnwritten(k synkfs.Key) ([]byte, bool) {
	u, ok := s.unwritten[k]
	if !ok {
		return nil, false
	}
	return bytes.Clone(u.body), true
}

// settle waits until the files hold every applied batch (a no-op without
// write-behind).
func (s *Store) settle() error {
	if s.behind == nil {
		return nil
	}
	return s.behind.drain()
}

package replica

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/synkfs/synkfs/fsstore"
)

// Bounds of the delay between attempts to bring a broken store back.
const (
	healMinDelay = 100 * time.Millisecond
	healMaxDelay = 5 * time.Second
)

// healer tracks a store broken by a file system error (see
// fsstore.Store.Broken). Guarded by Replica.mu.
type healer struct {
	problem string        // for Status; "" while the store works
	next    time.Time     // no attempt before this
	delay   time.Duration // the wait after the next failed attempt
}

// heal brings the store back after a file system error interrupted an
// apply (a full disk, a failing disk): until then every change fails, so
// the replica neither applies nor pushes. It tries at most once per
// backoff delay unless now is set, and reports the problem in Status
// meanwhile. Once the store recovers (its journal replay finishes the
// interrupted batch), the replica reloads its state from it, since the
// batch that failed may or may not be part of it, and scans, so that
// what the user saved meanwhile is staged. It returns true when it
// recovered the store.
func (r *Replica) heal(now bool) bool {
	cause := r.store.Broken()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if cause == nil {
		if r.healer.problem != "" { // recovered by someone else: nothing to reload
			r.healer = healer{}
			r.markStatus()
		}
		return false
	}
	t := time.Now()
	if r.healer.problem == "" {
		r.healer.delay = healMinDelay
		r.healer.next = t.Add(healMinDelay)
		r.healer.problem = r.diskProblem(cause)
		r.log.Error("the folder's disk failed; sync is paused until it works again", "err", cause)
		r.markStatus()
		if !now {
			return false
		}
	}
	if !now && t.Before(r.healer.next) {
		return false
	}
	err := r.store.Recover()
	if err != nil {
		r.healer.next = t.Add(r.healer.delay)
		r.healer.delay = min(2*r.healer.delay, healMaxDelay)
		if p := r.diskProblem(err); p != r.healer.problem {
			r.healer.problem = p
			r.markStatus()
		}
		r.log.Debug("store still broken", "err", err, "retry_in", r.healer.delay)
		return false
	}
	r.healer = healer{}
	r.reloadStage()
	r.log.Info("the folder's disk works again; sync resumes")
	if _, err := r.scanLocked(); err != nil && !errors.Is(err, errClosed) {
		r.log.Error("scan the folder", "err", err)
	}
	r.markStatus()
	return true
}

// diskProblem says, for people, what went wrong and what to do.
func (r *Replica) diskProblem(err error) string {
	if errors.Is(err, fsstore.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Sprintf("disk full: free space on the disk that holds %s; sync resumes by itself once writes work again, and nothing staged is lost (%v)", r.root, err)
	}
	return fmt.Sprintf("the disk failed a write in %s: check the disk; sync retries by itself and resumes once writes work again, and nothing staged is lost (%v)", r.root, err)
}

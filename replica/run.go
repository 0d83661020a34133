package replica

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/watch"
)

// statusEvery bounds how often the status file is rewritten.
const statusEvery = 200 * time.Millisecond

// Run keeps the folder in sync until ctx is done: it arms the watcher,
// then scans (so nothing saved in between is missed), runs c (attached to
// the replica), stages what the watcher reports, rescans every VerifyEvery
// to catch missed events, keeps .synk/status.json current, and brings the
// store back once the disk works again after a failed write (see
// Status.Disk). It returns
// nil once ctx is done and every goroutine it started has stopped, or an
// error if the watcher cannot start.
func (r *Replica) Run(ctx context.Context, c *client.Client) error {
	r.Attach(c)
	w, err := watch.New(r.root, &watch.Options{Ignore: r.ignored, Debounce: r.opts.Debounce, Logger: r.log})
	if err != nil {
		return err
	}
	defer w.Close()
	r.setWatch(w.Mode())
	if err := r.Scan(); err != nil {
		r.log.Error("scan the folder", "err", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = c.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		r.statusLoop(ctx)
	}()

	verify := time.NewTicker(r.opts.VerifyEvery)
	defer verify.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			r.writeStatusNow()
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				cancel()
				wg.Wait()
				return errors.New("watcher stopped")
			}
			r.setWatch(w.Mode())
			// Events are hints; a look at the file is the truth. It
			// compares size and mtime first, so an unchanged file costs
			// a stat. A watcher that lost track asks for a full scan.
			scan := func() error { return r.ScanPaths(ev.Paths) }
			if ev.Rescan {
				scan = r.Scan
			}
			if err := scan(); err != nil && !errors.Is(err, errClosed) {
				r.log.Error("scan the folder", "err", err)
			}
		case <-verify.C:
			if err := r.Scan(); err != nil && !errors.Is(err, errClosed) {
				r.log.Error("verification scan", "err", err)
			}
		}
	}
}

// SyncOnce scans the folder, then pushes what is staged and pulls what is
// new through c, once (see client.Client.SyncOnce), and writes the status.
// On error the changes stay staged.
func (r *Replica) SyncOnce(ctx context.Context, c *client.Client) error {
	r.Attach(c)
	r.heal(true)
	if err := r.Scan(); err != nil {
		return err
	}
	err := c.SyncOnce(ctx)
	// A batch refused as a whole is split or quarantined; then retry.
	// Each round settles at least one record, so this is bounded.
	for n := r.Pending(); err != nil && n >= 0 && r.handleRefusal(err); n-- {
		err = c.SyncOnce(ctx)
	}
	if err == nil {
		// A conflict settled by client-wins or a merge stages again:
		// one more round sends it.
		if r.Pending() > 0 {
			err = c.SyncOnce(ctx)
		}
	}
	r.writeStatusNow()
	return err
}

// Pending returns the number of staged changes not yet acknowledged.
func (r *Replica) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stage)
}

// PausedDeletes returns the number of deletes held back by the mass-delete
// guard at the last scan.
func (r *Replica) PausedDeletes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused
}

func (r *Replica) setWatch(mode string) {
	r.mu.Lock()
	if r.watch != mode {
		r.watch = mode
		r.markStatus()
	}
	r.mu.Unlock()
}

// markStatus notes that the status changed; the status loop writes it.
func (r *Replica) markStatus() {
	select {
	case r.statusDirty <- struct{}{}:
	default:
	}
}

func (r *Replica) statusLoop(ctx context.Context) {
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	r.writeStatusNow()
	var lastErr error
	var lastConn string
	lastWrite := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		healed := r.heal(false)
		r.mu.Lock()
		cl := r.cl
		r.mu.Unlock()
		if healed && cl != nil {
			cl.Kick()
			cl.Retry()
		}
		conn := ""
		if cl != nil {
			cs := cl.State()
			conn = fmt.Sprint(cs.Connected, cs.ServerVersion, cs.Epoch, cs.LastError)
			if err := cs.LastError; err != nil && err != lastErr {
				lastErr = err
				if r.handleRefusal(err) {
					cl.Kick()
				}
			}
		}
		dirty := false
		select {
		case <-r.statusDirty:
			dirty = true
		default:
		}
		// The connection changes without telling us; conflict copies
		// come and go by the user's hand: a periodic refresh shows both.
		if dirty || conn != lastConn || time.Since(lastWrite) >= statusRefresh {
			r.writeStatusNow()
			lastConn, lastWrite = conn, time.Now()
		}
	}
}

// Status returns the replica's current status.
func (r *Replica) Status() *Status {
	r.mu.Lock()
	st := &Status{
		Dir:           r.root,
		Server:        r.server,
		Epoch:         r.st.Epoch,
		LocalVersion:  r.st.Version,
		Records:       r.store.Count(),
		Staged:        []StagedInfo{},
		Quarantined:   append([]Quarantined{}, r.st.Quarantine...),
		Bad:           []BadEntry{},
		Refused:       slices.Clone(r.refused),
		PausedDeletes: r.paused,
		Disk:          r.healer.problem,
		Watch:         r.watch,
		PID:           os.Getpid(),
		Updated:       time.Now().UTC(),
	}
	for _, e := range r.stage {
		st.Staged = append(st.Staged, StagedInfo{Key: e.Key, Deleted: e.Deleted, Since: e.Since, Batch: e.Batch})
	}
	for p, why := range r.bad {
		st.Bad = append(st.Bad, BadEntry{Path: p, Reason: why})
	}
	cl := r.cl
	r.mu.Unlock()
	slices.SortFunc(st.Staged, func(a, b StagedInfo) int { return a.Since.Compare(b.Since) })
	slices.SortFunc(st.Bad, func(a, b BadEntry) int { return strings.Compare(a.Path, b.Path) })
	st.Connection = "not running"
	if cl != nil {
		cs := cl.State()
		st.ServerVersion = cs.ServerVersion
		switch {
		case cs.Connected:
			st.Connection = "connected"
		case cs.LastError != nil:
			st.Connection = "offline"
		default:
			st.Connection = "connecting"
		}
		if cs.LastError != nil {
			st.LastError = cs.LastError.Error()
		}
	}
	if st.ServerVersion < st.LocalVersion {
		st.ServerVersion = st.LocalVersion
	}
	st.Conflicts, _ = ListConflicts(r.root)
	if st.Conflicts == nil {
		st.Conflicts = []Conflict{}
	}
	return st
}

// SetServer records the server URL shown by Status.
func (r *Replica) SetServer(url string) {
	r.mu.Lock()
	r.server = url
	r.mu.Unlock()
}

// statusRefresh is how often an unchanged status is written anyway, so
// that its Updated time shows the replica is alive.
const statusRefresh = 5 * time.Second

// writeStatusNow writes the status file if it changed (or has not been
// written for statusRefresh).
func (r *Replica) writeStatusNow() {
	st := r.Status()
	updated := st.Updated
	st.Updated = time.Time{}
	fp, _ := json.Marshal(st)
	st.Updated = updated
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if bytes.Equal(fp, r.statusLast) && updated.Sub(r.statusAt) < statusRefresh {
		return
	}
	if err := writeStatus(r.root, st); err != nil {
		r.log.Debug("write status", "err", err)
		return
	}
	r.statusLast, r.statusAt = fp, updated
}

package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/wire"
)

// Cursor implements client.Replica.
func (r *Replica) Cursor() (string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.Epoch, r.st.Version
}

// ApplyRemote implements client.Replica: it writes the server's changes
// into the folder and moves the cursor in one atomic step. A record with
// a local change not yet acknowledged is settled by the conflict strategy,
// never overwritten silently; a file edited since the last scan is staged
// first (the store's guard refuses to overwrite it).
func (r *Replica) ApplyRemote(ctx context.Context, epoch string, ch *wire.Changes) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	r.baseEpoch = epoch
	defer func() { r.baseEpoch = "" }()
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		events, err := r.applyRemoteOnce(epoch, ch)
		var de *fsstore.DirtyError
		if errors.As(err, &de) && attempt < maxGuardRetries {
			r.reloadStage()
			// A file invalid because a save is half-way through is left
			// to settle (the lock released meanwhile), then staged like
			// any edit and settled against the server's change; only a
			// file that stays invalid and unwritten is evicted.
			if d := r.badBeingWritten(de.Keys); d > 0 && waited < r.evictMaxWait() {
				d = min(d, r.evictMaxWait()-waited)
				r.mu.Unlock()
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				r.mu.Lock()
				waited += d
				if r.closed {
					return errClosed
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if _, err := r.scanLocked(); err != nil {
					return err
				}
				attempt-- // waiting is bounded by evictMaxWait, not by the attempts
				continue
			}
			for _, k := range de.Keys {
				if rel, _ := fsstore.KeyPath(k); r.bad[rel] != "" {
					if err := r.evictBad(k); err != nil {
						return err
					}
				}
			}
			if _, err := r.scanLocked(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			r.reloadStage()
			return fmt.Errorf("apply remote changes: %w", err)
		}
		for _, ev := range events {
			r.emit(ev)
		}
		return nil
	}
}

func (r *Replica) applyRemoteOnce(epoch string, ch *wire.Changes) ([]Event, error) {
	var nb synkfs.Batch
	nb.Meta = map[string][]byte{}
	var events []Event
	var refused refusals
	one := func(theirs synkfs.Record, deleted bool) error {
		k := theirs.Key
		if !r.holdable(&refused, theirs, deleted) {
			return nil
		}
		if v, known := r.baseVersion(k); known && v >= theirs.Version {
			// Already applied (our own change coming back, or a reply
			// delivered twice): a local change staged since is based on
			// this version or a newer one, so there is nothing to settle.
			return nil
		}
		e := r.stage[k]
		if e == nil {
			e = r.unquarantine(k)
		}
		if e != nil {
			ev, err := r.settle(&nb, e, theirs, deleted)
			if err != nil {
				return err
			}
			events = append(events, ev)
			return nil
		}
		if cur, live := r.store.Lookup(k); deleted && (!live || cur.Deleted) {
			r.setBase(&nb, k, theirs.Version, nil) // nothing to remove here
			return nil
		}
		r.takeTheirs(&nb, theirs, deleted)
		events = append(events, Event{Kind: EventPulled, Key: k, Deleted: deleted})
		return nil
	}
	for _, rec := range ch.Update {
		if err := one(rec, false); err != nil {
			return nil, err
		}
	}
	for _, t := range ch.Delete {
		if err := one(synkfs.Record{Key: t.Key, Version: t.Version}, true); err != nil {
			return nil, err
		}
	}
	prev := r.st
	r.st.Epoch, r.st.Version = epoch, max(ch.Version, r.st.Version)
	if epoch != prev.Epoch {
		r.st.Version = ch.Version
	}
	if err := r.applyGuarded(nb); err != nil {
		r.st.Epoch, r.st.Version = prev.Epoch, prev.Version
		return nil, err
	}
	return append(events, r.noteRefused(refused)...), nil
}

// maxRefused bounds the refused records a replica remembers for its
// status (a hostile server could send any number).
const maxRefused = 100

// maxRefusedLogged bounds the log lines of refused records per apply;
// the rest are counted in one more line.
const maxRefusedLogged = 10

// refusals collects the records of one apply that the folder cannot hold.
type refusals []RefusedRecord

// holdable reports whether the store can hold a record named like
// theirs. One it cannot (a name too long for a file name, sent by a
// broken or hostile server) is added to *ref and skipped, so that it
// does not fail the whole apply and stall the replica: the rest is
// applied and the cursor moves on.
func (r *Replica) holdable(ref *refusals, theirs synkfs.Record, deleted bool) bool {
	err := r.store.ValidateKey(theirs.Key)
	if err == nil {
		return true
	}
	*ref = append(*ref, RefusedRecord{Key: theirs.Key, Version: theirs.Version, Deleted: deleted, Reason: err.Error(), Time: r.opts.Now()})
	return false
}

// noteRefused logs the records of an apply that was made durable without
// them, keeps them for the status, and returns their events. r.mu must be
// held.
func (r *Replica) noteRefused(ref refusals) []Event {
	if len(ref) == 0 {
		return nil
	}
	events := make([]Event, 0, len(ref))
	for i, rr := range ref {
		if i < maxRefusedLogged {
			r.log.Warn("skipped a record from the server that this folder cannot hold", "version", rr.Version, "reason", rr.Reason)
		}
		events = append(events, Event{Kind: EventRefused, Key: rr.Key, Deleted: rr.Deleted, Message: rr.Reason})
	}
	if n := len(ref) - maxRefusedLogged; n > 0 {
		r.log.Warn("skipped more records from the server that this folder cannot hold", "count", n)
	}
	r.refused = append(r.refused, ref...)
	if n := len(r.refused) - maxRefused; n > 0 {
		r.refused = slices.Delete(r.refused, 0, n)
	}
	r.markStatus()
	return events
}

// unquarantine puts k's quarantined change, if it has one, back on the
// stage and returns its entry (nil if none), so that a remote change of
// the record is settled against it like against any local change: the
// file still holds the refused version, which must not be overwritten
// without a copy. The conflict strategy then decides; an outcome that
// keeps a local change (a merge, client wins) sends it again. r.mu must
// be held; the caller's apply makes it durable (a failed one reloads the
// quarantine from the store).
func (r *Replica) unquarantine(k synkfs.Key) *stageEntry {
	for i, q := range r.st.Quarantine {
		if q.Key != k {
			continue
		}
		r.st.Quarantine = slices.Delete(slices.Clone(r.st.Quarantine), i, i+1)
		e := &stageEntry{Key: k, Deleted: q.Deleted, Since: q.Time}
		r.stage[k] = e
		r.log.Info("a remote change of a record whose local change the server refused; settling them", "record", k.Path())
		return e
	}
	return nil
}

// quarantined reports whether k has a change in the quarantine.
func (r *Replica) quarantined(k synkfs.Key) bool {
	return slices.ContainsFunc(r.st.Quarantine, func(q Quarantined) bool { return q.Key == k })
}

// takeTheirs adds the server's state of a record to nb: its body at its
// version, or its tombstone, and makes it the base.
func (r *Replica) takeTheirs(nb *synkfs.Batch, theirs synkfs.Record, deleted bool) {
	if deleted {
		nb.Deletes = append(nb.Deletes, synkfs.Tombstone{Key: theirs.Key, Version: theirs.Version})
		r.setBase(nb, theirs.Key, theirs.Version, nil)
		return
	}
	body := theirs.Body
	if len(body) == 0 {
		body = []byte("{}")
	}
	if c, err := merge.CanonicalObject(body); err == nil {
		body = c
	}
	nb.Puts = append(nb.Puts, synkfs.Record{Key: theirs.Key, Version: theirs.Version, Body: body})
	r.setBase(nb, theirs.Key, theirs.Version, body)
}

// settle decides a record with the local change e against the server's
// state theirs (deleted: a tombstone at theirs.Version), by the conflict
// strategy. It adds the outcome to nb and updates the stage; files the
// user must see (conflict copies, recovery copies) are written at once.
// r.mu must be held.
func (r *Replica) settle(nb *synkfs.Batch, e *stageEntry, theirs synkfs.Record, theirsDeleted bool) (Event, error) {
	k := e.Key
	ev := Event{Kind: EventConflict, Key: k, Deleted: theirsDeleted}
	oursDeleted := e.Deleted
	var ours []byte
	if !oursDeleted {
		rec, err := r.store.Get(k)
		if err != nil {
			oursDeleted = true // gone or broken since staged; the next scan tells
		} else {
			ours = rec.Body
		}
	}
	unstage := func() { delete(r.stage, k) }

	switch {
	case oursDeleted && theirsDeleted:
		r.takeTheirs(nb, theirs, true)
		unstage()
		ev.Kind, ev.Message = EventPulled, "deleted on both sides"
		return ev, nil
	case !oursDeleted && !theirsDeleted && merge.Equal(ours, theirs.Body):
		r.setBase(nb, k, theirs.Version, ours) // the file already holds it
		unstage()
		ev.Kind, ev.Message = EventPushed, "same on both sides"
		return ev, nil
	case e.Fresh && !oursDeleted && unedited(ours, r.base(k)):
		// Sent again only because a reset server had lost it, and not
		// edited here since: the server's state was written in its new
		// history (re-created, edited or deleted on purpose) and
		// stands. Nothing typed here is lost, so no copy is kept.
		r.takeTheirs(nb, theirs, theirsDeleted)
		unstage()
		ev.Kind, ev.Message = EventPulled, "unchanged here since the server's reset: the server's later change stands"
		return ev, nil
	}

	strategy := r.opts.OnConflict
	if strategy == Merge {
		if oursDeleted || theirsDeleted {
			strategy = KeepBoth
		} else {
			merged, clashes, err := merge.Merge(r.base(k), ours, theirs.Body)
			if err == nil && len(clashes) == 0 {
				r.takeTheirs(nb, theirs, false)
				nb.Puts[len(nb.Puts)-1].Body = merged
				if merge.Equal(merged, theirs.Body) {
					unstage()
				} else {
					e.Batch, e.Again, e.Fresh = 0, false, false
				}
				ev.Message = "changed on both sides: merged the fields"
				return ev, nil
			}
			strategy = KeepBoth
			if err == nil {
				for _, c := range clashes {
					ev.Message += " " + merge.PathString(c.Path)
				}
				ev.Message = "fields changed on both sides:" + ev.Message
			}
		}
	}

	now := r.opts.Now()
	switch strategy {
	case ServerWins:
		if !oursDeleted {
			p, err := saveRecovery(r.root, k, ours, "local", now)
			if err != nil {
				return ev, err
			}
			ev.Message = "server wins; the local version is kept in " + p
		} else {
			ev.Message = "server wins; the local delete is undone"
		}
		r.takeTheirs(nb, theirs, theirsDeleted)
		unstage()
	case ClientWins:
		if !theirsDeleted {
			p, err := saveRecovery(r.root, k, theirs.Body, "server", now)
			if err != nil {
				return ev, err
			}
			ev.Message = "client wins; the server's version is kept in " + p
		} else {
			ev.Message = "client wins; the record is created again"
		}
		// Keep ours, now based on the server's version, and send it
		// again; the file stays as it is.
		if theirsDeleted {
			r.setBase(nb, k, theirs.Version, nil)
		} else {
			r.setBase(nb, k, theirs.Version, theirs.Body)
		}
		e.Batch, e.Again, e.Fresh = 0, false, false
	default: // KeepBoth
		if oursDeleted {
			// Nothing typed is lost: the local side deleted, the server's
			// edit comes back.
			ev.Message = "deleted here but changed on the server: the server's version is back"
		} else {
			c := Conflict{Key: k, Time: now, Base: r.base(k), TheirsDeleted: theirsDeleted}
			if !theirsDeleted {
				c.Theirs = theirs.Body
			}
			if strings.HasPrefix(ev.Message, "fields") {
				c.Reason = ev.Message
			} else if theirsDeleted {
				c.Reason = "changed here but deleted on the server"
			} else {
				c.Reason = "changed on both sides"
			}
			for _, f := range strings.Fields(strings.TrimPrefix(ev.Message, "fields changed on both sides:")) {
				c.Fields = append(c.Fields, f)
			}
			if err := writeConflictCopy(r.root, &c, r.opts.Host, ours); err != nil {
				return ev, err
			}
			ev.Path = c.Copy
			ev.Message = c.Reason + "; your version is kept in " + c.Copy
		}
		r.takeTheirs(nb, theirs, theirsDeleted)
		unstage()
	}
	r.log.Info("conflict", "record", k.Path(), "strategy", string(strategy), "outcome", ev.Message)
	return ev, nil
}

// unedited reports whether a local body is the base it was synced at, so
// holds nothing typed since (an unknown base counts as edited).
func unedited(ours, base []byte) bool {
	return base != nil && merge.Equal(ours, base)
}

// ApplySnapshot implements client.Replica: it walks the server's records,
// settles each against the folder, and at the end removes local records
// the server no longer has (same history) or stages them as creates (a new
// history, where the server lost them), then moves the cursor.
func (r *Replica) ApplySnapshot(ctx context.Context, s *client.Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	if _, err := r.scanLocked(); err != nil {
		return err
	}
	r.baseEpoch = s.Epoch
	defer func() { r.baseEpoch = "" }()
	newHistory := s.Epoch != r.st.Epoch
	// Whatever was sealed and not acknowledged is dropped and re-staged.
	if r.sealed != nil {
		for _, e := range r.stage {
			e.Batch, e.Again = 0, false
		}
		r.sealed = nil
		if err := r.apply(synkfs.Batch{}, &client.Batch{}); err != nil {
			r.reloadStage()
			return err
		}
	}
	if newHistory {
		for _, e := range r.stage {
			e.Fresh = true
		}
	}
	seen := map[synkfs.Key]bool{}
	count := 0
	for page, err := range s.Pages {
		if err != nil {
			r.reloadStage()
			return err
		}
		for attempt := 0; ; attempt++ {
			events, err := r.snapshotPage(page, newHistory)
			var de *fsstore.DirtyError
			if errors.As(err, &de) && attempt < maxGuardRetries {
				r.reloadStage()
				if newHistory {
					for _, e := range r.stage {
						e.Fresh = true
					}
				}
				if _, err := r.scanLocked(); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				r.reloadStage()
				return fmt.Errorf("apply snapshot: %w", err)
			}
			for _, ev := range events {
				r.emit(ev)
			}
			break
		}
		for _, rec := range page {
			seen[rec.Key] = true
		}
		count += len(page)
		if r.opts.OnProgress != nil {
			r.opts.OnProgress(count, s.Total, false)
		}
	}

	// The end of the walk: local records the snapshot did not contain.
	var nb synkfs.Batch
	nb.Meta = map[string][]byte{}
	now := r.opts.Now()
	var after synkfs.Key
	for {
		recs, err := r.store.Scan(after, 1000)
		if err != nil {
			r.reloadStage()
			return err
		}
		for _, rec := range recs {
			if seen[rec.Key] {
				continue
			}
			e := r.stage[rec.Key]
			if e == nil && r.quarantined(rec.Key) {
				if !newHistory {
					// A refused create the server never had: it stays
					// the user's, in the file and in the quarantine.
					continue
				}
				e = r.unquarantine(rec.Key)
			}
			if e != nil {
				if newHistory {
					e.Fresh = true
				}
				continue
			}
			if newHistory {
				// The server lost it (a reset): keep it and send it again.
				r.stage[rec.Key] = &stageEntry{Key: rec.Key, Since: now, Fresh: true}
				continue
			}
			nb.Deletes = append(nb.Deletes, synkfs.Tombstone{Key: rec.Key, Version: s.Version})
			r.setBase(&nb, rec.Key, s.Version, nil)
		}
		if len(recs) < 1000 {
			break
		}
		after = recs[len(recs)-1].Key
	}
	for k, e := range r.stage {
		if e.Deleted && !seen[k] {
			delete(r.stage, k) // the server does not have it either
		}
	}
	r.st.Epoch, r.st.Version = s.Epoch, s.Version
	if err := r.applyWith(nb, &client.Batch{}, fsstore.ApplyOptions{Guard: true}); err != nil {
		r.reloadStage()
		return fmt.Errorf("apply snapshot: %w", err)
	}
	if r.opts.OnProgress != nil {
		r.opts.OnProgress(count, s.Total, true)
	}
	r.log.Info("snapshot applied", "epoch", s.Epoch, "version", s.Version, "records", count, "staged", len(r.stage))
	return nil
}

// snapshotPage applies one page of a snapshot without moving the cursor.
func (r *Replica) snapshotPage(page []synkfs.Record, newHistory bool) ([]Event, error) {
	var nb synkfs.Batch
	nb.Meta = map[string][]byte{}
	var events []Event
	var refused refusals
	for _, rec := range page {
		if !r.holdable(&refused, rec, false) {
			continue
		}
		if v, known := r.baseVersion(rec.Key); known && v == rec.Version && !newHistory {
			// The folder has this version (a page delivered twice, or
			// a record unchanged since): a local change staged since is
			// based on it, so there is nothing to settle.
			continue
		}
		e := r.stage[rec.Key]
		if e == nil {
			e = r.unquarantine(rec.Key)
		}
		if e != nil {
			ev, err := r.settle(&nb, e, rec, false)
			if err != nil {
				return nil, err
			}
			events = append(events, ev)
			continue
		}
		if cur, ok := r.store.Lookup(rec.Key); ok && !cur.Deleted {
			if local, err := r.store.Get(rec.Key); err == nil && merge.Equal(local.Body, rec.Body) {
				// Same body: only the base moves, the file stays.
				r.setBase(&nb, rec.Key, rec.Version, local.Body)
				continue
			}
		}
		r.takeTheirs(&nb, rec, false)
		events = append(events, Event{Kind: EventPulled, Key: rec.Key})
	}
	if err := r.applyGuarded(nb); err != nil {
		return nil, err
	}
	return append(events, r.noteRefused(refused)...), nil
}

package replica

import (
	"context"
	"errors"
	"slices"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/wire"
)

// NextBatch implements client.Replica: it returns the sealed batch, or
// seals the oldest staged changes into a new one (durably, with its id and
// content, before returning it).
func (r *Replica) NextBatch() (client.Batch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return client.Batch{}, false
	}
	if r.sealed != nil {
		return *r.sealed, true
	}
	entries := make([]*stageEntry, 0, len(r.stage))
	for _, e := range r.stage {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *stageEntry) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return a.Key.Compare(b.Key)
	})
	b := client.Batch{ID: r.st.NextBatch + 1}
	// A record's file may hold a save newer than the one staged (the
	// watcher has not reported it yet): the batch carries what the file
	// holds, so the store adopts that body with the seal. Otherwise the
	// next scan would find the body already sent and stage it again, and
	// the server would be sent the same body twice.
	var adopt synkfs.Batch
	size := 0
	var in []*stageEntry
	limit := r.opts.MaxBatch
	if r.single > 0 {
		limit = 1 // isolating a record the server refuses
	}
	for _, e := range entries {
		if b.Len() >= limit || (b.Len() > 0 && size >= r.opts.MaxBatchSize) {
			break
		}
		var base uint64
		if v, ok := r.baseVersion(e.Key); ok && !e.Fresh {
			base = v
		}
		if e.Deleted {
			b.Delete = append(b.Delete, synkfs.Tombstone{Key: e.Key, Version: base})
			in = append(in, e)
			continue
		}
		rec, err := r.store.Get(e.Key)
		if err != nil {
			// Removed or broken since it was staged: the next scan
			// restages it as what it is now.
			continue
		}
		if b.Len() > 0 && size+len(rec.Body) > r.opts.MaxBatchSize {
			break
		}
		if r.store.Dirty(e.Key) {
			adopt.Puts = append(adopt.Puts, rec)
		}
		rec.Version = base
		size += len(rec.Body)
		b.Update = append(b.Update, rec)
		in = append(in, e)
	}
	if b.Len() == 0 {
		return client.Batch{}, false
	}
	for _, e := range in {
		e.Batch, e.Again = b.ID, false
	}
	r.st.NextBatch = b.ID
	if err := r.applyWith(adopt, &b, fsstore.ApplyOptions{Adopt: true}); err != nil {
		r.log.Error("seal a batch", "err", err)
		r.reloadStage()
		return client.Batch{}, false
	}
	r.sealed = &b
	if r.single > 0 {
		r.single--
	}
	return b, true
}

// Acked implements client.Replica: applied changes take the ack's version
// and leave the stage, conflicts are settled by the strategy, rejected
// changes go to the quarantine.
func (r *Replica) Acked(ctx context.Context, b client.Batch, ack *wire.Ack) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	if code, msg, ok := wholeRefusal(b, ack); ok && r.sealed != nil && r.sealed.ID == b.ID {
		// The server refused the batch as a whole for what it holds:
		// send its records one at a time, so that only the culprit ends
		// in the quarantine.
		if err := r.unsealForSingles(); err != nil {
			return err
		}
		r.log.Warn("the server refused a batch; sending its records one at a time", "code", code, "reason", msg)
		return nil
	}
	var err error
	for attempt := 0; ; attempt++ {
		err = r.ackOnce(b, ack)
		var de *fsstore.DirtyError
		if errors.As(err, &de) && attempt < maxGuardRetries {
			r.reloadStage()
			if _, err := r.scanLocked(); err != nil {
				return err
			}
			continue
		}
		break
	}
	if err != nil {
		r.reloadStage()
	}
	return err
}

func (r *Replica) ackOnce(b client.Batch, ack *wire.Ack) error {
	results := make(map[synkfs.Key]wire.Result, len(ack.Results))
	for _, res := range ack.Results {
		results[res.Key] = res
	}
	now := r.opts.Now()
	var nb synkfs.Batch
	nb.Meta = map[string][]byte{}
	var events []Event

	// mine returns k's stage entry if it is still the one sealed in b.
	mine := func(k synkfs.Key) *stageEntry {
		if e := r.stage[k]; e != nil && e.Batch == b.ID {
			return e
		}
		return nil
	}
	done := func(e *stageEntry) {
		if e.Again {
			e.Batch, e.Again, e.Fresh = 0, false, false
		} else {
			delete(r.stage, e.Key)
		}
	}
	type change struct {
		key     synkfs.Key
		body    []byte
		deleted bool
	}
	var changes []change
	for _, rec := range b.Update {
		changes = append(changes, change{rec.Key, rec.Body, false})
	}
	for _, t := range b.Delete {
		changes = append(changes, change{t.Key, nil, true})
	}
	// A duplicate ack (the batch was applied in an earlier connection)
	// repeats the original results when the server kept them; its
	// version is then the batch's. A duplicate without results may be
	// one whose results were not kept (its version is the server's
	// current one, and a record changed by someone else since must not
	// take it as its base) or one the client made up: its records count
	// as applied and keep their base; the changes that follow bring
	// their versions.
	versionKnown := ack.Version > 0 && (!ack.Duplicate || len(ack.Results) > 0)
	for _, c := range changes {
		e := mine(c.key)
		if e == nil {
			continue // settled meanwhile by a remote change or a snapshot
		}
		res, failed := results[c.key]
		switch {
		case !failed || res.Status == wire.StatusApplied:
			// The server now holds what we sent. Only the base moves:
			// the file already holds it (or a newer edit), and is not
			// rewritten.
			if versionKnown {
				r.setBase(&nb, c.key, ack.Version, c.body)
			} else if v, ok := r.baseVersion(c.key); ok {
				r.setBase(&nb, c.key, v, c.body)
			}
			done(e)
			events = append(events, Event{Kind: EventPushed, Key: c.key, Deleted: c.deleted})
		case res.Status == wire.StatusConflict:
			theirs := synkfs.Record{Key: c.key, Version: res.CurrentVersion}
			deleted := res.Deleted || res.Current == nil
			if res.Current != nil {
				theirs = *res.Current
			}
			e.Batch = 0
			ev, err := r.settle(&nb, e, theirs, deleted)
			if err != nil {
				return err
			}
			events = append(events, ev)
		default: // rejected, for good
			q := Quarantined{Key: c.key, Deleted: c.deleted, Code: res.Code, Message: res.Message, Time: now}
			r.st.Quarantine = append(r.st.Quarantine, q)
			done(e)
			r.log.Warn("the server refused a change for good; it is kept locally and shown by synkfs status",
				"record", c.key.Path(), "code", res.Code, "reason", res.Message)
			events = append(events, Event{Kind: EventQuarantined, Key: c.key, Deleted: c.deleted, Message: res.Code + ": " + res.Message})
		}
	}
	if err := r.applyWith(nb, &client.Batch{}, fsstore.ApplyOptions{Guard: true}); err != nil {
		return err
	}
	r.sealed = nil
	for _, ev := range events {
		r.emit(ev)
	}
	return nil
}

// refusalCodes are the server error codes that refuse a batch for what it
// holds; sending it again cannot help.
var refusalCodes = map[string]bool{
	wire.CodeTooLarge: true,
	wire.CodeTooDeep:  true,
	wire.CodeTooMany:  true,
	wire.CodeInvalid:  true,
}

// handleRefusal looks at an error that ended a connection. When the
// server refused the sealed batch as a whole for what it holds, without
// naming the batch (so the client could not hand it over as a rejection),
// the batch would be refused again on every attempt and block everything
// behind it. Instead: a batch of one record goes to the quarantine; a
// larger batch is unsealed and its records are sent one at a time, so
// that only the culprit ends in the quarantine. It reports whether it
// changed anything (a retry may now make progress).
func (r *Replica) handleRefusal(err error) bool {
	var se *client.ServerError
	if !errors.As(err, &se) || !refusalCodes[se.Code] {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.sealed
	if b == nil || r.closed {
		return false
	}
	if b.Len() > 1 {
		if err := r.unsealForSingles(); err != nil {
			return false
		}
		r.log.Warn("the server refused a batch; sending its records one at a time", "code", se.Code, "reason", se.Message)
		return true
	}
	var k synkfs.Key
	deleted := len(b.Delete) == 1
	if deleted {
		k = b.Delete[0].Key
	} else {
		k = b.Update[0].Key
	}
	ack := &wire.Ack{Batch: b.ID, Results: []wire.Result{{Key: k, Status: wire.StatusRejected, Code: se.Code, Message: se.Message}}}
	r.mu.Unlock()
	err = r.Acked(bgctx, *b, ack)
	r.mu.Lock()
	return err == nil
}

// wholeRefusal reports whether ack refuses every record of a batch of
// several with one code and reason, a refusal code: the server refused
// the batch as a whole (the client hands that over as such a synthetic
// ack), not record by record.
func wholeRefusal(b client.Batch, ack *wire.Ack) (code, msg string, ok bool) {
	if b.Len() < 2 || len(ack.Results) != b.Len() || ack.Duplicate {
		return "", "", false
	}
	first := ack.Results[0]
	for _, res := range ack.Results {
		if res.Status != wire.StatusRejected || res.Code != first.Code || res.Message != first.Message {
			return "", "", false
		}
	}
	return first.Code, first.Message, refusalCodes[first.Code]
}

// unsealForSingles drops the sealed batch and has its records sent one
// per batch. r.mu must be held.
func (r *Replica) unsealForSingles() error {
	b := r.sealed
	for _, e := range r.stage {
		if e.Batch == b.ID {
			e.Batch = 0
		}
	}
	r.single += b.Len()
	if err := r.apply(synkfs.Batch{}, &client.Batch{}); err != nil {
		r.reloadStage()
		return err
	}
	r.sealed = nil
	return nil
}

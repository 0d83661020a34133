// Package memreplica is an in-memory client.Replica: records, a cursor and
// staged edits kept in maps, for tests, tools and the reliability harness.
// Nothing is durable; keep the *Replica to simulate a process restart with a
// new client.Client.
//
// Conflicts are settled simply and visibly: the server wins, and the
// losing local edit is listed by Conflicts. After a resync (snapshot) local
// edits win: they are re-staged against the snapshot's versions.
package memreplica

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/wire"
)

var _ client.Replica = (*Replica)(nil)

// edit is a local change not yet acknowledged.
type edit struct {
	body    json.RawMessage
	deleted bool
}

// known is the server state of a key as last seen.
type known struct {
	version uint64
	body    json.RawMessage
	deleted bool
}

// Replica is an in-memory replica. All methods are safe for concurrent use.
type Replica struct {
	mu      sync.Mutex
	epoch   string
	version uint64
	base    map[synkfs.Key]known
	local   map[synkfs.Key]edit // unacknowledged edits, newest
	open    map[synkfs.Key]bool // edited since the sealed batch
	sealed  *client.Batch
	nextID  uint64
	onStage func()

	conflicts  []wire.Result
	rejected   []wire.Result
	duplicates int
	snapshots  int
	changed    chan struct{}
}

// New returns an empty replica that never synced.
func New() *Replica {
	return &Replica{
		base:    map[synkfs.Key]known{},
		local:   map[synkfs.Key]edit{},
		open:    map[synkfs.Key]bool{},
		nextID:  1,
		changed: make(chan struct{}),
	}
}

// OnStage sets a function called (outside the lock) after each Put or
// Delete, typically a client's Kick.
func (r *Replica) OnStage(fn func()) {
	r.mu.Lock()
	r.onStage = fn
	r.mu.Unlock()
}

// Put stages a create or update of k with body, a JSON object.
func (r *Replica) Put(k synkfs.Key, body string) { r.stage(k, edit{body: json.RawMessage(body)}) }

// Delete stages a delete of k.
func (r *Replica) Delete(k synkfs.Key) { r.stage(k, edit{deleted: true}) }

func (r *Replica) stage(k synkfs.Key, e edit) {
	r.mu.Lock()
	r.local[k] = e
	r.open[k] = true
	fn := r.onStage
	r.notifyLocked()
	r.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// notifyLocked wakes Wait callers.
func (r *Replica) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Get returns the local view of k: the local edit if one is pending, else
// the server's record.
func (r *Replica) Get(k synkfs.Key) (synkfs.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.getLocked(k)
}

func (r *Replica) getLocked(k synkfs.Key) (synkfs.Record, bool) {
	b := r.base[k]
	if e, ok := r.local[k]; ok {
		if e.deleted {
			return synkfs.Record{}, false
		}
		return synkfs.Record{Key: k, Version: b.version, Body: e.body}, true
	}
	if b.version == 0 || b.deleted {
		return synkfs.Record{}, false
	}
	return synkfs.Record{Key: k, Version: b.version, Body: b.body}, true
}

// Records returns the local view of every live record, in key order.
func (r *Replica) Records() []synkfs.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := map[synkfs.Key]bool{}
	for k := range r.base {
		keys[k] = true
	}
	for k := range r.local {
		keys[k] = true
	}
	sorted := slices.SortedFunc(maps.Keys(keys), func(a, b synkfs.Key) int {
		if a.Less(b) {
			return -1
		}
		if b.Less(a) {
			return 1
		}
		return 0
	})
	var out []synkfs.Record
	for _, k := range sorted {
		if rec, ok := r.getLocked(k); ok {
			out = append(out, rec)
		}
	}
	return out
}

// Pending returns the number of keys with unacknowledged local edits.
func (r *Replica) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.local)
}

// Conflicts returns the conflict results received, oldest first.
func (r *Replica) Conflicts() []wire.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.conflicts)
}

// Rejected returns the rejected results received, oldest first.
func (r *Replica) Rejected() []wire.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rejected)
}

// Stats returns how many duplicate acks and snapshots the replica took.
func (r *Replica) Stats() (duplicates, snapshots int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.duplicates, r.snapshots
}

// Wait blocks until cond, evaluated under no lock after each change to the
// replica, returns true, or ctx is done.
func (r *Replica) Wait(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Cursor implements client.Replica.
func (r *Replica) Cursor() (string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch, r.version
}

// ApplyRemote implements client.Replica. Records with pending local edits
// keep the edit (and the old base, so the server reports the conflict).
func (r *Replica) ApplyRemote(_ context.Context, epoch string, ch *wire.Changes) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.epoch != "" && epoch != r.epoch {
		return fmt.Errorf("changes from epoch %s applied to a replica of epoch %s", epoch, r.epoch)
	}
	for _, rec := range ch.Update {
		if rec.Version >= r.base[rec.Key].version {
			r.base[rec.Key] = known{version: rec.Version, body: rec.Body}
		}
	}
	for _, t := range ch.Delete {
		if t.Version >= r.base[t.Key].version {
			r.base[t.Key] = known{version: t.Version, deleted: true}
		}
	}
	r.epoch, r.version = epoch, ch.Version
	r.notifyLocked()
	return nil
}

// ApplySnapshot implements client.Replica. Local edits survive: they are
// re-staged against the snapshot's versions.
func (r *Replica) ApplySnapshot(_ context.Context, s *client.Snapshot) error {
	base := map[synkfs.Key]known{}
	for page, err := range s.Pages {
		if err != nil {
			return err
		}
		for _, rec := range page {
			base[rec.Key] = known{version: rec.Version, body: rec.Body}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base = base
	r.sealed = nil
	for k := range r.local {
		r.open[k] = true
	}
	r.epoch, r.version = s.Epoch, s.Version
	r.snapshots++
	r.notifyLocked()
	return nil
}

// NextBatch implements client.Replica: the sealed batch if one awaits its
// ack, else the open edits sealed into a new batch.
func (r *Replica) NextBatch() (client.Batch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sealed != nil {
		return *r.sealed, true
	}
	if len(r.open) == 0 {
		return client.Batch{}, false
	}
	b := client.Batch{ID: r.nextID}
	r.nextID++
	for _, k := range slices.SortedFunc(maps.Keys(r.open), synkfs.Key.Compare) {
		e := r.local[k]
		v := r.base[k].version
		if e.deleted {
			b.Delete = append(b.Delete, synkfs.Tombstone{Key: k, Version: v})
		} else {
			b.Update = append(b.Update, synkfs.Record{Key: k, Version: v, Body: e.body})
		}
	}
	clear(r.open)
	r.sealed = &b
	return b, true
}

// Acked implements client.Replica.
func (r *Replica) Acked(_ context.Context, b client.Batch, ack *wire.Ack) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sealed == nil || r.sealed.ID != b.ID {
		return fmt.Errorf("ack for batch %d, which is not the sealed one", b.ID)
	}
	r.sealed = nil
	if ack.Duplicate {
		r.duplicates++
	}
	results := map[synkfs.Key]wire.Result{}
	for _, res := range ack.Results {
		results[res.Key] = res
	}
	settle := func(k synkfs.Key, sent edit) {
		res, ok := results[k]
		switch {
		case !ok || res.Status == wire.StatusApplied:
			if !ack.Duplicate {
				r.base[k] = known{version: ack.Version, body: sent.body, deleted: sent.deleted}
			}
		case res.Status == wire.StatusConflict:
			r.conflicts = append(r.conflicts, res)
			if res.Current != nil {
				r.base[k] = known{version: res.Current.Version, body: res.Current.Body}
			} else {
				r.base[k] = known{version: res.CurrentVersion, deleted: true}
			}
		default:
			r.rejected = append(r.rejected, res)
		}
		// A key edited again since it was sealed stays staged.
		if !r.open[k] {
			delete(r.local, k)
		}
	}
	for _, rec := range b.Update {
		settle(rec.Key, edit{body: rec.Body})
	}
	for _, t := range b.Delete {
		settle(t.Key, edit{deleted: true})
	}
	r.notifyLocked()
	return nil
}

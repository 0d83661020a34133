package server

import (
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// KeyValidator is implemented by stores that cannot hold every key (a
// file-backed store whose names must fit a file system). The server
// rejects such records one by one instead of failing a whole batch.
type KeyValidator interface {
	ValidateKey(k synkfs.Key) error
}

// preloader is implemented by views that read a remote store (pgstore's):
// Preload fetches what Lookup will be asked for a whole batch in one round
// trip rather than one per record.
type preloader interface {
	Preload(keys []synkfs.Key) error
}

// maxKeyPart bounds a key's type and id, in bytes.
const maxKeyPart = 1024

// batchMetaKey is the Meta key under which the last batch applied for a
// client id is kept, committed in the same Batch as its changes.
func batchMetaKey(id string) string { return "client/" + id + "/batch" }

// batchRecord is the value kept under batchMetaKey: the batch id, the
// version it was committed at and the results of its ack, so that a client
// whose ack was lost learns them when it resends the batch.
//
// Results are kept without the conflicting records' bodies (Current): a
// duplicate ack reads the current ones from the store. When the results
// would still take more than maxStoredResults bytes they are not kept
// (Lost), and a duplicate ack carries none, as for batch ids below the last.
type batchRecord struct {
	Batch     uint64        `json:"batch"`
	Version   uint64        `json:"version"`
	Applied   int           `json:"applied"`
	Conflicts int           `json:"conflicts,omitempty"`
	Rejected  int           `json:"rejected,omitempty"`
	Results   []wire.Result `json:"results,omitempty"`
	Lost      bool          `json:"lost,omitempty"`
}

// maxStoredResults bounds the results kept per client, encoded.
const maxStoredResults = 256 << 10

// encodeBatchRecord returns the value to keep for br, dropping its results
// when they are over maxStoredResults.
func encodeBatchRecord(br batchRecord) []byte {
	if len(br.Results) > 0 {
		kept := make([]wire.Result, len(br.Results))
		for i, r := range br.Results {
			r.Current = nil
			kept[i] = r
		}
		br.Results = kept
	}
	raw, _ := json.Marshal(br) // plain fields only: cannot fail
	if len(raw) > maxStoredResults {
		br.Results, br.Lost = nil, true
		raw, _ = json.Marshal(br)
	}
	return raw
}

// batchRecordOf returns what is kept of the last batch applied for client
// id (ok false if none).
func (s *Server) batchRecordOf(view synkfs.View, id string) (br batchRecord, ok bool) {
	if id == "" {
		return br, false
	}
	raw, found := view.Meta(batchMetaKey(id))
	if !found {
		return br, false
	}
	if err := json.Unmarshal(raw, &br); err != nil {
		s.log.Error("unreadable batch record", "client", id, "err", err)
		return batchRecord{}, false
	}
	return br, true
}

// lastBatch returns the highest batch id applied for client id (0 if none).
func (s *Server) lastBatch(id string) uint64 {
	br, _ := s.batchRecordOf(s.store, id)
	return br.Batch
}

// duplicateAck answers a batch id at or below the last one applied for the
// client. For the last one it repeats the original ack: its version and
// results, each conflict carrying the server's record as it is now. For an
// older id (or when the results were not kept) it carries the current
// version and no results.
func duplicateAck(view synkfs.View, batch uint64, br batchRecord) *wire.Ack {
	if batch != br.Batch || br.Lost {
		return &wire.Ack{Batch: batch, Version: view.Version(), Duplicate: true}
	}
	ack := &wire.Ack{Batch: batch, Version: br.Version, Duplicate: true}
	for _, res := range br.Results {
		if res.Status == wire.StatusConflict {
			res.Current, res.Deleted, res.CurrentVersion = nil, false, 0
			curc, known := view.Lookup(res.Key)
			if known && !curc.Deleted {
				if r, err := view.Get(res.Key); err == nil {
					res.Current = &r
				}
			}
			if res.Current == nil {
				res.Deleted, res.CurrentVersion = true, curc.Version
			}
		}
		ack.Results = append(ack.Results, res)
	}
	return ack
}

func (s *Server) validateKey(k synkfs.Key) error {
	if err := k.Validate(); err != nil {
		return err
	}
	if !utf8.ValidString(k.Type) || !utf8.ValidString(k.ID) {
		return fmt.Errorf("record %q: type and id must be UTF-8", k.String())
	}
	if len(k.Type) > maxKeyPart || len(k.ID) > maxKeyPart {
		return fmt.Errorf("record %q: type and id may have at most %d bytes each", k.String(), maxKeyPart)
	}
	if v, ok := s.store.(KeyValidator); ok {
		return v.ValidateKey(k)
	}
	return nil
}

// applyFailed returns err, marked with errDiskFailed when the store is
// broken (the healer is then at work, see heal.go). The batch may or may
// not be committed; its batch record is committed with it, so a resent
// batch applies exactly once.
func (s *Server) applyFailed(err error) error {
	if cause := s.storeBroken(); cause != nil {
		return fmt.Errorf("%w (%s): %w", errDiskFailed, diskProblem(cause), err)
	}
	return err
}

// op is one update or delete of a pushed batch.
type op struct {
	key    synkfs.Key
	base   uint64
	body   json.RawMessage
	delete bool
}

// inCommit runs fn as one commit step and applies the batch it returns
// (nothing when it is empty or fn fails). A store shared with other
// servers (synkfs.Committer) runs fn inside its own transaction, holding
// the lock every writer takes; any other store is serialised by commitMu.
// Either way the checks fn makes against view and the Apply are one step
// with respect to every other commit. fn may run more than once.
func (s *Server) inCommit(ctx context.Context, fn func(view synkfs.View) (synkfs.Batch, error)) error {
	if cm, ok := s.store.(synkfs.Committer); ok {
		return cm.Commit(ctx, fn)
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	b, err := fn(s.store)
	if err != nil || b.Empty() {
		return err
	}
	return s.store.Apply(ctx, b)
}

// outcome is what one run of a commit step decided; the step may run again
// (a shared store retrying its transaction), so it is only acted on once
// the step has committed.
type outcome struct {
	ack                 *wire.Ack
	version             uint64 // the version committed, 0 when none
	applied             int
	conflicts, rejected int
	results             []wire.Result
}

// commit applies the writes of m at one new store version. It returns
// the ack owed to c (nil when c did not send a batch id under the ack
// feature) and the version committed (0 when nothing was).
//
// With conflict detection (the conflict feature, or Strict), a write is
// not applied when its base is older than the server's version of the
// record: a live record newer than the base (a create, base 0, onto an
// existing record included) or a tombstone newer than the base.
func (s *Server) commit(c *client, m *wire.Changes) (*wire.Ack, uint64, error) {
	var out outcome
	err := s.inCommit(context.Background(), func(view synkfs.View) (synkfs.Batch, error) {
		var b synkfs.Batch
		out, b = s.decide(c, m, view)
		return b, nil
	})
	if err != nil {
		if out.version > 0 {
			return nil, 0, s.applyFailed(fmt.Errorf("apply batch at version %d: %w", out.version, err))
		}
		return nil, 0, s.applyFailed(fmt.Errorf("record batch %d: %w", m.Batch, err))
	}
	if out.rejected > 0 && !c.extended {
		c.log.Info("dropped invalid records from a legacy client", "count", out.rejected)
	}
	for _, r := range out.results {
		if r.Status == wire.StatusRejected {
			s.metrics.errors.WithLabelValues(r.Code).Inc()
		}
	}
	s.metrics.conflicts.Add(float64(out.conflicts))
	if out.version > 0 {
		s.metrics.batches.Inc()
		s.metrics.records.Add(float64(out.applied))
	}
	return out.ack, out.version, nil
}

// decide works out, against view, what m does: the batch to apply (empty
// when nothing is to be written) and the outcome to act on once it is.
func (s *Server) decide(c *client, m *wire.Changes, view synkfs.View) (outcome, synkfs.Batch) {
	withAck := c.extended && c.features[wire.FeatureAck] && m.Batch > 0
	check := c.features[wire.FeatureConflict] || s.opts.Strict

	cur := view.Version()
	if withAck {
		if br, ok := s.batchRecordOf(view, c.id); ok && m.Batch <= br.Batch {
			return outcome{ack: duplicateAck(view, m.Batch, br)}, synkfs.Batch{}
		}
	}
	next := cur + 1

	// A key named twice in one batch: the last write counts.
	ops := make([]op, 0, len(m.Update)+len(m.Delete))
	for _, r := range m.Update {
		ops = append(ops, op{key: r.Key, base: r.Version, body: r.Body})
	}
	for _, d := range m.Delete {
		ops = append(ops, op{key: d.Key, base: d.Version, delete: true})
	}
	last := make(map[synkfs.Key]int, len(ops))
	for i, o := range ops {
		last[o.key] = i
	}
	if p, ok := view.(preloader); ok && len(last) > 1 {
		keys := make([]synkfs.Key, 0, len(last))
		for k := range last {
			keys = append(keys, k)
		}
		// A failure fails the commit (the view remembers it); the
		// lookups below then answer from nothing and are not used.
		_ = p.Preload(keys)
	}

	b := synkfs.Batch{Version: next}
	var out outcome
	for i, o := range ops {
		if last[o.key] != i {
			continue
		}
		if res, no := c.forbidden(o.key); no {
			out.rejected++
			out.results = append(out.results, res)
			continue
		}
		if err := s.validateKey(o.key); err != nil {
			out.rejected++
			out.results = append(out.results, wire.Result{Key: o.key, Status: wire.StatusRejected, Code: wire.CodeInvalid, Message: err.Error()})
			continue
		}
		curc, known := view.Lookup(o.key)
		if check && known && o.base < curc.Version {
			out.conflicts++
			res := wire.Result{Key: o.key, Status: wire.StatusConflict}
			if curc.Deleted {
				res.Deleted, res.CurrentVersion = true, curc.Version
			} else if r, err := view.Get(o.key); err == nil {
				res.Current = &r
			} else {
				res.Deleted, res.CurrentVersion = true, curc.Version
			}
			out.results = append(out.results, res)
			if !c.extended {
				c.log.Info("strict: dropped a stale write", "key", o.key.Path(), "base", o.base, "current", curc.Version)
			}
			continue
		}
		if o.delete {
			if known && curc.Deleted {
				continue // already deleted: nothing to write
			}
			b.Deletes = append(b.Deletes, synkfs.Tombstone{Key: o.key, Version: next})
		} else {
			b.Puts = append(b.Puts, synkfs.Record{Key: o.key, Version: next, Body: o.body})
		}
	}

	out.applied = len(b.Puts) + len(b.Deletes)
	v := next
	if out.applied == 0 {
		// At most the batch record: kept at the current version, which
		// does not move, and nothing to announce.
		v, b.Version = cur, cur
	} else {
		out.version = next
	}
	if withAck {
		raw := encodeBatchRecord(batchRecord{Batch: m.Batch, Version: v, Applied: out.applied, Conflicts: out.conflicts, Rejected: out.rejected, Results: out.results})
		b.Meta = map[string][]byte{batchMetaKey(c.id): raw}
		out.ack = &wire.Ack{Batch: m.Batch, Version: v, Results: out.results}
	}
	return out, b
}

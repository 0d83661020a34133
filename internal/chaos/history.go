package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/merge"
)

// History watches every batch the server commits to its store and checks,
// as each one lands, the invariants a reader of the store can judge:
//
//   - versions strictly increase: a batch with changes is committed above
//     the one before it;
//   - exactly once: each client's batch ids strictly increase within an
//     epoch (no batch is committed twice), and no put repeats the body a
//     record already holds (a resend applied as if it were new);
//   - no resurrection: within an epoch, a record deleted and put again
//     carries a value never seen in that record before (an edit made
//     after the delete, or one that won by the conflict rules), unless a
//     user moved that very body there (a rename).
//
// It also keeps every string value the server ever held, so that the
// harness can tell whether a user's edit reached the server, and the
// state each epoch ended in, to check durability across restarts.
type History struct {
	mu         sync.Mutex
	epoch      string
	version    uint64
	state      map[synkfs.Key]string          // canonical body; "" for a tombstone
	putBy      map[synkfs.Key]string          // the version and batch record of a record's last put
	seen       map[synkfs.Key]map[string]bool // values held by a record this epoch
	allowed    map[synkfs.Key]map[string]bool // bodies users moved to a record
	lastBatch  map[string]uint64              // by client id, this epoch
	uncertain  []synkfs.Batch                 // commits that failed since the last that returned: one may be durable
	values     map[string]bool                // every string value ever held
	carried    []map[synkfs.Key]string        // live records at each in-memory restart
	touched    map[synkfs.Key]bool            // records changed since the last in-memory restart
	violations []string

	Batches, Records, MetaOnly int
}

// NewHistory returns an empty history.
func NewHistory() *History {
	h := &History{values: map[string]bool{}, allowed: map[synkfs.Key]map[string]bool{}}
	h.reset("")
	return h
}

func (h *History) reset(epoch string) {
	h.epoch, h.version = epoch, 0
	h.state = map[synkfs.Key]string{}
	h.putBy = map[synkfs.Key]string{}
	h.seen = map[synkfs.Key]map[string]bool{}
	h.lastBatch = map[string]uint64{}
	h.touched = map[synkfs.Key]bool{}
	h.uncertain = nil
}

// Wrap returns s with every Apply reported to h. The first store wrapped
// (or one with a new epoch) starts a new epoch in h.
func (h *History) Wrap(s synkfs.Store) synkfs.Store {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.Epoch() != h.epoch {
		if h.epoch != "" {
			live := map[synkfs.Key]string{}
			for k, b := range h.state {
				if b != "" {
					live[k] = b
				}
			}
			h.carried = append(h.carried, live)
		}
		h.reset(s.Epoch())
		h.version = s.Version()
	}
	return &watchedStore{Store: s, h: h}
}

// Reopened checks a store reopened from disk (the server restarted with
// --data) against the history: every batch whose commit returned (acked)
// is there, at the same version, and nothing else is, except one of the
// commits that failed since the last that returned, which may or may not
// have made it.
//
// Which one: a commit that fails once its batch is in the journal (the
// crash hit while its files were written) leaves the store refusing
// every later commit, and its version unchanged, so the server offers
// the next client's batch at that same version, and it fails too. Only
// the first can be durable, and it is told from the others by what the
// reopened store holds, not by its version.
func (h *History) Reopened(s synkfs.Store) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.Epoch() != h.epoch {
		h.fail("reopened store has epoch %q, want %q", s.Epoch(), h.epoch)
		return
	}
	got := map[synkfs.Key]string{}
	var after synkfs.Key
	for {
		recs, err := s.Scan(after, 1000)
		if err != nil {
			h.fail("scan reopened store: %v", err)
			return
		}
		for _, r := range recs {
			got[r.Key] = canonical(r.Body)
		}
		if len(recs) < 1000 {
			break
		}
		after = recs[len(recs)-1].Key
	}
	for _, u := range h.uncertain {
		if h.reached(u, s, got) {
			h.commit(u) // this failed commit reached the journal
			break
		}
	}
	h.uncertain = nil
	if s.Version() != h.version {
		h.fail("reopened store is at version %d, the last acknowledged commit at %d", s.Version(), h.version)
	}
	for k, b := range h.state {
		if b != "" && got[k] != b {
			h.fail("durability: %s is %q after the restart, acknowledged as %q", k.Path(), got[k], b)
		}
	}
	for k := range got {
		if h.state[k] == "" {
			h.fail("durability: %s is live after the restart but was never acknowledged live", k.Path())
		}
	}
	for id := range h.lastBatch {
		raw, _ := s.Meta("client/" + id + "/batch")
		var br struct{ Batch uint64 }
		_ = json.Unmarshal(raw, &br)
		if br.Batch < h.lastBatch[id] {
			h.fail("durability: client %s's last batch is %d after the restart, %d was acknowledged", id, br.Batch, h.lastBatch[id])
		}
		h.lastBatch[id] = br.Batch
	}
}

// reached reports whether the failed commit b, with changes, is the one
// the reopened store s (whose live records are got) holds: it is at b's
// version, above the last acknowledged one, with b's puts, deletes and
// metadata.
func (h *History) reached(b synkfs.Batch, s synkfs.Store, got map[synkfs.Key]string) bool {
	if len(b.Puts)+len(b.Deletes) == 0 || b.Version != s.Version() || b.Version <= h.version {
		return false
	}
	for _, r := range b.Puts {
		if got[r.Key] != canonical(r.Body) {
			return false
		}
	}
	for _, t := range b.Deletes {
		if _, live := got[t.Key]; live {
			return false
		}
	}
	for k, v := range b.Meta {
		raw, ok := s.Meta(k)
		if ok != (v != nil) || !bytes.Equal(raw, v) {
			return false
		}
	}
	return true
}

// AllowMove notes that a user moved body to k (a rename): putting it
// there after a delete is not a resurrection.
func (h *History) AllowMove(k synkfs.Key, body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.allowed[k] == nil {
		h.allowed[k] = map[string]bool{}
	}
	h.allowed[k][canonical(body)] = true
}

// HasValue reports whether the server ever held a record with the string
// value v (at any depth).
func (h *History) HasValue(v string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.values[v]
}

// Violations returns what went wrong so far.
func (h *History) Violations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.violations)
}

// CheckCarried checks durability across in-memory restarts: every record
// live when the server lost its memory is, in the final store s, either
// back with the same body or was changed again since (superseded).
func (h *History) CheckCarried(final map[synkfs.Key]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, live := range h.carried {
		for k, b := range live {
			if final[k] == b {
				continue
			}
			if h.changedAfterRestart(i, k) {
				continue
			}
			h.fail("durability: %s (%q) was live before in-memory restart %d and is %q at the end, never changed since", k.Path(), b, i+1, final[k])
		}
	}
}

// changedAfterRestart reports whether k changed in an epoch after the
// i-th in-memory restart. Only the last epoch's changes are kept in
// touched, so earlier restarts count k as changed when a later restart
// carried a different body (it changed in between).
func (h *History) changedAfterRestart(i int, k synkfs.Key) bool {
	for j := i + 1; j < len(h.carried); j++ {
		if h.carried[j][k] != h.carried[i][k] {
			return true
		}
	}
	return h.touched[k]
}

func (h *History) fail(format string, args ...any) {
	if len(h.violations) < 50 {
		h.violations = append(h.violations, fmt.Sprintf(format, args...))
	}
}

// applied records a batch the store accepted (err nil) or refused.
func (h *History) applied(b synkfs.Batch, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.uncertain = append(h.uncertain, b)
		return
	}
	// The store took this one, so none that failed before it is durable.
	h.uncertain = nil
	h.commit(b)
}

func (h *History) commit(b synkfs.Batch) {
	changes := len(b.Puts) + len(b.Deletes)
	if changes > 0 {
		if b.Version <= h.version {
			h.fail("version %d committed after version %d", b.Version, h.version)
		}
		h.version = b.Version
		h.Batches++
		h.Records += changes
	} else {
		h.MetaOnly++
	}
	for key, raw := range b.Meta {
		id, ok := strings.CutPrefix(key, "client/")
		if !ok {
			continue
		}
		id, ok = strings.CutSuffix(id, "/batch")
		if !ok || raw == nil {
			continue
		}
		var br struct{ Batch uint64 }
		if err := json.Unmarshal(raw, &br); err != nil {
			h.fail("client %s: unreadable batch record %q", id, raw)
			continue
		}
		if br.Batch <= h.lastBatch[id] {
			h.fail("exactly once: client %s's batch %d committed after its batch %d", id, br.Batch, h.lastBatch[id])
		}
		h.lastBatch[id] = br.Batch
	}
	for _, r := range b.Puts {
		body := canonical(r.Body)
		cur, known := h.state[r.Key]
		vals := stringValues(r.Body)
		switch {
		case known && cur == body:
			h.fail("exactly once: %s put again with the body it holds at version %d: %s (this put by %s; the one before at %s)", r.Key.Path(), b.Version, body, batchRecords(b), h.putBy[r.Key])
		case known && cur == "" && !h.allowed[r.Key][body] && !hasNew(vals, h.seen[r.Key]):
			h.fail("resurrection: %s put at version %d after its delete with only values it held before: %s", r.Key.Path(), b.Version, body)
		}
		h.state[r.Key] = body
		h.putBy[r.Key] = fmt.Sprintf("version %d by %s", b.Version, batchRecords(b))
		h.touched[r.Key] = true
		if h.seen[r.Key] == nil {
			h.seen[r.Key] = map[string]bool{}
		}
		for _, v := range vals {
			h.seen[r.Key][v] = true
			h.values[v] = true
		}
	}
	for _, t := range b.Deletes {
		h.state[t.Key] = ""
		h.touched[t.Key] = true
	}
}

// batchRecords names the client batch records committed with b (which
// client's batch it was), for failure reports.
func batchRecords(b synkfs.Batch) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(b.Meta)) {
		if strings.HasPrefix(k, "client/") {
			out = append(out, k+"="+string(b.Meta[k]))
		}
	}
	if len(out) == 0 {
		return "no client batch record"
	}
	return strings.Join(out, ", ")
}

func hasNew(vals []string, seen map[string]bool) bool {
	for _, v := range vals {
		if !seen[v] {
			return true
		}
	}
	return false
}

// watchedStore reports every Apply to its History.
type watchedStore struct {
	synkfs.Store
	h *History
}

func (s *watchedStore) Apply(ctx context.Context, b synkfs.Batch) error {
	err := s.Store.Apply(ctx, b)
	s.h.applied(b, err)
	return err
}

// ValidateKey forwards to the store when it validates keys (fsstore), so
// the server still refuses names the store cannot hold one by one.
func (s *watchedStore) ValidateKey(k synkfs.Key) error {
	if v, ok := s.Store.(interface{ ValidateKey(synkfs.Key) error }); ok {
		return v.ValidateKey(k)
	}
	return nil
}

// canonical returns body in canonical JSON ("" for none), or as it is when
// it does not parse.
func canonical(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	if c, err := merge.Canonical(body); err == nil {
		return string(c)
	}
	return string(body)
}

// stringValues returns the string values in a JSON body, at any depth.
func stringValues(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k])
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

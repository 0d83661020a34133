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
	"sync/atomic"
	"time"

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

	// Commits through a shared store (see sharedStore), in the order the
	// store's lock let them run.
	seq     atomic.Uint64        // the last sequence number taken
	nextSeq uint64               // the next sequence number to record
	runs    map[uint64]commitRun // runs reported, not yet recorded

	Batches, Records, MetaOnly int
	// Commits through a shared store that returned an error: how many,
	// and how many of those committed all the same.
	Unknown, UnknownLanded int

	recent []string // the last commits with changes, for failure reports
}

// Recent returns the last commits with changes recorded: version, the
// store they went through, and the client batch records.
func (h *History) Recent() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recent)
}

// NewHistory returns an empty history.
func NewHistory() *History {
	h := &History{values: map[string]bool{}, allowed: map[synkfs.Key]map[string]bool{},
		nextSeq: 1, runs: map[uint64]commitRun{}}
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
//
// A store that several servers share (one implementing synkfs.Committer
// and synkfs.Watcher, such as pgstore) is returned with Commit, Watch
// and Ping kept: the server finds them by type assertion, and a wrapper
// hiding Commit would make each server an independent committer. Its
// commits are recorded in the order the store's lock ran them, whatever
// order their calls return in; several stores over one database may be
// wrapped by the same History.
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
	w := &watchedStore{Store: s, h: h}
	cm, isCommitter := s.(synkfs.Committer)
	wt, isWatcher := s.(synkfs.Watcher)
	if isCommitter && isWatcher {
		return &sharedStore{watchedStore: w, cm: cm, wt: wt}
	}
	return w
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
	got, err := scanAll(s)
	if err != nil {
		h.fail("scan reopened store: %v", err)
		return
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
	h.compare(s, got)
}

// scanAll reads the live records of s as canonical JSON.
func scanAll(s synkfs.Store) (map[synkfs.Key]string, error) {
	got := map[synkfs.Key]string{}
	var after synkfs.Key
	for {
		recs, err := s.Scan(after, 1000)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			got[r.Key] = canonical(r.Body)
		}
		if len(recs) < 1000 {
			return got, nil
		}
		after = recs[len(recs)-1].Key
	}
}

// CheckShared checks a shared store (one wrapped as a sharedStore) at the
// end of a run, when no commit is in progress: every commit reported is
// recorded (a commit whose outcome was unknown counts when the store
// moved past it), and the store holds exactly what the acknowledged
// commits left: the same version, the same live records, and no client's
// batch record behind the last one acknowledged.
func (h *History) CheckShared(s synkfs.Store) {
	for try := 0; ; try++ {
		v := s.Version()
		got, err := scanAll(s)
		if err == nil && s.Version() != v {
			err = fmt.Errorf("the store moved from version %d to %d during the scan", v, s.Version())
		}
		if err != nil {
			if try < 3 {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			h.mu.Lock()
			h.fail("scan the shared store: %v", err)
			h.mu.Unlock()
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.drain(v)
		if s.Epoch() != h.epoch {
			h.fail("the shared store has epoch %q, want %q", s.Epoch(), h.epoch)
			return
		}
		if v != h.version {
			h.fail("durability: the shared store is at version %d, the last commit recorded at %d", v, h.version)
		}
		h.compare(s, got)
		return
	}
}

// compare checks the live records got of store s against the records
// and client batch records the history acknowledged.
func (h *History) compare(s synkfs.Store, got map[synkfs.Key]string) {
	for k, b := range h.state {
		if b != "" && got[k] != b {
			h.fail("durability: %s is %q in the store, acknowledged as %q", k.Path(), got[k], b)
		}
	}
	for k := range got {
		if h.state[k] == "" {
			h.fail("durability: %s is live in the store but was never acknowledged live", k.Path())
		}
	}
	for id := range h.lastBatch {
		raw, _ := s.Meta("client/" + id + "/batch")
		var br struct{ Batch uint64 }
		_ = json.Unmarshal(raw, &br)
		if br.Batch < h.lastBatch[id] {
			h.fail("durability: client %s's last batch is %d in the store, %d was acknowledged", id, br.Batch, h.lastBatch[id])
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

// commitRun is one run of a Commit's fn through a sharedStore: it ran
// holding the store's lock, which every writer takes, so the sequence
// numbers of runs are the order of the store's transactions.
type commitRun struct {
	view  uint64       // the version fn's view was at
	batch synkfs.Batch // what fn returned (empty when it failed)
	by    string       // the label of the store it went through
	// done: the commit returned nil after this run; failed: it returned
	// an error after this run, which may or may not have committed (a
	// link lost during COMMIT); neither: a run that was retried, or whose
	// batch was empty, so nothing of it was committed.
	done, failed bool
}

// ran reports the runs of one Commit call (their sequence numbers and
// the versions of their views, in order), the last run's batch, and the
// call's error; then records every commit whose turn has come.
func (h *History) ran(by string, seqs, views []uint64, b synkfs.Batch, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, n := range seqs {
		r := commitRun{view: views[i], by: by}
		if i == len(seqs)-1 && !b.Empty() {
			r.batch, r.done, r.failed = b, err == nil, err != nil
		}
		h.runs[n] = r
	}
	h.flush(false)
}

// flush records the runs reported, in sequence order, up to the first
// one not reported yet (final: up to the last one reported; see drain).
func (h *History) flush(final bool) {
	for h.record(final) {
	}
}

// record records the next run in sequence order and reports whether it
// could. A failed run with changes committed if the next run's view is
// at its version; that decides it once the next run is reported (final:
// with no next run, it did not). A failed run with only metadata is not
// recorded: nothing later tells whether it landed, and recording it or
// not changes no check that could then fail wrongly.
func (h *History) record(final bool) bool {
	r, ok := h.runs[h.nextSeq]
	if !ok {
		return false
	}
	if r.failed {
		next, ok := h.runs[h.nextSeq+1]
		if !ok && !final {
			return false
		}
		h.Unknown++
		changes := len(r.batch.Puts)+len(r.batch.Deletes) > 0
		if ok && changes && next.view >= r.batch.Version {
			h.UnknownLanded++
			h.note(r.by+", whose commit failed,", r.batch)
			h.commit(r.batch)
		}
	} else if r.done {
		if r.view != h.version {
			h.fail("a commit ran on a view at version %d after the commit of version %d", r.view, h.version)
		}
		h.note(r.by, r.batch)
		h.commit(r.batch)
	}
	delete(h.runs, h.nextSeq)
	h.nextSeq++
	return true
}

// note keeps b, with changes, among the recent commits.
func (h *History) note(by string, b synkfs.Batch) {
	if len(b.Puts)+len(b.Deletes) == 0 {
		return
	}
	h.recent = append(h.recent, fmt.Sprintf("version %d through %s (%s)", b.Version, by, batchRecords(b)))
	if len(h.recent) > 5 {
		h.recent = h.recent[1:]
	}
}

// drain records every run reported, when no commit is in progress and
// the store is at version v: a failed last run counts as committed when
// v is at its version. A run never reported is a failure (its Commit
// call did not return).
func (h *History) drain(v uint64) {
	if len(h.runs) == 0 {
		return
	}
	last := slices.Max(slices.Collect(maps.Keys(h.runs)))
	h.runs[last+1] = commitRun{view: v} // stands for the store now
	for h.nextSeq <= last {
		if !h.record(true) {
			h.fail("commit run %d never reported (a Commit call did not return)", h.nextSeq)
			h.nextSeq++
		}
	}
	delete(h.runs, last+1)
}

// sharedStore is a watchedStore of a store that several servers write at
// once: it keeps the store's Commit, Watch and Ping, and reports each
// commit with its place in the store's order.
type sharedStore struct {
	*watchedStore
	cm synkfs.Committer
	wt synkfs.Watcher

	announced atomic.Int64  // calls of Watch's fn
	lastSeen  atomic.Uint64 // the version last announced
	label     string        // names the store in failure reports; set before use
}

// Announced returns how many versions the store's Watch announced, and
// the last one, for failure reports.
func (s *sharedStore) Announced() (int64, uint64) { return s.announced.Load(), s.lastSeen.Load() }

var (
	_ synkfs.Committer = (*sharedStore)(nil)
	_ synkfs.Watcher   = (*sharedStore)(nil)
)

// Commit runs the store's Commit, numbering each run of fn while it holds
// the store's lock, and reports the runs once the call returns.
func (s *sharedStore) Commit(ctx context.Context, fn func(synkfs.View) (synkfs.Batch, error)) error {
	var (
		seqs, views []uint64
		last        synkfs.Batch
	)
	err := s.cm.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		b, err := fn(v)
		seqs, views = append(seqs, s.h.seq.Add(1)), append(views, v.Version())
		last = b
		if err != nil {
			last = synkfs.Batch{}
		}
		return b, err
	})
	s.h.ran(s.label, seqs, views, last, err)
	return err
}

// Watch is the store's.
func (s *sharedStore) Watch(ctx context.Context, fn func(version uint64)) error {
	return s.wt.Watch(ctx, func(v uint64) {
		s.announced.Add(1)
		s.lastSeen.Store(v)
		fn(v)
	})
}

// Ping is the store's, when it has one; nil otherwise.
func (s *sharedStore) Ping(ctx context.Context) error {
	if p, ok := s.Store.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
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

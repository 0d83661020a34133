// Package replica is the sync engine of a synced folder: it keeps one
// fsstore.Store (the folder of <type>/<id>.json records) in step with the
// server through a client.Client, and is shared by `synkfs sync` and
// `synkfs mount`.
//
// # What it keeps
//
// Everything the engine must not forget lives in the store's metadata and
// changes in the same atomic Apply as the records it concerns:
//
//   - the cursor: the server epoch and version last applied;
//   - the stage: one entry per record with a local change not yet
//     acknowledged (several edits of one record collapse into one entry);
//     the body itself is the record's file, already applied to the store;
//   - the sealed batch: the batch handed to the client, with its id and
//     full content, so a resend after a crash is identical;
//   - the base of each record: the body last agreed with the server, for
//     three-way merges;
//   - the quarantine: local changes the server refused for good.
//
// Files the user must see are kept outside the store: conflict copies next
// to their records (see Conflict), losing versions in .synk/recovery/, and
// the status snapshot in .synk/status.json.
//
// # Concurrency
//
// A Replica is safe for concurrent use. One mutex serialises every change
// to the store: local scans, remote changes and acknowledgements. The
// client calls the client.Replica methods from its own goroutine; Run owns
// the watcher and the periodic verification scan.
package replica

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/fsstore"
)

// Strategy says how a record changed on both sides is settled.
type Strategy string

// Conflict strategies (see the package's README section in docs).
const (
	// Merge merges the JSON fields three ways against the base; a field
	// changed on both sides to different values makes the record fall
	// back to KeepBoth.
	Merge Strategy = "merge"
	// KeepBoth keeps the server's version at the record's path and the
	// local version beside it as a conflict copy.
	KeepBoth Strategy = "keep-both"
	// ServerWins takes the server's version; the local one is kept in
	// .synk/recovery/.
	ServerWins Strategy = "server-wins"
	// ClientWins keeps the local version and sends it again; the server's
	// is kept in .synk/recovery/.
	ClientWins Strategy = "client-wins"
)

// ParseStrategy returns the strategy named s.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case Merge, KeepBoth, ServerWins, ClientWins:
		return st, nil
	case "":
		return Merge, nil
	}
	return "", fmt.Errorf("unknown conflict strategy %q (want merge, keep-both, server-wins or client-wins)", s)
}

// Defaults for Options.
const (
	DefaultVerifyEvery  = 30 * time.Second
	DefaultDebounce     = 15 * time.Millisecond
	DefaultMaxBatch     = 1000
	DefaultMaxBatchSize = 1 << 20
	// massDeleteMin is the smallest folder the mass-delete guard protects.
	massDeleteMin = 10
)

// Options configure a Replica. The zero value works.
type Options struct {
	// OnConflict is the conflict strategy; "" means Merge.
	OnConflict Strategy
	// ConfirmDeletes lets one sweep delete more than half of the records
	// of a folder of at least 10; without it such deletes wait (see
	// Status.PausedDeletes).
	ConfirmDeletes bool
	// Logger receives what happens; nil discards it.
	Logger *slog.Logger
	// OnEvent, if set, is called for every change that flows (after it is
	// durable), from the goroutine that made it; it must not block long
	// nor call back into the Replica.
	OnEvent func(Event)
	// OnProgress, if set, is called during a snapshot with the number of
	// records applied so far and the number the server announced (0 when
	// unknown; records change during the walk, so count may pass it);
	// done is true after the last page.
	OnProgress func(records, total int, done bool)
	// Debounce is how long a changed file must stay quiet before it is
	// staged (long enough that a half-written file is not sent; a save
	// caught mid-write is a bad entry until it settles, never sent).
	// 0 means DefaultDebounce.
	Debounce time.Duration
	// VerifyEvery is the period of the verification scan that catches
	// what the watcher missed. 0 means DefaultVerifyEvery.
	VerifyEvery time.Duration
	// MaxBatch and MaxBatchSize bound a pushed batch in records and in
	// body bytes (a single larger record still goes alone). 0 means the
	// defaults.
	MaxBatch     int
	MaxBatchSize int
	// Host names conflict copies; "" means the machine's host name.
	Host string
	// Store options for fsstore.Open; nil means defaults.
	Store *fsstore.Options
	// Now returns the time; nil means time.Now. For tests.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.OnConflict == "" {
		opts.OnConflict = Merge
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.VerifyEvery <= 0 {
		opts.VerifyEvery = DefaultVerifyEvery
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	if opts.Host == "" {
		opts.Host = hostName()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts
}

// EventKind names what an Event reports.
type EventKind string

// Event kinds.
const (
	EventStaged      EventKind = "staged"      // a local change was staged
	EventPushed      EventKind = "pushed"      // the server applied a local change
	EventPulled      EventKind = "pulled"      // a remote change was written locally
	EventConflict    EventKind = "conflict"    // a conflict was settled (see Message)
	EventQuarantined EventKind = "quarantined" // the server refused a change for good
	EventBad         EventKind = "bad"         // a file is not a valid record
	EventPaused      EventKind = "paused"      // the mass-delete guard held deletes back
	EventRefused     EventKind = "refused"     // a server record the folder cannot hold was skipped
)

// Event is one thing that happened to a record, for people.
type Event struct {
	Kind    EventKind
	Key     synkfs.Key
	Deleted bool   // the change is a delete
	Path    string // the file concerned, relative to the root
	Message string
}

// Meta keys the replica keeps in the store.
const (
	metaState  = "replica/state"
	metaSealed = "replica/sealed"
	metaBase   = "replica/base/" // + KeyPath
)

// state is the replica's durable state besides bases and the sealed batch.
type state struct {
	Epoch     string `json:"epoch"`
	Version   uint64 `json:"version"`
	NextBatch uint64 `json:"nextBatch"`
	// ClientID is this replica's id at the server, made once.
	ClientID   string        `json:"clientId"`
	Stage      []stageEntry  `json:"stage"`
	Quarantine []Quarantined `json:"quarantine,omitempty"`
}

// stageEntry is a record with a local change not yet acknowledged. The
// changed body is the record's file (already applied to the store).
type stageEntry struct {
	Key     synkfs.Key `json:"key"`
	Deleted bool       `json:"deleted,omitempty"`
	Since   time.Time  `json:"since"`
	// Batch is the sealed batch that carries the change, 0 if none.
	Batch uint64 `json:"batch,omitempty"`
	// Again: changed again after it was sealed into Batch; it stays
	// staged when that batch is acknowledged.
	Again bool `json:"again,omitempty"`
	// Fresh: re-staged against a new history (a snapshot); the record's
	// store version means nothing there, so it is sent as a create.
	Fresh bool `json:"fresh,omitempty"`
}

// Replica is the sync engine of one folder. Open it, hand it to
// client.New, then Run it (or call SyncOnce). Close releases the store.
type Replica struct {
	root  string
	opts  Options
	log   *slog.Logger
	store *fsstore.Store
	lock  *os.File // held while open: one process per folder

	mu     sync.Mutex
	st     state
	stage  map[synkfs.Key]*stageEntry
	sealed *client.Batch
	bad    map[string]string // path -> reason, as last reported
	// refused lists the server's records this folder cannot hold (their
	// names do not fit in file names), newest last, at most maxRefused.
	refused []RefusedRecord
	paused  int            // deletes held back by the guard
	single  int            // batches to send one record at a time
	watch   string         // watcher mode, "" when not watching
	cl      *client.Client // for Kick and State; nil until Attach
	// baseEpoch, when set, is the epoch of the changes being applied
	// (a snapshot's before the cursor moves to it); bases written
	// meanwhile belong to it. "" means the cursor's epoch.
	baseEpoch string
	server    string // for Status
	closed    bool
	healer    healer // a store broken by a disk error (heal.go)

	statusMu    sync.Mutex // guards the two below and the file
	statusLast  []byte     // the last status written, without its time
	statusAt    time.Time
	statusDirty chan struct{}
}

var _ client.Replica = (*Replica)(nil)

// Open opens (creating if needed) the synced folder at root. A folder that
// holds records and no sync state is fine: the first scan stages them all
// as creates, and they are merged with the server's.
func Open(root string, opts *Options) (*Replica, error) {
	o := opts.withDefaults()
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	lock, err := lockFolder(abs)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	so := fsstore.Options{Logger: o.Logger}
	if o.Store != nil {
		so = *o.Store
		if so.Logger == nil {
			so.Logger = o.Logger
		}
	}
	s, err := fsstore.Open(abs, &so)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	r := &Replica{
		root:        abs,
		opts:        o,
		log:         o.Logger,
		store:       s,
		lock:        lock,
		stage:       map[synkfs.Key]*stageEntry{},
		bad:         map[string]string{},
		statusDirty: make(chan struct{}, 1),
	}
	if err := r.load(); err != nil {
		_ = s.Close()
		lock.Close()
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	return r, nil
}

// load reads the durable state; a missing or unreadable state starts
// afresh (the files and the server rebuild it).
func (r *Replica) load() error {
	if data, ok := r.store.Meta(metaState); ok {
		if err := json.Unmarshal(data, &r.st); err != nil {
			r.log.Warn("sync state is damaged; rebuilding it from the files and the server", "err", err)
			r.st = state{}
		}
	}
	for i := range r.st.Stage {
		e := r.st.Stage[i]
		r.stage[e.Key] = &e
	}
	r.st.Stage = nil
	if data, ok := r.store.Meta(metaSealed); ok {
		var b client.Batch
		if err := json.Unmarshal(data, &b); err == nil && b.ID > 0 {
			r.sealed = &b
		}
	}
	if r.st.ClientID == "" {
		r.st.ClientID = newClientID()
		return r.apply(synkfs.Batch{}, nil)
	}
	return nil
}

// Root returns the synced folder.
func (r *Replica) Root() string { return r.root }

// ClientID returns the replica's stable id at the server; pass it in
// client.Options.
func (r *Replica) ClientID() string { return r.st.ClientID }

// Store returns the underlying store (read-only use: mount serves reads
// from it).
func (r *Replica) Store() *fsstore.Store { return r.store }

// Attach tells the replica which client pushes for it, so that staging a
// change kicks the client and Status reports the connection.
func (r *Replica) Attach(c *client.Client) {
	r.mu.Lock()
	r.cl = c
	r.mu.Unlock()
}

// Close writes a last status and closes the store.
func (r *Replica) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.writeStatusNow()
	err := r.store.Close()
	r.lock.Close()
	return err
}

// apply commits b at the store's version together with the replica's state
// and, when sealed is set, the sealed batch (an empty batch with ID 0
// removes it). r.mu must be held (or the replica not yet shared).
func (r *Replica) apply(b synkfs.Batch, sealed *client.Batch) error {
	return r.applyWith(b, sealed, fsstore.ApplyOptions{})
}

// applyWith is apply with store options.
func (r *Replica) applyWith(b synkfs.Batch, sealed *client.Batch, o fsstore.ApplyOptions) error {
	if b.Version < r.store.Version() {
		b.Version = r.store.Version()
	}
	if b.Meta == nil {
		b.Meta = map[string][]byte{}
	}
	st := r.st
	st.Stage = make([]stageEntry, 0, len(r.stage))
	for _, e := range r.stage {
		st.Stage = append(st.Stage, *e)
	}
	slices.SortFunc(st.Stage, func(a, b stageEntry) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		if a.Key.Less(b.Key) {
			return -1
		}
		if b.Key.Less(a.Key) {
			return 1
		}
		return 0
	})
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	b.Meta[metaState] = data
	if sealed != nil {
		if sealed.ID == 0 {
			b.Meta[metaSealed] = nil
		} else {
			data, err := json.Marshal(sealed)
			if err != nil {
				return err
			}
			b.Meta[metaSealed] = data
		}
	}
	if err := r.store.ApplyWith(bgctx, b, o); err != nil {
		return err
	}
	r.markStatus()
	return nil
}

// baseKey is the metadata key of k's base body.
func baseKey(k synkfs.Key) string {
	p, err := fsstore.KeyPath(k)
	if err != nil {
		p = k.String()
	}
	return metaBase + p
}

// A base is stored as the record's server version (8 bytes, big endian),
// a zero byte, the server epoch the version belongs to, a zero byte, then
// its body; no body means the server has it deleted. The version is the
// base of the next push, kept here rather than in the store's index so
// that learning it never rewrites the user's file. A version from another
// epoch means nothing in the current one (a server that lost its memory
// counts again from 0), so it is not used as a base. Bases written before
// the epoch was kept (the version directly followed by the body) count as
// the current epoch's.

// setBase records in nb that the server holds body (nil: a tombstone) at
// version for k, in the epoch being applied (see baseEpoch).
func (r *Replica) setBase(nb *synkfs.Batch, k synkfs.Key, version uint64, body []byte) {
	if nb.Meta == nil {
		nb.Meta = map[string][]byte{}
	}
	epoch := r.baseEpoch
	if epoch == "" {
		epoch = r.st.Epoch
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 10+len(epoch)+len(body)), version)
	v = append(v, 0)
	v = append(v, epoch...)
	v = append(v, 0)
	nb.Meta[baseKey(k)] = append(v, body...)
}

// decodeBase splits a stored base; tagged is false for the older form
// without an epoch. ok is false when b is too short to be a base.
func decodeBase(b []byte) (version uint64, epoch string, tagged bool, body []byte, ok bool) {
	if len(b) < 8 {
		return 0, "", false, nil, false
	}
	version, rest := binary.BigEndian.Uint64(b), b[8:]
	if len(rest) > 0 && rest[0] == 0 {
		if i := bytes.IndexByte(rest[1:], 0); i >= 0 {
			return version, string(rest[1 : 1+i]), true, rest[2+i:], true
		}
		return version, "", false, nil, false
	}
	return version, "", false, rest, true
}

// base returns the body last agreed with the server for k (nil if none or
// deleted). A body from an earlier epoch is still the last one both sides
// agreed on, so it serves three-way merges whatever its epoch.
func (r *Replica) base(k synkfs.Key) []byte {
	b, ok := r.store.Meta(baseKey(k))
	if !ok {
		return nil
	}
	_, _, _, body, ok := decodeBase(b)
	if !ok || len(body) == 0 {
		return nil
	}
	return body
}

// baseVersion returns the server version of k to send as the base of a
// change, and whether one is known. Without a base of the current epoch,
// the replica has applied everything up to its cursor and not seen k
// there: the cursor is the base (capped by the record's local version,
// which is where its history here starts).
func (r *Replica) baseVersion(k synkfs.Key) (uint64, bool) {
	if b, ok := r.store.Meta(baseKey(k)); ok {
		if v, epoch, tagged, _, ok := decodeBase(b); ok {
			if !tagged || epoch == r.st.Epoch {
				return v, true
			}
			return r.st.Version, true
		}
	}
	if c, ok := r.store.Lookup(k); ok {
		return min(c.Version, r.st.Version), true
	}
	return 0, false
}

func (r *Replica) emit(ev Event) {
	if ev.Path == "" {
		ev.Path, _ = fsstore.KeyPath(ev.Key)
	}
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(ev)
	}
}

func newClientID() string {
	var b [12]byte
	_, _ = randRead(b[:])
	host := hostName()
	return fmt.Sprintf("%s-%x", host, b[:])
}

// errClosed is returned by calls on a closed replica.
var errClosed = errors.New("replica closed")

// fileExists reports whether the record file for k exists.
func (r *Replica) fileExists(k synkfs.Key) bool {
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		return false
	}
	_, err = os.Lstat(filepath.Join(r.root, filepath.FromSlash(rel)))
	return err == nil
}

package synkfs

import (
	"context"
	"errors"
	"time"
)

// Errors that stores and the engine return; wrap them with context and test
// with errors.Is.
var (
	// ErrNotFound: no live record has that key.
	ErrNotFound = errors.New("record not found")
	// ErrClosed: the store or connection was closed.
	ErrClosed = errors.New("closed")
	// ErrStaleVersion: a batch's version is below the store's version.
	ErrStaleVersion = errors.New("batch version is below the store version")
)

// Change is one entry of a store's history: a live record, or, when Deleted
// is set, a tombstone (Body is then nil).
type Change struct {
	Record
	Deleted bool
	// Time is when a tombstone was written; stores use it to compact.
	Time time.Time
}

// Tombstone returns the change as a tombstone.
func (c Change) Tombstone() Tombstone { return Tombstone{Key: c.Key, Version: c.Version} }

// Batch is a set of puts and deletes applied as one atomic step: after a
// crash a store holds either all of it or none of it.
type Batch struct {
	// Version is the store version after the batch. It must not be below
	// the current version (ErrStaleVersion). A server moves to a new
	// version with every batch; a replica applies its local edits and
	// metadata at its current version, which then does not move. Each put
	// and delete carries its own version: usually Version (a server) or
	// the server's version of that record (a replica).
	Version uint64
	Puts    []Record
	Deletes []Tombstone
	// Meta sets opaque metadata keys in the same atomic step; a nil value
	// removes the key. Upper layers keep staging, merge bases and
	// idempotency tables here.
	Meta map[string][]byte
}

// Empty reports whether the batch changes no record and no metadata.
func (b *Batch) Empty() bool { return len(b.Puts) == 0 && len(b.Deletes) == 0 && len(b.Meta) == 0 }

// Store is a versioned set of records with tombstones: the contract that
// memstore and fsstore both keep, and that the server and the replica
// engine use. Implementations are safe for concurrent use.
type Store interface {
	// Epoch is a random id made when the store was created; it changes
	// only when the store's history is reset.
	Epoch() string
	// Version is the version of the last applied batch (0 when empty).
	Version() uint64
	// Floor is the highest version whose tombstones may have been
	// compacted: a reader behind it cannot be caught up by Since.
	Floor() uint64

	// Get returns the live record with key k, or an error wrapping
	// ErrNotFound.
	Get(k Key) (Record, error)
	// Lookup returns what the store knows of k without reading its body:
	// its version and whether it is a tombstone. ok is false when the
	// store knows nothing of k (never written, or tombstone compacted).
	Lookup(k Key) (c Change, ok bool)

	// Apply commits b atomically and durably (as far as the store is
	// durable) and returns only once it is.
	Apply(ctx context.Context, b Batch) error

	// Since calls fn, in ascending version order, for every record and
	// tombstone whose version is above v. It stops at the first error fn
	// returns and returns it.
	Since(v uint64, fn func(Change) error) error
	// Scan returns up to limit live records with keys after `after` (the
	// zero Key starts at the beginning), in key order. Snapshots page
	// through a store with it.
	Scan(after Key, limit int) ([]Record, error)
	// Count returns the number of live records.
	Count() int

	// Meta returns the value of a metadata key set by Batch.Meta.
	Meta(key string) ([]byte, bool)

	// Compact drops tombstones written before t and raises Floor to the
	// highest version dropped.
	Compact(ctx context.Context, before time.Time) error

	// Close releases the store. Further calls return ErrClosed.
	Close() error
}

// View is what a committer reads while it holds a store's commit lock: the
// store as of its latest commit, which no other writer can move until the
// commit ends.
type View interface {
	Version() uint64
	Get(k Key) (Record, error)
	Lookup(k Key) (c Change, ok bool)
	Meta(key string) ([]byte, bool)
}

// Committer is implemented by stores that several processes write at once
// (many servers over one database). A server's read-check-write of a batch
// (conflict checks, the exactly-once batch table) must then happen inside
// the store's own transaction, not under a lock of one process.
//
// Commit runs fn with a View at the store's latest version, holding a lock
// that every writer of the store takes, and applies the batch fn returns
// in the same atomic step. The batch's Version is the view's Version()+1
// (a new version) or the view's Version() (metadata only); Commit returns
// ErrStaleVersion for anything else. An error from fn, or an empty batch,
// commits nothing. fn may run more than once when the store retries a
// transaction, so it must not have effects outside what it returns.
type Committer interface {
	Commit(ctx context.Context, fn func(View) (Batch, error)) error
}

// Watcher is implemented by stores that other processes also write. Watch
// calls fn with the store's version after each batch another writer
// commits (and once whenever it may have missed some, such as after a
// lost database link), until ctx ends; it returns ctx's error, or an
// error when it cannot watch at all. Calls to fn are sequential; versions
// may be skipped and repeated, never announced before they are readable.
type Watcher interface {
	Watch(ctx context.Context, fn func(version uint64)) error
}

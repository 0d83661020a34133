package mount

import (
	"context"
	"errors"
	"time"

	"github.com/synkfs/synkfs"
)

// Backend is what the mount needs from the engine under it: the records as
// files, the saves of whole files, and word of changes made elsewhere.
//
// StoreBackend implements it over a bare fsstore.Store; the sync engine
// implements it for a synced mount. Implementations are safe for concurrent
// use. Errors wrap synkfs.ErrNotFound, ErrNotEmpty, ErrExist, ErrInvalid or
// fsstore.ErrNameTooLong where those apply; the mount turns them into errno
// values in one place (see errno.go).
type Backend interface {
	// Types returns the record types, each an existing type folder, in any
	// order.
	Types() ([]string, error)
	// List returns what a type folder holds: every live record and every
	// bad entry, with their file attributes, without reading bodies. A
	// type that does not exist fails with synkfs.ErrNotFound.
	List(typ string) ([]Entry, error)
	// Stat returns the attributes of k's file (a live record or a bad
	// entry) without reading its body, or an error wrapping
	// synkfs.ErrNotFound.
	Stat(k synkfs.Key) (FileInfo, error)
	// Get returns the content of k's file as it is on disk (the pretty
	// form of a record, or the bytes of a bad entry) and its attributes.
	Get(k synkfs.Key) ([]byte, FileInfo, error)

	// Put saves content as k's file: one save, one change. Valid JSON
	// becomes one new version of the record (a body equal, in canonical
	// form, to the current one changes nothing). Content that is not a
	// valid record is kept as a bad entry: flagged, never synced, and the
	// save still succeeds. The type folder is made if missing.
	Put(ctx context.Context, k synkfs.Key, content []byte) error
	// Delete removes k's record (or bad entry): one change.
	Delete(ctx context.Context, k synkfs.Key) error

	// MakeType makes an empty type folder; an existing one fails with
	// ErrExist.
	MakeType(typ string) error
	// RemoveType removes an empty type folder; one that holds records or
	// bad entries fails with ErrNotEmpty.
	RemoveType(typ string) error

	// Status returns the sync status as JSON, shown as .synk/status.json.
	Status() ([]byte, error)
	// Conflicts and BadEntries list the records that need a person,
	// shown as .synk/conflicts.json and .synk/bad-entries.json.
	Conflicts() ([]Problem, error)
	BadEntries() ([]Problem, error)

	// Watch registers fn to be called with the keys of records that
	// changed for any reason other than the mount's own Put and Delete
	// (a remote change, a conflict settled, an edit under the state
	// folder). fn must not block for long; the mount queues the keys and
	// invalidates the kernel's caches for them from its own goroutine.
	// The returned stop function unregisters fn; after it returns, fn is
	// not called again.
	Watch(fn func(changed []synkfs.Key)) (stop func())
}

// Entry is one file of a type folder.
type Entry struct {
	ID string
	FileInfo
}

// FileInfo is what the mount shows of a record file.
type FileInfo struct {
	Size    int64
	Mtime   time.Time
	Version uint64 // the record's version; 0 for a bad entry never synced
	Bad     bool   // the file is not a valid record
}

// Problem is a record that needs attention: a conflict or a bad entry.
type Problem struct {
	Path   string     `json:"path"` // relative to the mount, '/'-separated
	Key    synkfs.Key `json:"key"`
	Reason string     `json:"reason"`
}

// Errors a Backend returns (wrapped) besides synkfs.ErrNotFound.
var (
	// ErrNotEmpty: a type folder still holds records.
	ErrNotEmpty = errors.New("type folder is not empty")
	// ErrExist: the name is taken.
	ErrExist = errors.New("already exists")
	// ErrInvalid: the name cannot be a type or a record.
	ErrInvalid = errors.New("not a valid name")
	// ErrReadOnly: the file or folder cannot be changed.
	ErrReadOnly = errors.New("read-only")
)

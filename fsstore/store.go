// Package fsstore is the journaled directory store: records as plain files
// <root>/<type>/<id>.json, with their versions, tombstones and metadata in
// the hidden state folder <root>/.synk/.
//
// # Layout
//
// A record's file holds its body, pretty-printed (merge.Pretty) with a
// trailing newline; its name is the escaped type and id (see EscapeName).
// Bodies are compared in canonical form, so reformatting a file is not a
// change. "type" and "id" inside a file must agree with its path; a
// "version" inside a file is ignored.
//
// The state folder holds the journal (.synk/journal/) and an index snapshot
// (.synk/index.zst): per key its version, tombstone flag and deletion time,
// and the size, mtime and content hash of the file the store last wrote;
// plus the store's epoch, version, floor and metadata. Opening a store loads
// the snapshot and replays the journal entries after it, without reading
// record files.
//
// # Durability
//
// Apply appends the whole batch to the journal (one group-committed fsync)
// before touching any record file, then writes each file to a temporary
// file in its folder and renames it into place, without fsync. Every
// CheckpointEvery batches (and on Close) the store flushes the files written
// since the last checkpoint, writes a new snapshot and drops the journal
// entries it covers. After a crash, Open replays the journal: replaying an
// entry rewrites the files from the journaled bodies, so the tree holds the
// last committed batch, whole. A consequence: an edit made by hand, after a
// crash and before the next Open, to a file that a replayed batch wrote is
// overwritten by the replay.
//
// # User edits
//
// Records are files that people edit. The store never reads a change from
// the tree by itself: ScanChanges reports edits, creations, deletions and
// bad entries (files that are not valid records) without changing anything,
// and the caller decides what to apply. Apply with ApplyOptions.Guard
// refuses to overwrite or delete a file that holds content the store did
// not write (see Dirty).
package fsstore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/journal"
)

// Names inside the root.
const (
	StateDir     = ".synk"
	journalDir   = "journal"
	snapshotName = "index.zst"
	tempPattern  = ".synk-*.tmp"
)

// Defaults for Options.
const (
	DefaultMaxRecordSize   = 1 << 20
	DefaultCheckpointEvery = 1024
	// checkpointBytes also triggers a checkpoint once this much has been
	// journaled since the last one.
	checkpointBytes = 64 << 20
)

// Options configure Open. The zero value and nil both work.
type Options struct {
	// FS is the file system under the store; nil means vfs.OS.
	FS vfs.FS
	// Logger receives recovery and housekeeping messages; nil means
	// slog.Default().
	Logger *slog.Logger
	// MaxRecordSize is the largest record file accepted, in bytes; a
	// bigger file is a bad entry and a bigger put is refused. 0 means
	// DefaultMaxRecordSize.
	MaxRecordSize int64
	// CheckpointEvery is the number of applied batches after which the
	// store checkpoints. 0 means DefaultCheckpointEvery.
	CheckpointEvery int
	// NoSync skips every fsync, trading durability for speed. For tests
	// and benchmarks only.
	NoSync bool
	// WriteBehind makes Apply return once the batch is durable in the
	// journal and applied to the index; a background writer then writes
	// the record files, in order, soon after. Reads of records whose
	// files are not written yet are served from memory; ScanChanges,
	// Dirty, ApplyWith with Guard, checkpoints and Close first wait for
	// the writer. Durability is unchanged (the journal replays after a
	// crash). Meant for a server, whose tree nobody edits; a replica,
	// whose user expects the files right away, leaves it off.
	WriteBehind bool
	// MaxBehind bounds the puts and deletes waiting for the writer; Apply
	// waits while it is exceeded. 0 means DefaultMaxBehind.
	MaxBehind int
}

// Store is the journaled directory store. It implements synkfs.Store.
// Apply and Compact are serialised; reads are safe for concurrent use with
// them and with each other.
type Store struct {
	root   string
	fs     vfs.FS
	log    *slog.Logger
	opts   Options
	ignore *Matcher
	j      *journal.Journal

	// applyMu serialises Apply, Compact, checkpoints and Close, and guards
	// the fields below it.
	applyMu      sync.Mutex
	broken       error // a failed apply left memory behind the journal
	pending      int   // batches since the last checkpoint
	pendingBytes int64

	// fileMu guards the file bookkeeping below, which whoever writes
	// record files (Apply, or the write-behind writer) and checkpoints
	// share.
	fileMu     sync.Mutex
	dirtyFiles map[string]struct{} // written since the last checkpoint
	dirtyDirs  map[string]struct{} // entries changed since the last checkpoint
	dirs       map[string]bool     // type folders known to exist

	behind *behind // nil without Options.WriteBehind

	// mu guards st and closed, and keeps readers from seeing a batch half
	// applied to the files: Apply holds it while it writes them.
	mu        sync.RWMutex
	st        *state
	closed    bool
	refreshed bool                        // index entries confirmed by a scan since the last checkpoint
	unwritten map[synkfs.Key]unwrittenPut // write-behind: puts not yet in files
}

var _ synkfs.Store = (*Store)(nil)

// Open opens the store at root, creating root and an empty store if there
// is none, and recovers from a crash by replaying the journal. Files under
// root that are not yet in the store (a folder of records from elsewhere)
// are not adopted: ScanChanges reports them as created.
func Open(root string, opts *Options) (*Store, error) {
	s := &Store{root: root}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.FS == nil {
		s.opts.FS = vfs.OS
	}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.Default()
	}
	if s.opts.MaxRecordSize <= 0 {
		s.opts.MaxRecordSize = DefaultMaxRecordSize
	}
	if s.opts.CheckpointEvery <= 0 {
		s.opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if s.opts.MaxBehind <= 0 {
		s.opts.MaxBehind = DefaultMaxBehind
	}
	s.unwritten = map[synkfs.Key]unwrittenPut{}
	s.fs, s.log = s.opts.FS, s.opts.Logger.With("store", root)
	s.dirtyFiles, s.dirtyDirs, s.dirs = map[string]struct{}{}, map[string]struct{}{}, map[string]bool{}
	if err := s.open(); err != nil {
		if s.j != nil {
			_ = s.j.Close()
		}
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	if s.opts.WriteBehind {
		s.behind = newBehind(s, s.opts.MaxBehind)
	}
	return s, nil
}

func (s *Store) open() error {
	stateDir := filepath.Join(s.root, StateDir)
	if err := s.fs.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	snapPath := filepath.Join(stateDir, snapshotName)
	data, err := s.fs.ReadFile(snapPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var b [16]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		s.st = &state{epoch: hex.EncodeToString(b[:]), meta: map[string][]byte{}, idx: newIndex()}
		// The snapshot comes first so a journal never exists without the
		// epoch it belongs to.
		if err := writeSnapshot(s.fs, snapPath, encodeSnapshot(s.st), s.opts.NoSync); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		if !s.opts.NoSync {
			if err := s.fs.SyncDir(s.root); err != nil {
				return err
			}
		}
	case err != nil:
		return fmt.Errorf("read index: %w", err)
	default:
		if s.st, err = decodeSnapshot(data); err != nil {
			return fmt.Errorf("index %s: %w", snapPath, err)
		}
	}
	s.removeTemps(stateDir, ".index-*.tmp")

	s.j, err = journal.Open(filepath.Join(stateDir, journalDir), &journal.Options{FS: s.fs, Logger: s.opts.Logger, NoSync: s.opts.NoSync})
	if err != nil {
		return err
	}
	// The entries are read first, then replayed: a record's file is
	// looked at and written only for the last entry that changes it
	// (see replayAll).
	var ops []replayOp
	touched := map[string]bool{}
	err = s.j.Replay(s.st.seq, func(seq uint64, data []byte) error {
		o, err := decodeOp(data)
		if err != nil {
			return fmt.Errorf("journal entry %d: %w", seq, err)
		}
		for _, r := range o.batch.Puts {
			touched[EscapeName(r.Type)] = true
		}
		for _, d := range o.batch.Deletes {
			touched[EscapeName(d.Type)] = true
		}
		ops = append(ops, replayOp{seq: seq, o: o})
		return nil
	})
	if err != nil {
		return err
	}
	// A guarded write or delete that the crash stopped may have left a
	// save under its record's swap name: put it back before the replay
	// looks at the records (see swap.go).
	if err := s.settleSwaps(ops); err != nil {
		return err
	}
	if err := s.replayAll(ops); err != nil {
		return err
	}
	replayed := len(ops)
	if replayed > 0 {
		// Temp files can only be left in folders the unfinished batches
		// wrote to.
		for dir := range touched {
			s.removeTemps(filepath.Join(s.root, dir), tempPattern)
		}
		s.log.Info("replayed journal", "entries", replayed, "version", s.st.version)
		if err := s.checkpoint(); err != nil {
			return fmt.Errorf("checkpoint after replay: %w", err)
		}
	}
	ig, err := s.fs.ReadFile(filepath.Join(s.root, IgnoreFile))
	if err == nil {
		m, perr := ParseIgnore(ig)
		if perr != nil {
			s.log.Warn("ignore file has malformed patterns", "err", perr)
		}
		s.ignore = m
	}
	return nil
}

// removeTemps removes leftover temporary files matching pattern in dir.
func (s *Store) removeTemps(dir, pattern string) {
	ents, err := s.fs.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if ok, _ := filepath.Match(pattern, e.Name()); ok && !e.IsDir() {
			if err := s.fs.Remove(filepath.Join(dir, e.Name())); err == nil {
				s.log.Info("removed leftover temporary file", "path", filepath.Join(dir, e.Name()))
			}
		}
	}
}

// Root returns the store's root folder.
func (s *Store) Root() string { return s.root }

// Matcher returns the ignore rules read from the root's .synkignore when the
// store was opened (nil: built-in rules only; a nil *Matcher works).
func (s *Store) Matcher() *Matcher { return s.ignore }

// Epoch returns the random id made when the store was created.
func (s *Store) Epoch() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.epoch
}

// Version returns the version of the last applied batch.
func (s *Store) Version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.version
}

// Floor returns the highest version whose tombstones may have been dropped.
func (s *Store) Floor() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.floor
}

// Count returns the number of live records.
func (s *Store) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.idx.live
}

// Meta returns a copy of the metadata value set for key.
func (s *Store) Meta(key string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.st.meta[key]
	return bytes.Clone(v), ok
}

// Lookup returns the version and tombstone state of k from the index.
func (s *Store) Lookup(k synkfs.Key) (synkfs.Change, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.st.idx.get(k)
	if !ok {
		return synkfs.Change{}, false
	}
	return e.change(k), true
}

func (e entry) change(k synkfs.Key) synkfs.Change {
	c := synkfs.Change{Record: synkfs.Record{Key: k, Version: e.Version}, Deleted: e.Deleted}
	if e.Deleted {
		c.Time = timeOf(e.DelTime)
	}
	return c
}

// Get reads k's file and returns the record with its canonical body. When
// the file holds an edit not yet applied, Get returns the edited body; when
// it is not a valid record, Get fails with the reason.
func (s *Store) Get(k synkfs.Key) (synkfs.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrClosed)
	}
	return s.read(k)
}

// read returns k's live record; s.mu must be held.
func (s *Store) read(k synkfs.Key) (synkfs.Record, error) {
	e, ok := s.st.idx.get(k)
	if !ok || e.Deleted {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, synkfs.ErrNotFound)
	}
	if body, ok := s.readUnwritten(k); ok {
		return synkfs.Record{Key: k, Version: e.Version, Body: body}, nil
	}
	rel, err := KeyPath(k)
	if err != nil {
		return synkfs.Record{}, err
	}
	data, err := s.readRecordFile(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return synkfs.Record{}, fmt.Errorf("get %s: file %s was removed: %w", k, rel, synkfs.ErrNotFound)
	}
	if err != nil {
		return synkfs.Record{}, fmt.Errorf("get %s: %w", k, err)
	}
	body, err := parseBody(data, k, s.opts.MaxRecordSize)
	if err != nil {
		return synkfs.Record{}, fmt.Errorf("get %s: %s: %w", k, rel, err)
	}
	return synkfs.Record{Key: k, Version: e.Version, Body: body}, nil
}

// Since calls fn for every record and tombstone with a version above v, in
// version order (keys in order within a version). fn runs without the
// store's lock held, so it may call the store; a batch applied meanwhile
// may or may not be seen, but every change passed to fn is consistent (its
// body is the one at its version).
func (s *Store) Since(v uint64, fn func(synkfs.Change) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("since %d: %w", v, synkfs.ErrClosed)
	}
	vks := s.st.idx.since(v)
	s.mu.Unlock()
	for _, vk := range vks {
		c, ok, err := s.changeAt(vk)
		if err != nil {
			return fmt.Errorf("since %d: %w", v, err)
		}
		if !ok {
			continue
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// changeAt returns vk's change if the key is still at that version.
func (s *Store) changeAt(vk verKey) (synkfs.Change, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return synkfs.Change{}, false, synkfs.ErrClosed
	}
	e, ok := s.st.idx.get(vk.key)
	if !ok || e.Version != vk.version {
		return synkfs.Change{}, false, nil
	}
	c := e.change(vk.key)
	if !e.Deleted {
		r, err := s.read(vk.key)
		if err != nil {
			return synkfs.Change{}, false, err
		}
		c.Record = r
	}
	return c, true, nil
}

// Scan returns up to limit live records with keys after `after`, in key
// order, reading their files.
func (s *Store) Scan(after synkfs.Key, limit int) ([]synkfs.Record, error) {
	s.mu.Lock() // sorting new keys in changes the index
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("scan: %w", synkfs.ErrClosed)
	}
	keys := s.st.idx.after(after, limit)
	out := make([]synkfs.Record, 0, len(keys))
	for _, k := range keys {
		r, err := s.read(k)
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Close checkpoints (so the next Open replays nothing) and releases the
// store. Later calls return ErrClosed; a second Close returns nil.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var err error
	if s.broken == nil && (s.pending > 0 || s.refreshed) {
		err = s.checkpoint()
	}
	if s.behind != nil {
		s.behind.close() // idle: the checkpoint drained it, or it failed
	}
	if jerr := s.j.Close(); err == nil {
		err = jerr
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.root, err)
	}
	return nil
}

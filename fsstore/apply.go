package fsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/merge"
	"golang.org/x/sys/unix"
)

// ApplyOptions change how ApplyWith treats the files it replaces.
type ApplyOptions struct {
	// Guard refuses the whole batch, with a *DirtyError, when a put would
	// replace or a delete would remove a file whose content the store did
	// not write: an edit not yet applied, a file created by hand, or a bad
	// entry (see Dirty). A put whose body equals the file's current body
	// is allowed: it adopts the edit. A replica sets Guard when it applies
	// what the server sent, so a user's unsynced edit is never lost; it
	// stages the edit (found by ScanChanges) and retries.
	Guard bool
	// Adopt does not write the put records' files: each put takes the
	// file as it is when its canonical body equals the put's body (its
	// size, mtime and hash go into the index, the bytes stay exactly as
	// the user wrote them); otherwise the file is left alone too and the
	// next scan reports what it holds. A replica stages a scanned edit
	// with it, so the user's file is not rewritten. The batch is
	// journaled like any other (its bodies replay after a crash). With
	// WriteBehind, an adopting batch is applied synchronously.
	Adopt bool
}

// DirtyError is returned by ApplyWith with Guard when files hold content
// the store did not write. Nothing was applied.
type DirtyError struct {
	Keys []synkfs.Key
}

func (e *DirtyError) Error() string {
	return fmt.Sprintf("%d record files hold unapplied edits, first %s", len(e.Keys), e.Keys[0])
}

// ErrDirty is wrapped by *DirtyError.
var ErrDirty = errors.New("record file holds an unapplied edit")

// Unwrap returns ErrDirty.
func (e *DirtyError) Unwrap() error { return ErrDirty }

// Apply commits b atomically and durably: see ApplyWith.
func (s *Store) Apply(ctx context.Context, b synkfs.Batch) error {
	return s.ApplyWith(ctx, b, ApplyOptions{})
}

// ApplyWith commits b: puts in order, then deletes, then metadata (a key
// named twice ends as the last of them). It returns once the batch is in
// the journal, durable, and applied to the files. Put bodies must be JSON
// objects; their "type" and "id", if present, must match the key; a
// "version" field is dropped. An invalid batch (bad key, name too long,
// bad body, record over MaxRecordSize, version below the store's) is
// refused whole, before anything is written.
//
// After a file system error while writing the record files, the store is
// broken: every later Apply fails, reads still work, and Recover (or
// reopening the store) replays the batch. ctx is honoured until the batch
// is handed to the journal; after that the batch completes.
func (s *Store) ApplyWith(ctx context.Context, b synkfs.Batch, o ApplyOptions) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("apply batch %d: %w", b.Version, err)
	}
	nb, err := s.prepare(b)
	if err != nil {
		return fmt.Errorf("apply batch %d: %w", b.Version, err)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := s.usable(); err != nil {
		return fmt.Errorf("apply batch %d: %w", b.Version, err)
	}
	if cur := s.Version(); b.Version < cur {
		return fmt.Errorf("apply batch %d onto version %d: %w", b.Version, cur, synkfs.ErrStaleVersion)
	}
	if o.Guard || (o.Adopt && s.behind != nil) {
		if err := s.settle(); err != nil {
			return fmt.Errorf("apply batch %d: %w", b.Version, err)
		}
	}
	if o.Guard {
		if err := s.guard(nb, o.Adopt); err != nil {
			return fmt.Errorf("apply batch %d: %w", b.Version, err)
		}
	}
	now := time.Now().UnixNano()
	data := encodeBatch(&nb, now)
	seq, err := s.j.Append(context.WithoutCancel(ctx), data)
	if err != nil {
		s.broken = err // the entry may or may not be durable
		return fmt.Errorf("apply batch %d: journal: %w", b.Version, err)
	}
	if s.behind != nil && !o.Adopt {
		s.applyMemory(&nb, seq, now)
		files := &synkfs.Batch{Version: nb.Version, Puts: nb.Puts, Deletes: nb.Deletes}
		if err := s.behind.push(behindJob{seq: seq, time: now, b: files}); err != nil {
			// Committed and readable; the files lag until Recover or a reopen.
			return fmt.Errorf("apply batch %d: committed, but the store is broken: %w", b.Version, err)
		}
		return s.afterCommit(len(data))
	}
	if err := s.apply(op{kind: opBatch, batch: nb, time: now, adopt: o.Adopt, guard: o.Guard}); err != nil {
		s.broken = err
		return fmt.Errorf("apply batch %d: %w", b.Version, err)
	}
	s.mu.Lock()
	s.st.seq = seq
	s.mu.Unlock()
	return s.afterCommit(len(data))
}

func (s *Store) usable() error {
	if err := s.closedErr(); err != nil {
		return err
	}
	if s.broken != nil {
		return fmt.Errorf("store failed earlier, recover or reopen it: %w", s.broken)
	}
	if s.behind != nil {
		if err := s.behind.failed(); err != nil {
			return fmt.Errorf("store failed earlier, recover or reopen it: %w", err)
		}
	}
	return nil
}

// prepare validates b and returns a copy with canonical bodies.
func (s *Store) prepare(b synkfs.Batch) (synkfs.Batch, error) {
	nb := synkfs.Batch{Version: b.Version, Puts: make([]synkfs.Record, len(b.Puts)), Deletes: append([]synkfs.Tombstone(nil), b.Deletes...)}
	for i, r := range b.Puts {
		if err := s.checkKey(r.Key); err != nil {
			return nb, err
		}
		body, err := canonicalBody(r)
		if err != nil {
			return nb, err
		}
		if n := int64(len(body)); n > s.opts.MaxRecordSize { // compact size; checked again pretty
			return nb, fmt.Errorf("record %s: body is %d bytes, over the %d byte limit", r.Key, n, s.opts.MaxRecordSize)
		}
		nb.Puts[i] = synkfs.Record{Key: r.Key, Version: r.Version, Body: body}
	}
	for _, d := range b.Deletes {
		if err := s.checkKey(d.Key); err != nil {
			return nb, err
		}
	}
	if b.Meta != nil {
		nb.Meta = make(map[string][]byte, len(b.Meta))
		for k, v := range b.Meta {
			if v != nil {
				v = append([]byte{}, v...)
			}
			nb.Meta[k] = v
		}
	}
	return nb, nil
}

// guard returns a *DirtyError if b would clobber content the store did not
// write. Adopted puts never write, so they clobber nothing.
func (s *Store) guard(b synkfs.Batch, adopt bool) error {
	var keys []synkfs.Key
	for _, r := range b.Puts {
		if adopt {
			break
		}
		if st := s.fileState(r.Key); st.dirty && !(st.valid && bytes.Equal(st.body, r.Body)) {
			keys = append(keys, r.Key)
		}
	}
	for _, d := range b.Deletes {
		if st := s.fileState(d.Key); st.dirty && st.exists {
			keys = append(keys, d.Key)
		}
	}
	if keys != nil {
		return &DirtyError{Keys: keys}
	}
	return nil
}

// apply applies one journal op to the files and the index. It is used both
// for new batches and for replay, so it must be idempotent: it rewrites
// every put from its body and tolerates deletes of missing files.
func (s *Store) apply(o op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o.kind {
	case opCompact:
		s.compactLocked(o.time)
		return nil
	case opBatch:
	default:
		return fmt.Errorf("unknown op %d", o.kind)
	}
	b := &o.batch
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	for _, r := range b.Puts {
		var e entry
		var err error
		switch {
		case o.adopt:
			e, err = s.adoptRecord(r)
		case o.guard:
			e, err = s.writeRecordIf(r, s.savedMeanwhile)
		default:
			e, err = s.writeRecord(r)
		}
		if err != nil {
			return err
		}
		s.st.idx.set(r.Key, e)
	}
	for _, d := range b.Deletes {
		var err error
		if o.guard {
			err = s.removeGuarded(d.Key)
		} else {
			err = s.removeRecord(d.Key)
		}
		if err != nil {
			return err
		}
		s.st.idx.set(d.Key, entry{Version: d.Version, Deleted: true, DelTime: o.time})
	}
	for k, v := range b.Meta {
		if v == nil {
			delete(s.st.meta, k)
		} else {
			s.st.meta[k] = v
		}
	}
	s.st.version = max(s.st.version, b.Version)
	return nil
}

// writeRecord writes r's file by temp file and rename, and returns its
// index entry.
func (s *Store) writeRecord(r synkfs.Record) (entry, error) {
	return s.writeRecordIf(r, nil)
}

// writeRecordIf is writeRecord, except that when keep is set, it is
// called once the new file is written, right before it replaces the
// record file: when it reports true, the file is left as it is, the new
// file is removed, and keep's entry is returned; and a save that lands
// after that look is not replaced either (see writeGuarded).
func (s *Store) writeRecordIf(r synkfs.Record, keep func(synkfs.Record) (entry, bool)) (entry, error) {
	rel, err := KeyPath(r.Key)
	if err != nil {
		return entry{}, err
	}
	data, err := merge.Pretty(r.Body)
	if err != nil {
		return entry{}, fmt.Errorf("record %s: %w", r.Key, err)
	}
	path, err := s.recordPath(rel)
	if err != nil {
		return entry{}, fmt.Errorf("record %s: %w", r.Key, err)
	}
	dir := filepath.Dir(path)
	if !s.dirs[dir] {
		if _, err := s.fs.Stat(dir); err != nil {
			if err := s.fs.MkdirAll(dir, 0o755); err != nil {
				return entry{}, err
			}
			s.dirtyDirs[s.root] = struct{}{}
		}
		s.dirs[dir] = true
	}
	if keep != nil {
		return s.writeGuarded(r, rel, path, data, keep)
	}
	f, err := s.createTemp(dir)
	if err != nil {
		return entry{}, err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	var fi fs.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, path)
	}
	if err != nil {
		_ = s.fs.Remove(tmp)
		return entry{}, fmt.Errorf("write %s: %w", rel, err)
	}
	s.dirtyFiles[path] = struct{}{}
	s.dirtyDirs[dir] = struct{}{}
	return entry{
		Version: r.Version,
		Size:    int64(len(data)),
		MTime:   fi.ModTime().UnixNano(),
		Checked: time.Now().UnixNano(),
		Hash:    bodyHash(r.Body),
	}, nil
}

// closedErr returns synkfs.ErrClosed once the store is closed. Unlike
// usable it needs no apply lock, so scans may call it while a batch or a
// Recover runs.
func (s *Store) closedErr() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return synkfs.ErrClosed
	}
	return nil
}

// createTemp creates a new temporary file in dir, named by tempPattern,
// with the mode any program's new file gets (0666 less the umask): a
// record file is the user's file, and os.CreateTemp's 0600 would hide it
// from the other users and tools that read the folder.
func (s *Store) createTemp(dir string) (vfs.File, error) {
	for range 100 {
		name := filepath.Join(dir, strings.Replace(tempPattern, "*", strconv.FormatUint(rand.Uint64(), 36), 1))
		f, err := s.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many name collisions", dir)
}

func (s *Store) removeRecord(k synkfs.Key) error {
	rel, err := KeyPath(k)
	if err != nil {
		return err
	}
	path, err := s.recordPath(rel)
	if err != nil {
		return fmt.Errorf("record %s: %w", k, err)
	}
	if err := s.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	delete(s.dirtyFiles, path)
	s.dirtyDirs[filepath.Dir(path)] = struct{}{}
	return nil
}

// afterCommit counts a committed journal entry and checkpoints when due.
func (s *Store) afterCommit(n int) error {
	s.pending++
	s.pendingBytes += int64(n)
	if s.pending < s.opts.CheckpointEvery && s.pendingBytes < checkpointBytes {
		return nil
	}
	if err := s.checkpoint(); err != nil {
		// The batch is committed; only housekeeping failed. Log it and
		// try again at the next commit.
		s.log.Warn("checkpoint failed", "err", err)
	}
	return nil
}

// syncfsThreshold: above this many dirty files a checkpoint flushes the
// whole file system with one syncfs(2) instead of one fsync per file.
const syncfsThreshold = 64

// checkpoint makes the files written since the last checkpoint durable,
// writes a snapshot of the index and drops the journal entries it covers.
// applyMu must be held.
func (s *Store) checkpoint() error {
	if err := s.settle(); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if !s.opts.NoSync {
		if err := s.flush(); err != nil {
			return fmt.Errorf("flush records: %w", err)
		}
	}
	s.mu.Lock()
	seq := s.st.seq
	data := encodeSnapshot(s.st)
	s.refreshed = false
	s.mu.Unlock()
	if err := writeSnapshot(s.fs, filepath.Join(s.root, StateDir, snapshotName), data, s.opts.NoSync); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	if err := s.j.Checkpoint(seq); err != nil {
		return fmt.Errorf("journal checkpoint: %w", err)
	}
	s.pending, s.pendingBytes = 0, 0
	clear(s.dirtyFiles)
	clear(s.dirtyDirs)
	return nil
}

// flush makes the dirty files and directory entries durable.
func (s *Store) flush() error {
	if len(s.dirtyFiles) > syncfsThreshold && s.fs == vfs.OS {
		d, err := os.Open(s.root)
		if err != nil {
			return err
		}
		defer d.Close()
		return unix.Syncfs(int(d.Fd()))
	}
	for path := range s.dirtyFiles {
		f, err := s.fs.OpenFile(path, os.O_RDONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed by a later batch
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for dir := range s.dirtyDirs {
		if err := s.fs.SyncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Compact drops tombstones written before t and raises Floor to the
// highest version dropped. It is journaled like a batch.
func (s *Store) Compact(ctx context.Context, before time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := s.usable(); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	t := before.UnixNano()
	s.mu.RLock()
	any := false
	for _, e := range s.st.idx.m {
		if e.Deleted && e.DelTime < t {
			any = true
			break
		}
	}
	s.mu.RUnlock()
	if !any {
		return nil
	}
	data := encodeCompact(t)
	seq, err := s.j.Append(context.WithoutCancel(ctx), data)
	if err != nil {
		s.broken = err
		return fmt.Errorf("compact: journal: %w", err)
	}
	s.apply(op{kind: opCompact, time: t}) // cannot fail
	s.mu.Lock()
	s.st.seq = seq
	s.mu.Unlock()
	return s.afterCommit(len(data))
}

func (s *Store) compactLocked(before int64) {
	x := s.st.idx
	for k, e := range x.m {
		if e.Deleted && e.DelTime < before {
			s.st.floor = max(s.st.floor, e.Version)
			x.remove(k)
		}
	}
}

func timeOf(ns int64) time.Time { return time.Unix(0, ns) }

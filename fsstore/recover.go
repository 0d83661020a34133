package fsstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/synkfs/synkfs"
)

// ErrNoSpace is wrapped by Broken's error when the disk is full (ENOSPC,
// EDQUOT), so callers can tell people what to do about it.
var ErrNoSpace = errors.New("no space left on the disk")

// Broken returns why Apply fails for good until Recover (or a reopen)
// succeeds: the file system error that interrupted an earlier Apply, a
// checkpoint or the journal. It returns nil while the store works.
func (s *Store) Broken() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	err := s.broken
	if err == nil && s.behind != nil {
		err = s.behind.failed()
	}
	if err != nil && isNoSpace(err) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Recover brings a broken store (see Broken) back into service without
// closing it, exactly as closing and reopening it would: it reopens the
// journal, reloads the last snapshot and replays the journal after it,
// which finishes the files of the batch that failed half-way (a file the
// user changed meanwhile is left alone, and the next scan reports it; see
// Open), then checkpoints. If the file system still fails, the store
// stays broken and Recover returns the error; call it again later. On a
// store that works it does nothing. Recover is safe to call concurrently
// with every other method; Apply waits for it.
//
// With WriteBehind, Recover first stops the background writer, abandoning
// the files it had not written yet (the replay writes them from the
// journal), and starts a new writer once the store works again. Reads keep
// working while the store is broken and while the writer stops, served
// from memory for the records whose files are not written; they wait only
// while the journal replays.
//
// After a successful Recover the store's metadata and index are what the
// journal holds, which may include the batch whose Apply failed: a caller
// that keeps state in the metadata must read it again.
func (s *Store) Recover() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return fmt.Errorf("recover store %s: %w", s.root, synkfs.ErrClosed)
	}
	if s.broken == nil && (s.behind == nil || s.behind.failed() == nil) {
		return nil
	}
	if s.behind != nil {
		// No Apply runs (applyMu), so nothing is queued meanwhile. The
		// writer finishes the file it is writing, if any, and stops; the
		// replay below writes whatever it left. It is stopped before s.mu
		// is taken: it takes s.mu itself.
		if s.broken == nil {
			s.broken = s.behind.failed()
		}
		s.behind.abandon(s.broken)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The files written since the last checkpoint are not flushed yet;
	// the checkpoint after the replay must flush them too.
	s.fileMu.Lock()
	n := &Store{
		root:       s.root,
		fs:         s.fs,
		log:        s.log,
		opts:       s.opts,
		unwritten:  map[synkfs.Key]unwrittenPut{},
		dirtyFiles: s.dirtyFiles,
		dirtyDirs:  s.dirtyDirs,
		dirs:       map[string]bool{},
	}
	s.fileMu.Unlock()
	_ = s.j.Close() // its error is the one that broke the store
	err := n.open()
	if err == nil {
		// Writing a snapshot proves that the disk takes writes again
		// before the store says it works (a replay checkpoints too;
		// the second one only rewrites the snapshot).
		err = n.checkpoint()
	}
	if err != nil {
		if n.j != nil {
			_ = n.j.Close()
		}
		s.broken = err
		return fmt.Errorf("recover store %s: %w", s.root, err)
	}
	s.fileMu.Lock()
	s.j, s.st = n.j, n.st // the ignore rules stay those read at Open
	s.dirtyFiles, s.dirtyDirs, s.dirs = n.dirtyFiles, n.dirtyDirs, n.dirs
	s.fileMu.Unlock()
	s.broken, s.pending, s.pendingBytes, s.refreshed = nil, 0, 0, false
	if s.behind != nil {
		// The replay wrote every file the old writer had not.
		s.unwritten = map[synkfs.Key]unwrittenPut{}
		s.behind.restart()
	}
	s.log.Info("recovered from an earlier failure", "version", s.st.version, "path", filepath.Clean(s.root))
	return nil
}

// isNoSpace reports whether err says the disk or the user's quota is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

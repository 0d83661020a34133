package fsstore

import (
	"io/fs"
	"math"
	"time"

	"github.com/synkfs/synkfs"
)

// Racily clean files.
//
// The store takes a file whose size and mtime equal what its index entry
// recorded as unchanged, without reading it. That is only sound for a file
// whose mtime is clearly older than the moment the entry was recorded: a
// file system stamps files from a coarse clock (a kernel tick of 1 to 10
// ms on Linux, whole seconds on some file systems, two on FAT), so a save
// of the same size in the same tick as the store's own write keeps the
// mtime, and the stat cannot tell the two apart.
//
// So each entry also remembers when its stat was recorded (Checked: just
// after the store wrote the file, or after a scan confirmed the content by
// hash). A file whose mtime is within racyWindow of that moment is
// "racily clean": its stat matching proves nothing, and it is confirmed by
// reading it and comparing the content hash. Once confirmed at a time
// clearly after its mtime, the entry's Checked moves forward and the file
// is trusted by its stat again: each file written by the store is read
// once more, by the first scan at least racyWindow after the write.
//
// The window is twice the granularity the file's mtime shows: a mtime in
// whole seconds means a file system that keeps seconds (FAT keeps two), so
// the window is 4 s; any other mtime gets 20 ms, twice the coarsest kernel
// tick. Clocks of network file systems that disagree with the local one by
// more than that are out of scope (use polling and a longer verify scan).
//
// Checked is not a field of the index snapshot: when a snapshot is
// written, an entry that is still racy is written with its mtime smudged
// (an impossible value), so that after a reopen its stat never matches and
// its first scan reads it; every other entry was confirmed before the
// snapshot, so on reopen Checked is taken as just past its racy window.

const (
	// racyFine is the racy window for file systems with sub-second mtimes.
	racyFine = 20 * time.Millisecond
	// racyCoarse is the racy window for mtimes in whole seconds.
	racyCoarse = 4 * time.Second
	// smudgedMTime marks an entry whose stat must not be trusted.
	smudgedMTime = math.MinInt64
)

// racyWindow returns the racy window for a file whose mtime is m (unix
// nanoseconds).
func racyWindow(m int64) int64 {
	if m%int64(time.Second) == 0 {
		return int64(racyCoarse)
	}
	return int64(racyFine)
}

// racy reports whether a file with mtime m, recorded at checked, may have
// been changed since without its stat showing it.
func racy(m, checked int64) bool {
	return m > checked-racyWindow(m)
}

// statClean reports whether fi proves the file still holds what e records:
// a regular file of the same size and mtime, recorded clearly after that
// mtime.
func statClean(e entry, fi fs.FileInfo) bool {
	m := fi.ModTime().UnixNano()
	return fi.Mode().IsRegular() && fi.Size() == e.Size && m == e.MTime && !racy(m, e.Checked)
}

// confirmed records that k's file, with stat fi, was read at checked and
// holds the body whose hash e has: the entry takes the file's stat, so
// later looks trust it (or, while racy, read it again). It changes nothing
// if k's entry moved on meanwhile. The refreshed entries are written with
// the next checkpoint (Close makes one).
func (s *Store) confirmed(k synkfs.Key, e entry, fi fs.FileInfo, checked int64) {
	m := fi.ModTime().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	cur, ok := s.st.idx.m[k]
	if !ok || cur.Deleted || cur.Version != e.Version || cur.Hash != e.Hash {
		return
	}
	if cur.Size == fi.Size() && cur.MTime == m && cur.Checked >= checked {
		return
	}
	cur.Size, cur.MTime, cur.Checked = fi.Size(), m, checked
	s.refreshed = true
}

// snapshotMTime is the mtime a snapshot written at now keeps for e: its
// own, or smudgedMTime while it is racy.
func snapshotMTime(e *entry, now int64) int64 {
	if e.Deleted || e.MTime == smudgedMTime {
		return e.MTime
	}
	if racy(e.MTime, min(e.Checked, now)) {
		return smudgedMTime
	}
	return e.MTime
}

// loadedChecked is the Checked of an entry read from a snapshot.
func loadedChecked(mtime int64) int64 {
	if mtime == smudgedMTime {
		return smudgedMTime
	}
	return mtime + racyWindow(mtime)
}

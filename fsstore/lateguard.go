package fsstore

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/synkfs/synkfs"
)

// Saves made while a guarded batch is applied.
//
// ApplyOptions.Guard looks at the batch's files before the batch is
// journaled; the journal's fsync and the writes of the files before it
// take time, during which the user may save one of them. Writing or
// removing that file then would lose the save without a trace. So a
// guarded batch looks at each file again right before it writes or
// removes it, as a journal replay does after a crash: the file is
// replaced only when it still holds what the index held before (or
// nothing); a file that holds the put's body is taken as it is; any other
// file (a save, a save half-way through, a file made by hand) is left
// alone, with an index entry that makes the next scan read it and report
// it against the batch's version: an edit of the put, or a creation over
// the tombstone. What is left is the instant between that look and the
// rename or remove (the put's temporary file is written before the look),
// rather than the whole apply.

// savedMeanwhile reports whether the guarded put r must not be written
// because its file changed since the guard looked at it, and returns the
// index entry to record instead. s.mu and s.fileMu must be held; it is
// called right before the put's rename.
func (s *Store) savedMeanwhile(r synkfs.Record) (entry, bool) {
	prev, had := s.st.idx.get(r.Key)
	prevLive := had && !prev.Deleted
	switch fi, exists := s.lstatRecord(r.Key); {
	case !exists:
		return entry{}, false // nothing there to lose
	case prevLive && fi != nil && statClean(prev, fi):
		return entry{}, false
	}
	d := s.onDisk(r.Key)
	want := bodyHash(r.Body)
	switch {
	case !d.exists:
		return entry{}, false // removed since the stat
	case d.valid && d.hash == want:
		// Already the put's body: take the file as it is. Its stat was
		// taken just before the read, so it stays racy until a scan.
		return entry{Version: r.Version, Size: d.size, MTime: d.mtime, Checked: time.Now().UnixNano(), Hash: want}, true
	case d.valid && prevLive && d.hash == prev.Hash:
		return entry{}, false // unchanged, only its stat moved
	}
	return entry{Version: r.Version, MTime: smudgedMTime, Checked: smudgedMTime, Hash: want}, true
}

// keepOnDelete reports whether the guarded delete of k must leave its
// file alone because it changed since the guard looked at it. s.mu and
// s.fileMu must be held.
func (s *Store) keepOnDelete(k synkfs.Key) bool {
	prev, had := s.st.idx.get(k)
	prevLive := had && !prev.Deleted
	switch fi, exists := s.lstatRecord(k); {
	case !exists:
		return false
	case prevLive && fi != nil && statClean(prev, fi):
		return false
	}
	d := s.onDisk(k)
	return d.exists && !(d.valid && prevLive && d.hash == prev.Hash)
}

// lstatRecord stats k's file without following a link; fi is nil when
// the stat failed other than by the file's absence.
func (s *Store) lstatRecord(k synkfs.Key) (fi fs.FileInfo, exists bool) {
	rel, err := KeyPath(k)
	if err != nil {
		return nil, false
	}
	fi, err = s.fs.Lstat(filepath.Join(s.root, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		return nil, true
	}
	return fi, true
}

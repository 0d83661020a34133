package fsstore

import (
	"path/filepath"
	"time"

	"github.com/synkfs/synkfs"
)

// Adopting a user's file.
//
// A replica stages a user's edit by applying it to the store, so that the
// edit is journaled with the replica's state. Writing it would rewrite the
// user's file (pretty-printed, with a new mtime) while it may be open in
// an editor. With ApplyOptions.Adopt a put is not written: when the file's
// canonical body equals the put's, the index takes the file's size, mtime
// and hash as they are; when it does not (the user saved again, or
// removed the file, since the scan that found the edit), the file is left
// alone and the index entry is marked so that the next scan reads the file
// and reports what it holds now.

// adoptRecord returns the index entry for put r under Adopt, reading the
// file in place. s.mu and s.fileMu must be held; the file is never
// written.
func (s *Store) adoptRecord(r synkfs.Record) (entry, error) {
	e := entry{Version: r.Version, MTime: smudgedMTime, Checked: smudgedMTime, Hash: bodyHash(r.Body)}
	rel, err := KeyPath(r.Key)
	if err != nil {
		return entry{}, err
	}
	path, err := s.recordPath(rel)
	if err != nil {
		return entry{}, err
	}
	fi, err := s.fs.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > s.opts.MaxRecordSize {
		return e, nil // not the put's body: the next scan tells
	}
	data, err := s.readRecordFile(rel)
	if err != nil {
		return e, nil
	}
	checked := time.Now().UnixNano()
	body, err := parseBody(data, r.Key, s.opts.MaxRecordSize)
	if err != nil || bodyHash(body) != e.Hash {
		return e, nil
	}
	// The stat taken before the read goes with the content read: a save
	// in between either changed the content (no match above) or keeps
	// this entry racy until a scan confirms it.
	e.Size, e.MTime, e.Checked = fi.Size(), fi.ModTime().UnixNano(), checked
	// The store now vouches for this file: the next checkpoint flushes it
	// before the journal entry that holds its body is dropped.
	s.dirtyFiles[path] = struct{}{}
	s.dirtyDirs[filepath.Dir(path)] = struct{}{}
	return e, nil
}

package fsstore

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"github.com/synkfs/synkfs"
)

// BadEntry is a file that looks like a record (a *.json file in a type
// folder) but is not a valid one. The store never syncs, deletes or
// overwrites it on its own; once the user fixes it, a scan reports it as an
// edit or a creation.
type BadEntry struct {
	Path   string     // relative to the root, '/'-separated
	Key    synkfs.Key // zero when the name does not unescape
	Reason string     // for people: "invalid JSON: ...", "not a JSON object", ...
}

// Report is what ScanChanges found: the differences between the record
// files and the index.
type Report struct {
	// Edited holds live records whose file now holds another body: Body is
	// the file's canonical body, Version the version the index has.
	Edited []synkfs.Record
	// Created holds files of keys the index has no live record for
	// (Version is 0, or the version of the tombstone they replace).
	Created []synkfs.Record
	// Deleted holds live records whose file is gone.
	Deleted []synkfs.Tombstone
	// Bad holds files that are not valid records.
	Bad []BadEntry
}

// Empty reports whether the scan found nothing.
func (r *Report) Empty() bool {
	return len(r.Edited)+len(r.Created)+len(r.Deleted)+len(r.Bad) == 0
}

// fileInfo is what a look at one record file found.
type fileInfo struct {
	exists bool
	valid  bool   // parsed as a record
	body   []byte // canonical, when valid
	dirty  bool   // differs from what the index says the store wrote
	reason string // when exists && !valid
}

// fileState looks at k's file and compares it with the index: first size
// and mtime, then, if they differ or the file is racily clean (see
// racy.go), the content hash of the canonical body.
// Callers hold applyMu or accept a racy answer.
func (s *Store) fileState(k synkfs.Key) fileInfo {
	s.mu.RLock()
	e, ok := s.st.idx.get(k)
	s.mu.RUnlock()
	live := ok && !e.Deleted
	rel, err := KeyPath(k)
	if err != nil {
		return fileInfo{}
	}
	path := filepath.Join(s.root, filepath.FromSlash(rel))
	fi, err := s.fs.Lstat(path) // a link is not a record file: never followed
	if errors.Is(err, fs.ErrNotExist) {
		return fileInfo{dirty: live}
	}
	if err != nil {
		return fileInfo{exists: true, dirty: true, reason: err.Error()}
	}
	if live && statClean(e, fi) {
		return fileInfo{exists: true, valid: true} // body not read
	}
	return s.examine(k, rel, e, live, fi)
}

// examine reads a record file whose stat does not prove it unchanged.
func (s *Store) examine(k synkfs.Key, rel string, e entry, live bool, fi fs.FileInfo) fileInfo {
	if !fi.Mode().IsRegular() {
		return fileInfo{exists: true, dirty: true, reason: "not a regular file"}
	}
	if fi.Size() > s.opts.MaxRecordSize {
		return fileInfo{exists: true, dirty: true, reason: fmt.Sprintf("file is %d bytes, over the %d byte limit", fi.Size(), s.opts.MaxRecordSize)}
	}
	data, err := s.readRecordFile(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return fileInfo{dirty: live}
	}
	if err != nil {
		return fileInfo{exists: true, dirty: true, reason: err.Error()}
	}
	body, err := parseBody(data, k, s.opts.MaxRecordSize)
	if err != nil {
		return fileInfo{exists: true, dirty: true, reason: err.Error()}
	}
	dirty := !live || bodyHash(body) != e.Hash
	if !dirty {
		// A touch, a reformat, or a racily clean file: trust its stat
		// from now on (or, while still racy, read it again next time).
		s.confirmed(k, e, fi, time.Now().UnixNano())
	}
	return fileInfo{exists: true, valid: true, body: body, dirty: dirty}
}

// Dirty reports whether k's file holds content the store did not write: an
// edit not yet applied, a file created or deleted by hand, or a bad entry.
// It is what ApplyOptions.Guard checks.
func (s *Store) Dirty(k synkfs.Key) bool {
	if err := s.settle(); err != nil {
		return true // the file may not hold what the store applied
	}
	return s.fileState(k).dirty
}

// ScanChanges walks the tree and reports every difference between the
// record files and the index (see Report), skipping ignored paths. It
// changes nothing on disk. Files whose size and mtime match the index are
// taken as unchanged without being read, unless they are racily clean
// (changed within the file system's timestamp granularity of when the
// store recorded them, see racy.go).
func (s *Store) ScanChanges() (Report, error) {
	var rep Report
	if err := s.closedErr(); err != nil {
		return rep, fmt.Errorf("scan changes: %w", err)
	}
	if err := s.settle(); err != nil {
		return rep, fmt.Errorf("scan changes: %w", err)
	}
	m := s.ignore
	tops, err := s.fs.ReadDir(s.root)
	if err != nil {
		return rep, fmt.Errorf("scan changes: %w", err)
	}
	seen := map[synkfs.Key]bool{}
	for _, top := range tops {
		if !top.IsDir() || m.IsIgnoredDir(top.Name()) {
			continue
		}
		ents, err := s.fs.ReadDir(filepath.Join(s.root, top.Name()))
		if err != nil {
			return rep, fmt.Errorf("scan changes: %w", err)
		}
		for _, ent := range ents {
			rel := top.Name() + "/" + ent.Name()
			if m.IsIgnored(rel) {
				continue
			}
			k, err := PathKey(rel)
			if err != nil {
				rep.Bad = append(rep.Bad, BadEntry{Path: rel, Reason: "file name is not an escaped record name: " + err.Error()})
				continue
			}
			seen[k] = true
			s.scanFile(&rep, k, rel)
		}
	}
	s.mu.RLock()
	for k, e := range s.st.idx.m {
		if e.Deleted || seen[k] {
			continue
		}
		rel, err := KeyPath(k)
		if err != nil || m.IsIgnored(rel) {
			continue // ignored after it was synced: not a deletion
		}
		rep.Deleted = append(rep.Deleted, synkfs.Tombstone{Key: k, Version: e.Version})
	}
	s.mu.RUnlock()
	slices.SortFunc(rep.Deleted, func(a, b synkfs.Tombstone) int { return a.Key.Compare(b.Key) })
	return rep, nil
}

func (s *Store) scanFile(rep *Report, k synkfs.Key, rel string) {
	s.mu.RLock()
	e, ok := s.st.idx.get(k)
	s.mu.RUnlock()
	live := ok && !e.Deleted
	fi, err := s.fs.Lstat(filepath.Join(s.root, filepath.FromSlash(rel)))
	if err != nil {
		return // gone since the directory was read
	}
	if live && statClean(e, fi) {
		return
	}
	st := s.examine(k, rel, e, live, fi)
	switch {
	case !st.exists:
	case !st.valid:
		rep.Bad = append(rep.Bad, BadEntry{Path: rel, Key: k, Reason: st.reason})
	case !st.dirty:
	case live:
		rep.Edited = append(rep.Edited, synkfs.Record{Key: k, Version: e.Version, Body: st.body})
	default:
		rep.Created = append(rep.Created, synkfs.Record{Key: k, Version: e.Version, Body: st.body})
	}
}

package fsstore

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/synkfs/synkfs"
)

// replayApply applies a journal entry found after the last checkpoint,
// when the store opens after a crash. The entry's files may or may not
// have been written before the crash, and the user may have edited them
// since (a folder is edited while no replica runs). A file is written
// only when it still holds what the index held before the entry (or
// nothing, or bytes that are not a record: a torn write); a file that
// already holds the entry's body only has its index entry refreshed; a
// file that holds anything else is the user's, and is left alone with an
// index entry that makes the next scan see the difference.
func (s *Store) replayApply(o op) error {
	if o.kind != opBatch {
		return s.apply(o)
	}
	type fix struct {
		k synkfs.Key
		e entry
	}
	var fixes []fix
	todo := o
	todo.batch.Puts, todo.batch.Deletes = nil, nil
	for _, r := range o.batch.Puts {
		d := s.onDisk(r.Key)
		prev, had := s.indexEntry(r.Key)
		prevLive := had && !prev.Deleted
		want := bodyHash(r.Body)
		switch {
		case d.valid && d.hash == want:
			fixes = append(fixes, fix{r.Key, entry{Version: r.Version, Size: d.size, MTime: d.mtime, Hash: want}})
		case !d.exists && prevLive, d.valid && !(prevLive && d.hash == prev.Hash):
			// Changed or removed by hand after the write: the zero size
			// and time never match a file, so a scan reads it.
			fixes = append(fixes, fix{r.Key, entry{Version: r.Version, Hash: want}})
		default:
			todo.batch.Puts = append(todo.batch.Puts, r)
		}
	}
	for _, t := range o.batch.Deletes {
		d := s.onDisk(t.Key)
		prev, had := s.indexEntry(t.Key)
		if d.valid && !(had && !prev.Deleted && d.hash == prev.Hash) {
			// Made again by hand after the delete: keep it.
			fixes = append(fixes, fix{t.Key, entry{Version: t.Version, Deleted: true, DelTime: o.time}})
			continue
		}
		todo.batch.Deletes = append(todo.batch.Deletes, t)
	}
	if err := s.apply(todo); err != nil {
		return err
	}
	s.mu.Lock()
	for _, f := range fixes {
		s.st.idx.set(f.k, f.e)
	}
	s.mu.Unlock()
	return nil
}

func (s *Store) indexEntry(k synkfs.Key) (entry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.idx.get(k)
}

// diskRecord is what a record's file holds.
type diskRecord struct {
	exists, valid bool
	hash          [hashLen]byte
	size, mtime   int64
}

func (s *Store) onDisk(k synkfs.Key) diskRecord {
	rel, err := KeyPath(k)
	if err != nil {
		return diskRecord{}
	}
	fi, err := s.fs.Lstat(filepath.Join(s.root, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return diskRecord{}
	}
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > s.opts.MaxRecordSize {
		return diskRecord{exists: true}
	}
	data, err := s.readRecordFile(rel)
	if err != nil {
		return diskRecord{exists: !errors.Is(err, fs.ErrNotExist)}
	}
	body, err := parseBody(data, k, s.opts.MaxRecordSize)
	if err != nil {
		return diskRecord{exists: true}
	}
	return diskRecord{exists: true, valid: true, hash: bodyHash(body), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

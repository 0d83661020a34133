package fsstore

import (
	"slices"
	"time"

	"github.com/synkfs/synkfs"
)

// EntryInfo is what the index knows of a live record's file, read without
// touching the file.
type EntryInfo struct {
	Key     synkfs.Key
	Version uint64
	// Size and Mtime are the file's as the store last wrote it, adopted
	// it or confirmed it by a scan. An edit made in the folder since is
	// not seen (ScanChanges reports it).
	Size  int64
	Mtime time.Time
	// Known is false when the index cannot vouch for Size and Mtime: an
	// entry whose stat was not recorded (an adopted put whose file did
	// not match, an entry still racy when its snapshot was written) or a
	// write-behind put whose file is not written yet. Stat the file then.
	Known bool
}

// info returns k's entry as an EntryInfo; s.mu must be held.
func (s *Store) info(k synkfs.Key, e *entry) EntryInfo {
	ei := EntryInfo{Key: k, Version: e.Version, Size: e.Size}
	if e.MTime != smudgedMTime {
		ei.Mtime = time.Unix(0, e.MTime)
		_, unwritten := s.unwritten[k]
		ei.Known = !unwritten
	}
	return ei
}

// Entry returns the index's word on k's file, without reading it: false
// when k has no live record (it never had one, or it is deleted) or the
// store is closed.
func (s *Store) Entry(k synkfs.Key) (EntryInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return EntryInfo{}, false
	}
	e, ok := s.st.idx.m[k]
	if !ok || e.Deleted {
		return EntryInfo{}, false
	}
	return s.info(k, e), true
}

// Entries returns the live records of type typ, in id order, as the index
// knows them (see Entry): a listing of the type's folder that reads no
// file. It returns nil for a closed store.
func (s *Store) Entries(typ string) []EntryInfo {
	s.mu.Lock() // sorting new keys in changes the index
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	x := s.st.idx
	keys := x.sortedKeys()
	i, _ := slices.BinarySearchFunc(keys, synkfs.Key{Type: typ}, synkfs.Key.Compare)
	var out []EntryInfo
	for ; i < len(keys) && keys[i].Type == typ; i++ {
		if e := x.m[keys[i]]; !e.Deleted {
			out = append(out, s.info(keys[i], e))
		}
	}
	return out
}

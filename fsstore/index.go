package fsstore

import (
	"cmp"
	"slices"

	"github.com/synkfs/synkfs"
)

// hashLen is the length of the content hash kept per record: a prefix of
// the SHA-256 of the canonical body, enough to tell an edit from a touch.
const hashLen = 16

// entry is what the index knows of one key without reading its file.
type entry struct {
	Version uint64
	Deleted bool
	DelTime int64 // unix nanoseconds when the tombstone was written
	Size    int64 // size of the record file as written by the store
	MTime   int64 // its modification time, unix nanoseconds
	// Checked is when Size and MTime were recorded (unix nanoseconds):
	// the stat proves nothing for a file changed within the racy window
	// of it (see racy.go). Not kept in snapshots.
	Checked int64
	Hash    [hashLen]byte
}

// verKey is one position in the version-ordered log.
type verKey struct {
	version uint64
	key     synkfs.Key
}

func cmpVerKey(a, b verKey) int {
	if c := cmp.Compare(a.version, b.version); c != 0 {
		return c
	}
	return a.key.Compare(b.key)
}

// index is the in-memory state of a store: every key it knows, a log of
// (version, key) for Since, and the keys in order for Scan. It is not safe
// for concurrent use; Store guards it.
//
// The version log is append-only between compactions: setting a key appends
// its new position and leaves the old one stale (an old position is live
// only while the key's entry still has that version). Since sorts the log
// when an out-of-order append made it unsorted, and drops stale positions
// when they outnumber live ones, so a call costs O(log n + changes) when
// versions arrive in order, as they do on a server.
type index struct {
	m      map[synkfs.Key]*entry
	live   int
	log    []verKey
	dirty  bool // log is not sorted
	sorted int  // log[:sorted] is sorted (the log as of the last tidy)
	stale  int  // stale positions in log

	keys       []synkfs.Key // every key in m, sorted once keysSorted
	keysSorted bool
}

func newIndex() *index {
	return &index{m: make(map[synkfs.Key]*entry), keysSorted: true}
}

// set records e for k.
func (x *index) set(k synkfs.Key, e entry) {
	old, ok := x.m[k]
	if ok {
		if !old.Deleted {
			x.live--
		}
		if old.Version == e.Version {
			*old = e
			if !e.Deleted {
				x.live++
			}
			return // same position in the log
		}
		x.stale++
		*old = e
	} else {
		ne := e
		x.m[k] = &ne
		x.keys = append(x.keys, k)
		if n := len(x.keys); n > 1 && x.keys[n-2].Compare(k) > 0 {
			x.keysSorted = false
		}
	}
	if !e.Deleted {
		x.live++
	}
	vk := verKey{e.Version, k}
	if n := len(x.log); n > 0 && cmpVerKey(x.log[n-1], vk) > 0 {
		x.dirty = true
	}
	x.log = append(x.log, vk)
}

// remove forgets k entirely (a compacted tombstone).
func (x *index) remove(k synkfs.Key) {
	e, ok := x.m[k]
	if !ok {
		return
	}
	if !e.Deleted {
		x.live--
	}
	delete(x.m, k)
	x.stale++
	x.keysSorted = false // sortedKeys drops k
}

func (x *index) get(k synkfs.Key) (entry, bool) {
	e, ok := x.m[k]
	if !ok {
		return entry{}, false
	}
	return *e, true
}

func (x *index) sortedKeys() []synkfs.Key {
	if !x.keysSorted {
		slices.SortFunc(x.keys, synkfs.Key.Compare)
		x.keys = slices.Compact(x.keys) // a key removed and set again
		kept := x.keys[:0]
		for _, k := range x.keys {
			if _, ok := x.m[k]; ok {
				kept = append(kept, k)
			}
		}
		clear(x.keys[len(kept):])
		x.keys = kept
		x.keysSorted = true
	}
	return x.keys
}

// tidy sorts the version log and drops stale positions when worthwhile.
// Positions appended since the last tidy are sorted on their own and, when
// they all come after the sorted part (a server's new versions), appended
// as they are; only otherwise is the whole log sorted.
func (x *index) tidy() {
	if x.stale > len(x.m) {
		kept := x.log[:0]
		for _, vk := range x.log {
			if e, ok := x.m[vk.key]; ok && e.Version == vk.version {
				kept = append(kept, vk)
			}
		}
		clear(x.log[len(kept):])
		x.log = kept
		x.stale = 0
		x.sorted = min(x.sorted, len(x.log))
		if !slices.IsSortedFunc(x.log[:x.sorted], cmpVerKey) {
			x.sorted = 0
		}
	}
	if x.dirty {
		tail := x.log[x.sorted:]
		slices.SortFunc(tail, cmpVerKey)
		from := max(x.sorted-1, 0) // where duplicates may now sit side by side
		if x.sorted > 0 && len(tail) > 0 && cmpVerKey(x.log[x.sorted-1], tail[0]) > 0 {
			slices.SortFunc(x.log, cmpVerKey)
			from = 0
		}
		c := slices.CompactFunc(x.log[from:], func(a, b verKey) bool { return cmpVerKey(a, b) == 0 })
		x.log = x.log[:from+len(c)]
		x.dirty = false
	}
	x.sorted = len(x.log)
}

// since returns the live positions with version above v, in version order.
func (x *index) since(v uint64) []verKey {
	x.tidy()
	i, _ := slices.BinarySearchFunc(x.log, v+1, func(a verKey, v uint64) int { return cmp.Compare(a.version, v) })
	var out []verKey
	for _, vk := range x.log[i:] {
		if e, ok := x.m[vk.key]; ok && e.Version == vk.version {
			if n := len(out); n > 0 && out[n-1] == vk {
				continue
			}
			out = append(out, vk)
		}
	}
	return out
}

// after returns up to limit live keys after k in key order (all when limit
// <= 0).
func (x *index) after(k synkfs.Key, limit int) []synkfs.Key {
	keys := x.sortedKeys()
	i, found := slices.BinarySearchFunc(keys, k, synkfs.Key.Compare)
	if found {
		i++
	}
	var out []synkfs.Key
	for ; i < len(keys) && (limit <= 0 || len(out) < limit); i++ {
		if !x.m[keys[i]].Deleted {
			out = append(out, keys[i])
		}
	}
	return out
}

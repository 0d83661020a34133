package fsstore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/merge"
)

// replayOp is a journal entry found after the last checkpoint.
type replayOp struct {
	seq uint64
	o   op
}

// replayAll replays the journal entries found after the last checkpoint,
// when the store opens after a crash (or Recover reopens it).
//
// A record's file is looked at, and written or removed, only for the
// last entry that changes the record; the entries before it change only
// the index. Replaying each entry's writes in turn would walk the file
// through bodies the user saw long ago: a file the user removed while no
// replica ran comes back (an older entry creates it), its removal is
// lost, and every write of the walk is one more moment at which a save
// made while the store opens is replaced. Earlier entries are not lost
// by this: the last entry's body supersedes them, and the bodies they
// wrote still count as the store's own (see replayApply), so a file
// left at any of them (a power loss undoes renames that were never
// flushed) is brought to the last body.
func (s *Store) replayAll(ops []replayOp) error {
	last := map[synkfs.Key]int{}
	for i, ro := range ops {
		for _, r := range ro.o.batch.Puts {
			last[r.Key] = i
		}
		for _, d := range ro.o.batch.Deletes {
			last[d.Key] = i
		}
	}
	own := map[synkfs.Key]map[[hashLen]byte]bool{}
	for i, ro := range ops {
		final := func(k synkfs.Key) bool { return last[k] == i }
		if err := s.replayApply(ro.o, final, own); err != nil {
			return fmt.Errorf("replay entry %d: %w", ro.seq, err)
		}
		s.st.seq = ro.seq
	}
	return nil
}

// replayApply applies a journal entry found after the last checkpoint
// (see replayAll). Records the entry does not change for the last time
// (final false) only have their index entries set. own collects, per
// record, the bodies the store held for it since the checkpoint.
//
// The entry's files may or may not have been written before the crash,
// and the user may have edited them since (a folder is edited while no
// replica runs). A file is written only when it holds a body of the
// store's own (what the index held before the entry, or an earlier body
// since the checkpoint), nothing, or a torn write of the store's own
// (see tornOwn); a file that already holds the entry's body only has its
// index entry refreshed; a file that holds anything else is the user's,
// and is left alone with an index entry that makes the next scan see the
// difference.
//
// Bytes that are not a record may also be a save under way: a replica
// killed and restarted at once replays while an editor is half-way
// through writing a file in place. Replacing that file by rename would
// send the rest of the save into a file no longer in the folder, and the
// edit would vanish without a trace. So such a file is left alone, unless
// it reads like a torn write of the entry's own body (empty, zeroes, or a
// prefix of the bytes the store writes): that one is moved into the
// recovery folder (see keepAside) before the body is written again, so a
// save that merely looks like one goes on into the copy and is kept.
func (s *Store) replayApply(o op, final func(synkfs.Key) bool, own map[synkfs.Key]map[[hashLen]byte]bool) error {
	if o.kind != opBatch {
		return s.apply(o)
	}
	type fix struct {
		k synkfs.Key
		e entry
	}
	var fixes, before []fix
	// noteOwn adds the body the index holds for k to k's own bodies.
	noteOwn := func(k synkfs.Key) map[[hashLen]byte]bool {
		m := own[k]
		if m == nil {
			m = map[[hashLen]byte]bool{}
			own[k] = m
		}
		if e, ok := s.indexEntry(k); ok && !e.Deleted {
			m[e.Hash] = true
		}
		return m
	}
	// stale: the file holds a body of the store's own, not the one
	// the index holds now; the index is set to it before the write, so
	// that the guard's last look takes the file as the store's.
	stale := func(k synkfs.Key, d diskRecord, prev entry, had bool) {
		if !had || prev.Deleted || prev.Hash != d.hash {
			before = append(before, fix{k, entry{Version: prev.Version, Size: d.size, MTime: d.mtime, Hash: d.hash}})
		}
	}
	todo := o
	todo.batch.Puts, todo.batch.Deletes = nil, nil
	for _, r := range o.batch.Puts {
		mine := noteOwn(r.Key)
		if !final(r.Key) {
			fixes = append(fixes, fix{r.Key, entry{Version: r.Version, Hash: bodyHash(r.Body)}})
			continue
		}
		d := s.onDisk(r.Key)
		prev, had := s.indexEntry(r.Key)
		prevLive := had && !prev.Deleted
		want := bodyHash(r.Body)
		switch {
		case d.valid && d.hash == want:
			fixes = append(fixes, fix{r.Key, entry{Version: r.Version, Size: d.size, MTime: d.mtime, Hash: want}})
		case !d.exists && prevLive, d.valid && !mine[d.hash],
			d.partial && !tornOwn(d.raw, r.Body):
			// Changed or removed by hand after the write, or a save under
			// way: the zero size and time never match a file, so a scan
			// reads it.
			fixes = append(fixes, fix{r.Key, entry{Version: r.Version, Hash: want}})
		case d.partial:
			if err := s.keepAside(r.Key); err != nil {
				return err
			}
			todo.batch.Puts = append(todo.batch.Puts, r)
		default:
			if d.valid {
				stale(r.Key, d, prev, had)
			}
			todo.batch.Puts = append(todo.batch.Puts, r)
		}
	}
	for _, t := range o.batch.Deletes {
		mine := noteOwn(t.Key)
		if !final(t.Key) {
			fixes = append(fixes, fix{t.Key, entry{Version: t.Version, Deleted: true, DelTime: o.time}})
			continue
		}
		d := s.onDisk(t.Key)
		if d.valid && !mine[d.hash] || d.partial && len(d.raw) > 0 {
			// Made again by hand after the delete (or being saved): keep it.
			fixes = append(fixes, fix{t.Key, entry{Version: t.Version, Deleted: true, DelTime: o.time}})
			continue
		}
		if d.valid {
			prev, had := s.indexEntry(t.Key)
			stale(t.Key, d, prev, had)
		}
		todo.batch.Deletes = append(todo.batch.Deletes, t)
	}
	s.mu.Lock()
	for _, f := range before {
		s.st.idx.set(f.k, f.e)
	}
	s.mu.Unlock()
	// What the looks above found may change before the writes: a save
	// may start meanwhile. The guard looks at each file again right
	// before it is replaced or removed (see lateguard.go).
	todo.guard = true
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
	partial       bool   // a regular file read whole that is not a record
	raw           []byte // its bytes, when partial
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
		return diskRecord{exists: true, partial: true, raw: data}
	}
	return diskRecord{exists: true, valid: true, hash: bodyHash(body), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// tornOwn reports whether raw, the bytes of a file that is not a record,
// may be what is left of the store's own write of body after a power
// loss: nothing, zeroes, or a prefix of the bytes it writes.
func tornOwn(raw, body []byte) bool {
	if len(bytes.Trim(raw, "\x00")) == 0 {
		return true
	}
	data, err := merge.Pretty(body)
	return err == nil && bytes.HasPrefix(data, raw)
}

// keepAside moves k's file into the recovery folder (see moveAside) as an
// invalid-local copy. A file already gone is no error.
func (s *Store) keepAside(k synkfs.Key) error {
	rel, err := KeyPath(k)
	if err != nil {
		return err
	}
	src, err := s.recordPath(rel)
	if err != nil {
		return err
	}
	return s.moveAside(k, src, "invalid-local")
}

// moveAside moves the file src, a file of record k, into the recovery
// folder, as .synk/recovery/<type>/<escaped id>.<time>.<why>.json (a
// counter added when taken), the layout a replica uses for the same kind
// of copy. The file is moved, not copied: a program still writing to it
// goes on writing into the copy. A file already gone is no error.
func (s *Store) moveAside(k synkfs.Key, src, why string) error {
	rel, err := KeyPath(k)
	if err != nil {
		return err
	}
	typ, file, _ := strings.Cut(rel, "/")
	stem := strings.TrimSuffix(file, Ext) + "." + time.Now().UTC().Format("20060102T150405") + "." + why
	var dst string
	for n := 1; ; n++ {
		name := stem + Ext
		if n > 1 {
			name = fmt.Sprintf("%s-%d%s", stem, n, Ext)
		}
		if dst, err = SafePath(s.root, StateDir+"/recovery/"+typ+"/"+name); err != nil {
			return fmt.Errorf("keep %s aside: %w", rel, err)
		}
		if _, err := s.fs.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err := s.fs.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("keep %s aside: %w", rel, err)
	}
	if err := s.fs.Rename(src, dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("keep %s aside: %w", rel, err)
	}
	s.dirtyDirs[filepath.Dir(dst)] = struct{}{}
	s.dirtyDirs[filepath.Dir(src)] = struct{}{}
	return nil
}

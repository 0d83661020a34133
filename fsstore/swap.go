package fsstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/synkfs/synkfs"
)

// Replacing a record file without losing a save that lands meanwhile.
//
// A guarded put or delete looks at the record's file first (lateguard.go)
// and replaces or removes it only if it holds what the store wrote. A
// look followed by a rename leaves an instant in which a save (an editor
// renaming its new file over the record) lands and is then replaced, with
// no copy anywhere. No second look closes that instant; an atomic swap
// does, because what is replaced is not destroyed but comes out under
// another name, where it can be checked after the fact:
//
//   - A put writes its file under the record's swap name (swapPath) and
//     exchanges it with the record file in one step (renameat2 with
//     RENAME_EXCHANGE). The file that came out, now under the swap name,
//     is what the put replaced: if it is the store's own (the body the
//     index holds, or the put's own), it is removed; otherwise it is a
//     save that landed after the look, and it goes back (restore) and the
//     put is recorded as a save made meanwhile, as when the look itself
//     finds one. When there is no file to exchange with, the put's file
//     goes in only if there still is none (RENAME_NOREPLACE); a file made
//     meanwhile is looked at again.
//   - A delete renames the record file to the swap name, then removes it
//     there only if it is the store's own; a save is put back.
//   - Putting a save back (restore) never replaces a save either: it goes
//     in only over nothing or over the store's own bytes, again by an
//     exchange whose outcome is checked; a save that cannot go back (a
//     newer one is in place) goes to the recovery folder.
//
// A crash can stop this between any two steps. The swap name is fixed per
// record, and the journal entry of the batch being applied is replayed
// when the store opens, so the opening store looks at the swap name of
// every record the replay touches, before the replay (settleSwaps): a
// file there that is the store's own (a body of the index or of the
// replayed entries, or a torn write of one) is removed, and anything else
// is a save and is put back as above; the replay then finds the save in
// place and leaves it to the next scan. So at any crash point the user's
// bytes are either at the record's name or in the recovery folder, and a
// body of the store's own is never left where the index takes it for the
// user's, nor a save where the index takes it for the store's.
//
// Where the file system cannot exchange or rename without replacing
// (renameat2 answers EINVAL on some file systems; other systems than
// Linux and macOS have neither), the store falls back to a plain rename
// after the look, as it did before: the instant between the look and the
// rename is open again there.

// swapPath returns the swap name of the record file path: in the same
// folder (a rename never crosses file systems), named like the store's
// temporary files (so scans, watchers and the mount never take it for a
// record), and the same for every write of the record, so that a store
// opening after a crash knows where to look.
func swapPath(path string) string {
	sum := sha256.Sum256([]byte(filepath.Base(path)))
	return filepath.Join(filepath.Dir(path), ".synk-"+hex.EncodeToString(sum[:12])+".swap.tmp")
}

// ownFunc reports whether what a file holds is the store's own: bytes the
// store may replace or remove without losing anything of the user's.
type ownFunc func(diskRecord) bool

// liveOwn returns the ownFunc of a guarded put or delete of k: the body
// the index holds for k, or, when want is set, the put's own body. s.mu
// must be held.
func (s *Store) liveOwn(k synkfs.Key, want *[hashLen]byte) ownFunc {
	prev, had := s.st.idx.get(k)
	prevLive := had && !prev.Deleted
	return func(d diskRecord) bool {
		return d.valid && (prevLive && d.hash == prev.Hash || want != nil && d.hash == *want)
	}
}

// savedEntry is the index entry of a put whose file was left to a save
// made meanwhile: its zero stat never matches a file, so the next scan
// reads the file and reports it against the put's version.
func savedEntry(version uint64, want [hashLen]byte) entry {
	return entry{Version: version, MTime: smudgedMTime, Checked: smudgedMTime, Hash: want}
}

// writeGuarded writes r's file (rel, at path, holding data) unless keep,
// looking at the file right before, refuses; and it never replaces a save
// that lands after that look (see the top of this file). s.mu and
// s.fileMu must be held.
func (s *Store) writeGuarded(r synkfs.Record, rel, path string, data []byte, keep func(synkfs.Record) (entry, bool)) (entry, error) {
	want := bodyHash(r.Body)
	own := s.liveOwn(r.Key, &want)
	swap, dir := swapPath(path), filepath.Dir(path)
	fi, err := s.writeSwap(r.Key, rel, path, swap, data, own)
	if err != nil {
		return entry{}, fmt.Errorf("write %s: %w", rel, err)
	}
	written := entry{Version: r.Version, Size: int64(len(data)), MTime: fi.ModTime().UnixNano(), Checked: time.Now().UnixNano(), Hash: want}
	for range 3 {
		if e, ok := keep(r); ok {
			_ = s.fs.Remove(swap) // the put's own body; a leftover is settled later
			return e, nil
		}
		err := s.fs.Exchange(swap, path)
		if err == nil {
			s.dirtyDirs[dir] = struct{}{}
			if own(s.diskAt(r.Key, swap)) {
				if err := s.fs.Remove(swap); err != nil {
					return entry{}, fmt.Errorf("write %s: remove the replaced file: %w", rel, err)
				}
				s.dirtyFiles[path] = struct{}{}
				return written, nil
			}
			// A save landed between the look and the exchange.
			if err := s.restore(r.Key, rel, path, swap, own); err != nil {
				return entry{}, err
			}
			s.log.Info("kept a save made while a change was written", "record", rel)
			return savedEntry(r.Version, want), nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			// No file to replace: the put's goes in only if there still
			// is none.
			err = s.fs.RenameNoReplace(swap, path)
			if errors.Is(err, fs.ErrExist) {
				continue // made since the look: look again
			}
		}
		if errors.Is(err, errors.ErrUnsupported) {
			// The file system cannot swap: replace the file the look
			// let through, as before the swap existed (see the top of
			// this file).
			err = s.fs.Rename(swap, path)
		}
		if err != nil {
			_ = s.fs.Remove(swap) // still the put's own body
			return entry{}, fmt.Errorf("write %s: %w", rel, err)
		}
		s.dirtyFiles[path] = struct{}{}
		s.dirtyDirs[dir] = struct{}{}
		return written, nil
	}
	// Files kept coming and going under the record's name: leave whatever
	// is there to the next scan.
	_ = s.fs.Remove(swap)
	return savedEntry(r.Version, want), nil
}

// writeSwap writes data to a new file at the swap name and returns its
// stat. A file already there (left by a cleanup that failed) is settled
// first.
func (s *Store) writeSwap(k synkfs.Key, rel, path, swap string, data []byte, own ownFunc) (fs.FileInfo, error) {
	f, err := s.fs.OpenFile(swap, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if errors.Is(err, fs.ErrExist) {
		if err := s.settleSwap(k, rel, path, swap, own); err != nil {
			return nil, err
		}
		f, err = s.fs.OpenFile(swap, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	}
	if err != nil {
		return nil, err
	}
	_, err = f.Write(data)
	var fi fs.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = s.fs.Remove(swap)
		return nil, err
	}
	return fi, nil
}

// removeGuarded removes k's file as a guarded delete: not when keepOnDelete,
// looking at it right before, refuses, and never a save that lands after
// that look (see the top of this file). s.mu and s.fileMu must be held.
func (s *Store) removeGuarded(k synkfs.Key) error {
	if s.keepOnDelete(k) {
		return nil
	}
	rel, err := KeyPath(k)
	if err != nil {
		return err
	}
	path, err := s.recordPath(rel)
	if err != nil {
		return fmt.Errorf("record %s: %w", k, err)
	}
	swap := swapPath(path)
	own := s.liveOwn(k, nil)
	if err := s.settleSwap(k, rel, path, swap, own); err != nil {
		return err
	}
	// Nothing is at the swap name now, so this rename replaces nothing.
	if err := s.fs.Rename(path, swap); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	delete(s.dirtyFiles, path)
	s.dirtyDirs[filepath.Dir(path)] = struct{}{}
	if own(s.diskAt(k, swap)) {
		if err := s.fs.Remove(swap); err != nil {
			return fmt.Errorf("remove %s: %w", rel, err)
		}
		return nil
	}
	// A save landed between the look and the rename.
	if err := s.restore(k, rel, path, swap, own); err != nil {
		return err
	}
	s.log.Info("kept a save made while a record was deleted", "record", rel)
	return nil
}

// settleSwap deals with a file at k's swap name, left by a guarded write
// or delete that a crash (or a failed cleanup) stopped half-way: the
// store's own bytes (own) are removed; anything else is a save, and is
// put back (restore).
func (s *Store) settleSwap(k synkfs.Key, rel, path, swap string, own ownFunc) error {
	d := s.diskAt(k, swap)
	if !d.exists {
		return nil
	}
	s.dirtyDirs[filepath.Dir(path)] = struct{}{}
	if own(d) {
		if err := s.fs.Remove(swap); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("record %s: remove a leftover: %w", rel, err)
		}
		return nil
	}
	s.log.Info("putting back a save found aside", "record", rel)
	return s.restore(k, rel, path, swap, own)
}

// restore puts the save at the swap name back at the record's name path:
// over nothing, or over bytes of the store's own (own), by an exchange
// whose outcome is checked like a put's. A save that cannot go back
// (another one is at path) goes to the recovery folder. Nothing of the
// user's is removed.
func (s *Store) restore(k synkfs.Key, rel, path, swap string, own ownFunc) error {
	s.dirtyDirs[filepath.Dir(path)] = struct{}{}
	for range 3 {
		err := s.fs.RenameNoReplace(swap, path)
		if errors.Is(err, errors.ErrUnsupported) {
			// Without an atomic rename that replaces nothing, a file
			// made at path between this look and the rename is
			// replaced (see the top of this file).
			if _, lerr := s.fs.Lstat(path); errors.Is(lerr, fs.ErrNotExist) {
				err = s.fs.Rename(swap, path)
			} else {
				err = fs.ErrExist
			}
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("record %s: put back a save: %w", rel, err)
		}
		if !own(s.diskAt(k, path)) {
			break // a newer save is in place
		}
		err = s.fs.Exchange(swap, path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // removed since the look: rename again
		case errors.Is(err, errors.ErrUnsupported):
			err = s.fs.Rename(swap, path) // over the store's own bytes
			if err != nil {
				return fmt.Errorf("record %s: put back a save: %w", rel, err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("record %s: put back a save: %w", rel, err)
		}
		if !own(s.diskAt(k, swap)) {
			break // a save landed at path meanwhile, and came out
		}
		if err := s.fs.Remove(swap); err != nil {
			return fmt.Errorf("record %s: remove the replaced file: %w", rel, err)
		}
		return nil
	}
	s.log.Warn("a save made while a change was applied is kept in the recovery folder", "record", rel)
	return s.moveAside(k, swap, "saved-meanwhile")
}

// settleSwaps settles the swap names of the records that the journal
// entries ops change (see settleSwap), before they are replayed: a crash
// leaves a file there only while such an entry is applied. The store's own
// bytes are the body the index held at the checkpoint, the bodies of the
// entries, and torn writes of those.
func (s *Store) settleSwaps(ops []replayOp) error {
	var keys []synkfs.Key
	bodies := map[synkfs.Key][][]byte{}
	note := func(k synkfs.Key, body []byte) {
		if _, ok := bodies[k]; !ok {
			keys = append(keys, k)
			bodies[k] = nil
		}
		if body != nil {
			bodies[k] = append(bodies[k], body)
		}
	}
	for _, ro := range ops {
		for _, r := range ro.o.batch.Puts {
			note(r.Key, r.Body)
		}
		for _, d := range ro.o.batch.Deletes {
			note(d.Key, nil)
		}
	}
	for _, k := range keys {
		rel, err := KeyPath(k)
		if err != nil {
			continue
		}
		path, err := s.recordPath(rel)
		if err != nil {
			continue
		}
		swap := swapPath(path)
		if _, err := s.fs.Lstat(swap); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		mine := map[[hashLen]byte]bool{}
		if e, ok := s.st.idx.get(k); ok && !e.Deleted {
			mine[e.Hash] = true
		}
		for _, b := range bodies[k] {
			mine[bodyHash(b)] = true
		}
		bs := bodies[k]
		own := func(d diskRecord) bool {
			if d.valid {
				return mine[d.hash]
			}
			for _, b := range bs {
				if d.partial && tornOwn(d.raw, b) {
					return true
				}
			}
			return false
		}
		if err := s.settleSwap(k, rel, path, swap, own); err != nil {
			return err
		}
	}
	return nil
}

// diskAt is onDisk for the file at path (a record's name or its swap
// name), read without following a link.
func (s *Store) diskAt(k synkfs.Key, path string) diskRecord {
	fi, err := s.fs.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return diskRecord{}
	}
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > s.opts.MaxRecordSize {
		return diskRecord{exists: true}
	}
	f, err := s.fs.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return diskRecord{exists: !errors.Is(err, fs.ErrNotExist)}
	}
	data, err := io.ReadAll(io.LimitReader(f, s.opts.MaxRecordSize+1))
	_ = f.Close()
	if err != nil {
		return diskRecord{exists: true}
	}
	body, err := parseBody(data, k, s.opts.MaxRecordSize)
	if err != nil {
		return diskRecord{exists: true, partial: true, raw: data}
	}
	return diskRecord{exists: true, valid: true, hash: bodyHash(body), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

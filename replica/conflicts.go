package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/merge"
)

// Conflict copies.
//
// When both sides changed a record and the strategy keeps both, the
// server's version stays at the record's path and the local version is
// written beside it as "<id>.conflict-<host>-<yyyymmddThhmmss>.json" (the id
// escaped as in record file names). A conflict copy is never a record: the
// replica never stages or sends it. It stays until the user deletes it or
// settles it with Resolve. A sidecar in .synk/conflicts/ keeps what the
// copy alone cannot tell: the key, the base and the server's body at the
// time.

// timeLayout is the time in conflict copy and recovery file names (UTC).
const timeLayout = "20060102T150405"

// IsConflictCopy reports whether the slash-separated path relative to the
// folder root names a conflict copy. The store's ignore rules skip such
// files, and no record's file name has their shape (see
// fsstore.IsConflictCopyName).
func IsConflictCopy(rel string) bool {
	return fsstore.IsConflictCopyName(path.Base(rel))
}

// parseConflictName returns the record id and the time a conflict copy's
// file name carries; ok is false for any other name, and for a path (a
// name with a '/', which IsConflictCopy would judge by its last element).
func parseConflictName(name string) (id string, t time.Time, ok bool) {
	if strings.ContainsRune(name, '/') {
		return "", time.Time{}, false
	}
	esc, _, stamp, ok := fsstore.ParseConflictCopyName(name)
	if !ok {
		return "", time.Time{}, false
	}
	id, err := fsstore.UnescapeName(esc)
	if err != nil {
		return "", time.Time{}, false
	}
	t, err = time.Parse(timeLayout, stamp)
	if err != nil {
		return "", time.Time{}, false
	}
	return id, t, true
}

// Conflict is one conflict copy kept beside a record.
type Conflict struct {
	Key synkfs.Key `json:"key"`
	// Path is the record's file, Copy the conflict copy's, both relative
	// to the folder root with '/' separators.
	Path string `json:"path"`
	Copy string `json:"copy"`
	// Time is when the conflict was found.
	Time time.Time `json:"time"`
	// Reason says why the copy was made, for people.
	Reason string `json:"reason,omitempty"`
	// Fields lists the fields changed on both sides to different values,
	// when known.
	Fields []string `json:"fields,omitempty"`
	// Base is the last body both sides agreed on (nil when unknown or the
	// record was new); Theirs is the server's body when the conflict was
	// found (nil when the server had deleted the record).
	Base          json.RawMessage `json:"base,omitempty"`
	Theirs        json.RawMessage `json:"theirs,omitempty"`
	TheirsDeleted bool            `json:"theirsDeleted,omitempty"`
}

// hostName returns the host name reduced to characters that are safe in a
// file name.
func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	h = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.':
			return r
		}
		return '_'
	}, h)
	if len(h) > 40 {
		h = h[:40]
	}
	return h
}

// writeConflictCopy writes ours beside the record of c.Key, records the
// sidecar, fills c.Path and c.Copy and returns the copy's path relative
// to root.
func writeConflictCopy(root string, c *Conflict, host string, ours []byte) error {
	rel, err := fsstore.KeyPath(c.Key)
	if err != nil {
		return err
	}
	pretty, err := merge.Pretty(ours)
	if err != nil {
		return fmt.Errorf("conflict copy of %s: %w", c.Key.Path(), err)
	}
	dir, file := path.Split(rel)
	stem := strings.TrimSuffix(file, fsstore.Ext) + ".conflict-" + host + "-" + c.Time.UTC().Format(timeLayout)
	copyRel := dir + stem + fsstore.Ext
	for n := 2; ; n++ {
		if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(copyRel))); errors.Is(err, os.ErrNotExist) {
			break
		}
		copyRel = fmt.Sprintf("%s%s-%d%s", dir, stem, n, fsstore.Ext)
	}
	c.Path, c.Copy = rel, copyRel
	side, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	// The sidecar first: a copy without a sidecar is still listed, but a
	// sidecar without its copy is ignored.
	if err := writeFileAtomic(root, sidecarRel(copyRel), side, 0o644); err != nil {
		return err
	}
	return writeFileAtomic(root, copyRel, pretty, 0o644)
}

// sidecarRel returns the path of a conflict copy's sidecar relative to
// the folder root.
func sidecarRel(copyRel string) string {
	return StateDir + "/" + conflictsDir + "/" + copyRel
}

// readSafe reads the file at rel under root by the store's confinement
// rules: no folder on the way and not the file itself may be a link.
func readSafe(root, rel string) ([]byte, error) {
	p, err := fsstore.SafePath(root, rel)
	if err != nil {
		return nil, err
	}
	return fsstore.ReadFileNoFollow(p)
}

// removeSafe removes the file at rel under root (a link in its place is
// removed, not its target), refusing a path through a linked folder.
func removeSafe(root, rel string) error {
	p, err := fsstore.SafePath(root, rel)
	if err != nil {
		return err
	}
	return os.Remove(p)
}

// pruneSidecars removes the sidecars whose conflict copy is gone (the user
// deleted it) and returns how many it removed. Errors are left for the
// next time: a leftover sidecar is never listed (ListConflicts lists
// copies), it only takes room.
func pruneSidecars(root string) int {
	base := filepath.Join(root, StateDir, conflictsDir)
	dirs, err := os.ReadDir(base)
	if err != nil {
		return 0
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(base, d.Name()))
		if err != nil {
			continue
		}
		left := len(files)
		for _, f := range files {
			copyRel := d.Name() + "/" + f.Name()
			if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(copyRel))); !errors.Is(err, os.ErrNotExist) {
				continue
			}
			if os.Remove(filepath.Join(base, d.Name(), f.Name())) == nil {
				n++
				left--
			}
		}
		if left == 0 {
			_ = os.Remove(filepath.Join(base, d.Name()))
		}
	}
	return n
}

// ListConflicts returns the conflict copies present in the folder at root,
// sorted by key and time. It reads files only, so it works while a sync
// runs and without one.
func ListConflicts(root string) ([]Conflict, error) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list conflicts: %w", err)
	}
	var out []Conflict
	for _, d := range dirs {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		typ, err := fsstore.UnescapeName(d.Name())
		if err != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("list conflicts: %w", err)
		}
		for _, f := range files {
			id, when, ok := parseConflictName(f.Name())
			if !ok || f.IsDir() {
				continue
			}
			copyRel := d.Name() + "/" + f.Name()
			c := Conflict{Key: synkfs.Key{Type: typ, ID: id}, Copy: copyRel}
			if data, err := readSafe(root, sidecarRel(copyRel)); err == nil {
				var side Conflict
				if json.Unmarshal(data, &side) == nil && side.Key == c.Key {
					c = side
					c.Copy = copyRel
				}
			}
			if c.Time.IsZero() {
				c.Time = when
			}
			c.Path, _ = fsstore.KeyPath(c.Key)
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Conflict) int {
		if a.Key != b.Key {
			if a.Key.Less(b.Key) {
				return -1
			}
			return 1
		}
		return a.Time.Compare(b.Time)
	})
	return out, nil
}

// ConflictsOf returns the conflict copies of one record, oldest first.
func ConflictsOf(root string, k synkfs.Key) ([]Conflict, error) {
	all, err := ListConflicts(root)
	if err != nil {
		return nil, err
	}
	var out []Conflict
	for _, c := range all {
		if c.Key == k {
			out = append(out, c)
		}
	}
	return out, nil
}

// Choice is how Resolve settles a conflict.
type Choice int

const (
	// Ours puts the newest conflict copy (the local version, as the user
	// may have edited it since) back at the record's path.
	Ours Choice = iota + 1
	// Theirs keeps what is at the record's path (the server's version).
	Theirs
	// Merged writes a body the user supplies at the record's path.
	Merged
)

// Resolve settles the conflicts of record k in the folder at root: it
// writes the chosen body at the record's path (for Ours and Merged) and
// moves every conflict copy of k into the recovery folder, so nothing is
// lost even then. merged is the body for Merged and must be a JSON object.
//
// Resolve works on files only: a running sync (or the next one) picks the
// new record file up as a local edit and sends it. It returns the record's
// path relative to root.
func Resolve(root string, k synkfs.Key, choice Choice, merged []byte) (string, error) {
	cs, err := ConflictsOf(root, k)
	if err != nil {
		return "", err
	}
	if len(cs) == 0 {
		return "", fmt.Errorf("no conflict copy of %s in %s", k.Path(), root)
	}
	var body []byte
	switch choice {
	case Ours:
		newest := cs[len(cs)-1]
		body, err = readSafe(root, newest.Copy)
		if err != nil {
			return "", fmt.Errorf("read conflict copy: %w", err)
		}
	case Merged:
		body = merged
	case Theirs:
	default:
		return "", errors.New("resolve: no choice given")
	}
	rel := cs[0].Path
	if body != nil {
		pretty, err := merge.Pretty(body)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %w", k.Path(), err)
		}
		if _, err := merge.CanonicalObject(body); err != nil {
			return "", fmt.Errorf("resolve %s: %w", k.Path(), err)
		}
		if err := writeFileAtomic(root, rel, pretty, 0o644); err != nil {
			return "", err
		}
	}
	for _, c := range cs {
		data, err := readSafe(root, c.Copy)
		if err == nil {
			if _, err := saveRecovery(root, c.Key, data, "resolved-copy", time.Now()); err != nil {
				return "", err
			}
		}
		if err := removeSafe(root, c.Copy); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("remove conflict copy: %w", err)
		}
		_ = removeSafe(root, sidecarRel(c.Copy))
	}
	return rel, nil
}

// saveRecovery keeps body, a version that lost a conflict, in
// .synk/recovery/<type>/<id>.<time>.<why>.json and returns that path.
func saveRecovery(root string, k synkfs.Key, body []byte, why string, now time.Time) (string, error) {
	rel, err := fsstore.KeyPath(k)
	if err != nil {
		return "", err
	}
	saved := recoveryRel(root, rel, why, now)
	if pretty, err := merge.Pretty(body); err == nil {
		body = pretty
	}
	if err := writeFileAtomic(root, saved, body, 0o644); err != nil {
		return "", fmt.Errorf("keep a recovery copy of %s: %w", k.Path(), err)
	}
	return filepath.Join(root, filepath.FromSlash(saved)), nil
}

// recoveryRel returns a free name for a recovery copy of the record file
// rel, relative to root: .synk/recovery/<type>/<id>.<time>.<why>.json,
// with a counter added when that name is taken.
func recoveryRel(root, rel, why string, now time.Time) string {
	dir, file := path.Split(rel)
	stem := strings.TrimSuffix(file, fsstore.Ext) + "." + now.UTC().Format(timeLayout) + "." + why
	base := StateDir + "/" + recoveryDir + "/" + dir
	p := base + stem + fsstore.Ext
	for n := 2; ; n++ {
		if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(p))); errors.Is(err, os.ErrNotExist) {
			return p
		}
		p = fmt.Sprintf("%s%s-%d%s", base, stem, n, fsstore.Ext)
	}
}

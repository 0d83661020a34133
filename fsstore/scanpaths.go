package fsstore

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/synkfs/synkfs"
)

// ScanPaths is ScanChanges limited to the given paths (relative to the
// root, '/'-separated), as a file watcher reports them: it looks only at
// those files, at a cost in proportion to their number rather than to the
// folder's. A path of a record file reports its edit, creation, deletion
// or bad entry; a path of a type folder (one component) reports every
// change inside it, as a full scan would, including records whose files
// went with a removed folder. Ignored and unknown paths, and duplicates,
// are skipped. Unlike ScanChanges, the Report's Bad lists only bad files
// among the given paths. It changes nothing on disk.
func (s *Store) ScanPaths(paths []string) (Report, error) {
	var rep Report
	if err := s.closedErr(); err != nil {
		return rep, fmt.Errorf("scan paths: %w", err)
	}
	if err := s.settle(); err != nil {
		return rep, fmt.Errorf("scan paths: %w", err)
	}
	m := s.ignore
	files := map[string]bool{}
	var dirs []string
	for _, p := range paths {
		p = path.Clean(strings.TrimPrefix(filepath.ToSlash(p), "/"))
		switch strings.Count(p, "/") {
		case 0:
			if p != "." && p != ".." && !m.IsIgnoredDir(p) && !slices.Contains(dirs, p) {
				dirs = append(dirs, p)
			}
		case 1:
			if !m.IsIgnored(p) {
				files[p] = true
			}
		}
	}
	for _, dir := range dirs {
		if err := s.scanDir(&rep, dir, files); err != nil {
			return rep, fmt.Errorf("scan paths: %w", err)
		}
	}
	rels := make([]string, 0, len(files))
	for rel, todo := range files {
		if todo {
			rels = append(rels, rel)
		}
	}
	slices.Sort(rels)
	for _, rel := range rels {
		s.scanPath(&rep, rel)
	}
	slices.SortFunc(rep.Deleted, func(a, b synkfs.Tombstone) int { return a.Key.Compare(b.Key) })
	return rep, nil
}

// scanPath reports what changed at the record file rel.
func (s *Store) scanPath(rep *Report, rel string) {
	k, err := PathKey(rel)
	if err != nil {
		if _, serr := s.fs.Lstat(filepath.Join(s.root, filepath.FromSlash(rel))); serr == nil {
			rep.Bad = append(rep.Bad, BadEntry{Path: rel, Reason: "file name is not an escaped record name: " + err.Error()})
		}
		return
	}
	_, err = s.fs.Lstat(filepath.Join(s.root, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		s.mu.RLock()
		e, ok := s.st.idx.get(k)
		s.mu.RUnlock()
		if ok && !e.Deleted {
			rep.Deleted = append(rep.Deleted, synkfs.Tombstone{Key: k, Version: e.Version})
		}
		return
	}
	s.scanFile(rep, k, rel)
}

// scanDir reports every change in the type folder dir, as ScanChanges
// would, and marks the files it covered as done in files.
func (s *Store) scanDir(rep *Report, dir string, files map[string]bool) error {
	m := s.ignore
	ents, err := s.fs.ReadDir(filepath.Join(s.root, dir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	seen := map[string]bool{}
	for _, ent := range ents {
		rel := dir + "/" + ent.Name()
		seen[rel] = true
		if files[rel] || m.IsIgnored(rel) {
			continue
		}
		files[rel] = false
		s.scanPath(rep, rel)
	}
	// Records of this folder whose files are gone (with the folder, or
	// removed while it was unwatched).
	s.mu.RLock()
	var gone []string
	for k, e := range s.st.idx.m {
		if e.Deleted || EscapeName(k.Type) != dir {
			continue
		}
		if rel, err := KeyPath(k); err == nil && !seen[rel] && !m.IsIgnored(rel) {
			if _, done := files[rel]; !done {
				gone = append(gone, rel)
			}
		}
	}
	s.mu.RUnlock()
	for _, rel := range gone {
		files[rel] = false
		s.scanPath(rep, rel)
	}
	return nil
}

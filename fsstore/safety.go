package fsstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/synkfs/synkfs"
)

// Confinement: a record name, whatever a server or a peer sends, never
// makes the store touch a file outside its root.
//
// KeyPath escapes '/', NUL and a leading '.', so an escaped name is always
// one plain path component; recordPath checks that again (so a future
// change to the escaping cannot open a hole) and refuses a type folder
// that is a symbolic link or not a folder: the store would otherwise write
// and delete files wherever the link points. The final component is never
// followed: a put replaces whatever is there by rename (which replaces a
// link rather than writing through it), and reads open it with O_NOFOLLOW,
// so a link planted in place of a record file is never read either (it is
// reported as a bad entry: not a regular file).
//
// Out of scope: a local user who can write into the synced folder can
// swap a folder for a link between the check and the write; such a user
// can edit the records anyway.

// ErrUnsafePath is wrapped by the errors of record paths that would leave
// the store's root.
var ErrUnsafePath = errors.New("record path would leave the synced folder")

// recordPath returns the file path of the record file at rel (as KeyPath
// returns it) after checking that it stays under the root: rel is
// "<type>/<name>" with two plain components, and the type folder, if it
// exists, is a real folder.
func (s *Store) recordPath(rel string) (string, error) {
	if err := checkRel(rel); err != nil {
		return "", err
	}
	dir, _, _ := strings.Cut(rel, "/")
	dirPath := filepath.Join(s.root, dir)
	fi, err := s.fs.Lstat(dirPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("record folder %s: %w", dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("record folder %s is a symbolic link: synkfs does not read or write records through links (replace it with a real folder): %w", dir, ErrUnsafePath)
	case !fi.IsDir():
		return "", fmt.Errorf("record folder %s is not a folder: %w", dir, ErrUnsafePath)
	}
	return filepath.Join(s.root, filepath.FromSlash(rel)), nil
}

// checkRel reports whether rel is exactly two plain, local path components.
func checkRel(rel string) error {
	dir, name, ok := strings.Cut(rel, "/")
	if !ok || !plainComponent(dir) || !plainComponent(name) || !filepath.IsLocal(filepath.FromSlash(rel)) {
		return fmt.Errorf("%q: %w", rel, ErrUnsafePath)
	}
	return nil
}

func plainComponent(c string) bool {
	return c != "" && c != "." && c != ".." && !strings.ContainsAny(c, "/\x00") && !strings.ContainsRune(c, os.PathSeparator)
}

// readRecordFile reads the record file at rel without following a link in
// its place or in its type folder's.
func (s *Store) readRecordFile(rel string) ([]byte, error) {
	path, err := s.recordPath(rel)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", rel)
	}
	return io.ReadAll(f)
}

// checkKey reports whether a record with key k can be written now: a
// valid, escapable key whose type folder is not a link. Apply checks every
// record with it before journaling, so a planted link refuses the batch
// instead of breaking the store.
func (s *Store) checkKey(k synkfs.Key) error {
	rel, err := KeyPath(k)
	if err != nil {
		return err
	}
	if _, err := s.recordPath(rel); err != nil {
		return fmt.Errorf("record %s: %w", k, err)
	}
	return nil
}

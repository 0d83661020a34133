package fsstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SafePath returns the file path of rel, a '/'-separated path relative
// to root, for a file that a program beside the store writes, reads or
// removes itself in the synced folder (conflict copies, recovery copies,
// sidecars), by the store's confinement rules: rel must be local (no
// absolute path, no "..", no empty or "." component), and every folder
// on the way below root must be a real folder, not a symbolic link nor
// anything else (one that does not exist yet is fine: the caller creates
// it). The errors wrap ErrUnsafePath.
//
// The last component is not checked: write it by renaming a temporary
// file over it (which replaces a link instead of writing through it),
// read it with ReadFileNoFollow, and remove it (which removes a link, not
// its target).
func SafePath(root, rel string) (string, error) {
	parts := strings.Split(rel, "/")
	for _, c := range parts {
		if !plainComponent(c) {
			return "", fmt.Errorf("%q: %w", rel, ErrUnsafePath)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", fmt.Errorf("%q: %w", rel, ErrUnsafePath)
	}
	dir := root
	for _, c := range parts[:len(parts)-1] {
		dir = filepath.Join(dir, c)
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return filepath.Join(root, filepath.FromSlash(rel)), nil // the rest does not exist either
		case err != nil:
			return "", fmt.Errorf("folder %s: %w", dir, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return "", fmt.Errorf("folder %s is a symbolic link: synkfs does not write through links (replace it with a real folder): %w", dir, ErrUnsafePath)
		case !fi.IsDir():
			return "", fmt.Errorf("%s is not a folder: %w", dir, ErrUnsafePath)
		}
	}
	return filepath.Join(root, filepath.FromSlash(rel)), nil
}

// ReadFileNoFollow reads the regular file at path without following a
// symbolic link in its place (where the system can tell): a link or
// anything else that is not a regular file is refused.
func ReadFileNoFollow(path string) ([]byte, error) {
	if fi, err := os.Lstat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: %w", path, ErrUnsafePath)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: %w", path, ErrUnsafePath)
	}
	return io.ReadAll(f)
}

package watch

import "path/filepath"

// absClean returns root as an absolute, clean path with symlinks in it
// resolved, so that event names can be matched against it by prefix.
func absClean(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	return filepath.Clean(abs), nil
}

package vfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// renamex renames with flags, naming the operation op in its error. A
// file system without the flag answers ENOTSUP (or EINVAL); both are
// reported as errors.ErrUnsupported.
func renamex(op, oldpath, newpath string, flags uint32) error {
	err := unix.RenamexNp(oldpath, newpath, flags)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		err = fmt.Errorf("%w: %w", errors.ErrUnsupported, err)
	}
	return &os.LinkError{Op: op, Old: oldpath, New: newpath, Err: err}
}

func (osFS) RenameNoReplace(o, n string) error { return renamex("rename", o, n, unix.RENAME_EXCL) }
func (osFS) Exchange(o, n string) error        { return renamex("exchange", o, n, unix.RENAME_SWAP) }

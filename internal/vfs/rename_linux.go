package vfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// renameat2 renames with flags, naming the operation op in its error. A
// file system without the flag answers EINVAL (older kernels ENOSYS, a
// few EOPNOTSUPP); all three are reported as errors.ErrUnsupported.
func renameat2(op, oldpath, newpath string, flags uint) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, flags)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		err = fmt.Errorf("%w: %w", errors.ErrUnsupported, err)
	}
	return &os.LinkError{Op: op, Old: oldpath, New: newpath, Err: err}
}

func (osFS) RenameNoReplace(o, n string) error {
	return renameat2("rename", o, n, unix.RENAME_NOREPLACE)
}

func (osFS) Exchange(o, n string) error {
	return renameat2("exchange", o, n, unix.RENAME_EXCHANGE)
}

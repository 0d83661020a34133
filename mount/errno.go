package mount

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"syscall"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
)

// errno turns an error from the Backend (or from the mount itself) into
// the errno the kernel gets. It is the only place that does: every node
// method returns errno(err). Unexpected errors become EIO and are logged,
// since the program on the other side sees only the number.
func errno(log *slog.Logger, op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	switch {
	case errors.As(err, &en):
		return en
	case errors.Is(err, synkfs.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, ErrExist), errors.Is(err, fs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, fsstore.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, synkfs.ErrClosed):
		return syscall.ESHUTDOWN
	}
	log.Error("mount operation failed", "op", op, "err", err)
	return syscall.EIO
}

package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const lockFile = "replica.lock"

// ErrBusy is wrapped by Open's error when another process already syncs
// the folder.
var ErrBusy = errors.New("another synkfs process is syncing this folder")

// lockFolder takes an exclusive lock on the folder's state, so that two
// processes never run a replica (and its store) on one folder at once.
// The kernel drops the lock when the process dies, even by kill -9.
func lockFolder(root string) (*os.File, error) {
	dir := filepath.Join(root, StateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		data, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil {
				return nil, fmt.Errorf("%w (pid %d)", ErrBusy, pid)
			}
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

package watch

import (
	"io/fs"
	"syscall"
)

// sysState returns the change time and inode number of fi.
func sysState(fi fs.FileInfo) (ctime int64, ino uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return st.Ctim.Nano(), st.Ino
}

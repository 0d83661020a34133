//go:build !linux

package watch

import "io/fs"

// sysState returns nothing outside Linux;
// polling then compares size and mtime only.
func sysState(fs.FileInfo) (ctime int64, ino uint64) { return 0, 0 }

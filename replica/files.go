package replica

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/synkfs/synkfs/fsstore"
)

// StateDir is the name of the state folder inside a synced folder; it is
// the store's, and the replica keeps its own files in subfolders of it.
const StateDir = fsstore.StateDir

// Subfolders of the state folder that the replica owns.
const (
	recoveryDir  = "recovery"  // losing bodies of server-wins and client-wins
	conflictsDir = "conflicts" // one sidecar per conflict copy
	statusFile   = "status.json"
)

// writeFileAtomic writes data to the file at rel ('/'-separated, relative
// to the folder root) by writing a temporary file in the same folder,
// syncing it and renaming it over the file, then syncing the folder: a
// reader sees the old file or the new one, never a mix, and after it
// returns the file survives a crash. Like the store, it never writes
// through a symbolic link nor outside root (see fsstore.SafePath).
func writeFileAtomic(root, rel string, data []byte, perm os.FileMode) error {
	return writeFile(root, rel, data, perm, true)
}

// writeFile is writeFileAtomic, with the syncs only when durable is set
// (a reader still never sees a mix).
func writeFile(root, rel string, data []byte, perm os.FileMode, durable bool) error {
	path, err := fsstore.SafePath(root, rel)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	// The temporary name starts with '.' and ends in .tmp, so neither the
	// store nor the watcher ever mistake it for a record.
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+hex.EncodeToString(rnd[:])+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		syncDir(dir)
	}
	return nil
}

// syncDir flushes a folder's entries; errors are ignored because some file
// systems cannot sync a folder, and the data itself was already synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

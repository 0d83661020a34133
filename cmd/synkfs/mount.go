package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/mount"
)

// mountCmd is `synkfs mount`. The lead wires it into cli with:
//
//	Mount mountCmd `cmd:"" help:"Mount the records as a file system (FUSE)."`
type mountCmd struct {
	// TODO(follow-up): with --server, open a replica.Replica over the
	// state folder, run it with a client.Client, and mount it through its
	// mount.Backend implementation instead of mount.StoreBackend.
	Server     string `help:"URL of the synkfs server (not wired yet: the mount is local only for now)." env:"SYNKFS_SERVER"`
	State      string `help:"Folder keeping the records and what is staged (default: under the user's data folder, one per mountpoint)." type:"path"`
	Mountpoint string `arg:"" help:"An empty folder to mount the records on." type:"path"`
}

func (c *mountCmd) Run(e *env) error {
	state := c.State
	if state == "" {
		var err error
		if state, err = defaultMountState(c.Mountpoint); err != nil {
			return err
		}
	}
	if c.Server != "" {
		return &codeError{exitUsage, errors.New("mount --server is not available yet; use 'synkfs sync --server URL DIR' on a plain folder")}
	}
	st, err := fsstore.Open(state, &fsstore.Options{Logger: e.log})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			e.log.Error("close the store", "err", err)
		}
	}()
	b, err := mount.NewStoreBackend(st, 0)
	if err != nil {
		return err
	}
	srv, err := mount.Mount(c.Mountpoint, b, &mount.Options{Matcher: st.Matcher(), Logger: e.log})
	if errors.Is(err, mount.ErrNoFUSE) {
		return fmt.Errorf("%w\nFUSE cannot be used here; keep a plain folder in sync instead: synkfs sync DIR", err)
	}
	if err != nil {
		return err
	}
	e.log.Info("mounted", "mountpoint", c.Mountpoint, "state", state)
	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	select {
	case <-e.ctx.Done():
		e.log.Info("unmounting", "mountpoint", c.Mountpoint)
	case <-unmounted:
		e.log.Info("unmounted from outside", "mountpoint", c.Mountpoint)
	}
	if err := srv.Unmount(); err != nil {
		return err
	}
	<-unmounted
	return nil
}

// defaultMountState is the state folder of a mountpoint:
// $XDG_DATA_HOME/synkfs/mounts/<hash of the absolute mountpoint>, with
// ~/.local/share when XDG_DATA_HOME is unset.
func defaultMountState(mountpoint string) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", err
	}
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --state given and no home folder: %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(base, "synkfs", "mounts", hex.EncodeToString(sum[:8])), nil
}

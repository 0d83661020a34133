package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/mount"
	"github.com/synkfs/synkfs/replica"
)

// mountCmd is `synkfs mount`: the records of a state folder as a FUSE
// file system. With --server, the same sync engine as `synkfs sync` keeps
// the state folder in sync, and the mount saves into it.
type mountCmd struct {
	Server     string        `help:"URL of the synkfs server to sync with (default: none, the records stay local)." env:"SYNKFS_SERVER" placeholder:"URL"`
	OnConflict string        `help:"How to settle a record changed on both sides (as for sync)." enum:"merge,keep-both,server-wins,client-wins" default:"merge"`
	State      string        `help:"Folder keeping the records and what is staged (default: under the user's data folder, one per mountpoint)." type:"path"`
	SaveDelay  time.Duration `help:"How long a record file written through the mount must be quiet and closed before it is saved (an fsync saves at once; unsaved writes are lost on kill -9)." default:"300ms" placeholder:"DURATION"`
	Mountpoint string        `arg:"" help:"An empty folder to mount the records on." type:"path"`
	connFlags  `embed:""`
}

func (c *mountCmd) Run(e *env) error {
	state := c.State
	if state == "" {
		var err error
		if state, err = defaultMountState(c.Mountpoint); err != nil {
			return err
		}
	}
	if c.Server == "" {
		st, err := fsstore.Open(state, &fsstore.Options{Logger: e.log})
		if err != nil {
			return err
		}
		defer closeLogged(e, "close the store", st.Close)
		b, err := mount.NewStoreBackend(st, 0)
		if err != nil {
			return err
		}
		return c.serve(e, b, st.Matcher(), state)
	}

	strategy, err := replica.ParseStrategy(c.OnConflict)
	if err != nil {
		return &codeError{exitUsage, err}
	}
	url := serverURL(c.Server)
	opts := client.Options{URL: url, Logger: e.log}
	if err := c.connFlags.apply(&opts); err != nil {
		return &codeError{exitUsage, err}
	}
	var b *mount.StoreBackend // set before the replica runs
	events := newEventLog(e.log)
	defer events.Close()
	r, err := replica.Open(state, &replica.Options{
		OnConflict: strategy,
		Logger:     e.log,
		OnEvent: func(ev replica.Event) {
			events.event(ev)
			b.ReplicaEvent(ev)
		},
	})
	if err != nil {
		return err
	}
	defer closeLogged(e, "close the state folder", r.Close)
	r.SetServer(url)
	if b, err = mount.NewEngineBackend(r.Store(), mount.ReplicaEngine(r), 0); err != nil {
		return err
	}
	opts.ClientID = r.ClientID()
	cl := client.New(opts, r)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, cl) }()
	e.log.Info("syncing", "state", state, "server", url, "on_conflict", string(strategy))
	err = c.serve(e, b, r.Store().Matcher(), state)
	cancel()
	if rerr := <-done; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = rerr
	}
	return err
}

// serve mounts b and waits for a signal or an unmount from outside.
func (c *mountCmd) serve(e *env, b mount.Backend, m *fsstore.Matcher, state string) error {
	srv, err := mount.Mount(c.Mountpoint, b, &mount.Options{Matcher: m, Logger: e.log, SaveDelay: c.SaveDelay})
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

func closeLogged(e *env, what string, close func() error) {
	if err := close(); err != nil {
		e.log.Error(what, "err", err)
	}
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

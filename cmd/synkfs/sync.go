package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/replica"
)

type syncCmd struct {
	Server         string `help:"URL of the synkfs server." default:"ws://127.0.0.1:8080" env:"SYNKFS_SERVER"`
	OnConflict     string `help:"How to settle a record changed on both sides: merge (fields, falling back to keep-both), keep-both (a conflict copy beside the record), server-wins or client-wins (the loser is kept in .synk/recovery/)." enum:"merge,keep-both,server-wins,client-wins" default:"merge"`
	Once           bool   `help:"Push what is staged, pull what is new, and exit (0 when in sync, 3 when the server cannot be reached)."`
	ConfirmDeletes bool   `help:"Let one sweep delete more than half of the folder's records everywhere (the mass-delete guard holds such deletes back otherwise)."`
	Dir            string `arg:"" help:"The folder to keep in sync (<type>/<id>.json files)." type:"path"`
	connFlags      `embed:""`
}

func (c *syncCmd) Run(e *env) error {
	strategy, err := replica.ParseStrategy(c.OnConflict)
	if err != nil {
		return &codeError{exitUsage, err}
	}
	url := serverURL(c.Server)
	opts := client.Options{URL: url, Logger: e.log}
	if err := c.connFlags.apply(&opts); err != nil {
		return &codeError{exitUsage, err}
	}
	bar := newProgress(e.stderr)
	events := newEventLog(e.log)
	defer events.Close()
	r, err := replica.Open(c.Dir, &replica.Options{
		OnConflict:     strategy,
		ConfirmDeletes: c.ConfirmDeletes,
		Logger:         e.log,
		OnEvent:        events.event,
		OnProgress:     bar.progress,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := r.Close(); err != nil {
			e.log.Error("close the folder", "err", err)
		}
	}()
	r.SetServer(url)
	opts.ClientID = r.ClientID()
	cl := client.New(opts, r)

	if !c.Once {
		e.log.Info("syncing", "dir", r.Root(), "server", url, "on_conflict", string(strategy))
		return r.Run(e.ctx, cl)
	}
	err = r.SyncOnce(e.ctx, cl)
	st := r.Status()
	if err != nil {
		var se *client.ServerError
		if errors.As(err, &se) && se.Permanent() {
			return fmt.Errorf("the server at %s refused us: %s (%d changes stay staged)", url, se.Message, len(st.Staged))
		}
		return &codeError{exitNoServer, fmt.Errorf("cannot reach the server at %s: %v\nnothing was lost: %d local changes stay staged and are sent by the next sync", url, err, len(st.Staged))}
	}
	if st.PausedDeletes > 0 {
		fmt.Fprintf(e.stderr, "synkfs: %d deleted records were held back by the mass-delete guard; run 'synkfs sync --confirm-deletes %s' to delete them everywhere\n", st.PausedDeletes, c.Dir)
	}
	for _, b := range st.Bad {
		fmt.Fprintf(e.stderr, "synkfs: not synced: %s: %s\n", b.Path, b.Reason)
	}
	for _, q := range st.Quarantined {
		fmt.Fprintf(e.stderr, "synkfs: refused by the server: %s: %s: %s\n", q.Key.Path(), q.Code, q.Message)
	}
	if len(st.Conflicts) > 0 {
		fmt.Fprintf(e.stderr, "synkfs: %d conflict copies to look at: synkfs conflicts %s\n", len(st.Conflicts), c.Dir)
	}
	fmt.Fprintf(e.stdout, "in sync: %d records at version %d\n", st.Records, st.LocalVersion)
	return nil
}

// serverURL accepts host:port and http(s) URLs as well as ws(s) URLs.
func serverURL(s string) string {
	switch {
	case strings.HasPrefix(s, "ws://"), strings.HasPrefix(s, "wss://"):
		return s
	case strings.HasPrefix(s, "http://"):
		return "ws://" + strings.TrimPrefix(s, "http://")
	case strings.HasPrefix(s, "https://"):
		return "wss://" + strings.TrimPrefix(s, "https://")
	}
	return "ws://" + s
}

// progress draws a progress bar for a long initial sync when w is a
// terminal, and does nothing otherwise (scripts and logs stay quiet).
type progress struct {
	bar     *progressbar.ProgressBar
	started bool
}

// progressFrom is the number of records after which the bar appears, so
// that a small sync does not flash one.
const progressFrom = 1000

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("initial sync"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionShowIts(),
		progressbar.OptionClearOnFinish(),
	)}
}

func (p *progress) progress(n, total int, done bool) {
	if p.bar == nil || (!p.started && n < progressFrom) {
		return
	}
	p.started = true
	if total > 0 && total >= n && p.bar.GetMax() != total {
		p.bar.ChangeMax(total) // a figure with an end: percent and time left
	}
	_ = p.bar.Set(n)
	if done {
		_ = p.bar.Finish()
	}
}

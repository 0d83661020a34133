package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/synkfs/synkfs/replica"
)

type statusCmd struct {
	JSON bool   `help:"Print the status as JSON."`
	Dir  string `arg:"" help:"The synced folder." type:"path"`
}

func (c *statusCmd) Run(e *env) error {
	if _, err := os.Stat(filepath.Join(c.Dir, replica.StateDir)); err != nil {
		return fmt.Errorf("%s is not a synced folder (no %s inside): start one with 'synkfs sync %s'", c.Dir, replica.StateDir, c.Dir)
	}
	st, ok, err := replica.ReadStatus(c.Dir)
	if err != nil {
		return err
	}
	if !ok || !alive(st.PID) {
		st.Connection = "not running"
	}
	if c.JSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(e.stdout, st, ok, time.Now())
	return nil
}

// alive reports whether a process with that id runs.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

func printStatus(w io.Writer, st *replica.Status, ok bool, now time.Time) {
	fmt.Fprintf(w, "folder:     %s\n", st.Dir)
	if !ok {
		fmt.Fprintln(w, "never synced")
	} else {
		conn := st.Connection
		if st.LastError != "" && st.Connection != "connected" {
			conn += " (" + st.LastError + ")"
		}
		fmt.Fprintf(w, "server:     %s, %s\n", st.Server, conn)
		fmt.Fprintf(w, "versions:   local %d, server %d\n", st.LocalVersion, st.ServerVersion)
		fmt.Fprintf(w, "records:    %d\n", st.Records)
		if st.Watch != "" {
			fmt.Fprintf(w, "watching:   %s\n", st.Watch)
		}
		fmt.Fprintf(w, "updated:    %s ago\n", ago(now, st.Updated))
		if st.Disk != "" {
			fmt.Fprintf(w, "disk:       %s\n", st.Disk)
		}
	}
	fmt.Fprintf(w, "staged:     %d\n", len(st.Staged))
	for _, s := range st.Staged {
		what := "change"
		if s.Deleted {
			what = "delete"
		}
		sent := ""
		if s.Batch != 0 {
			sent = fmt.Sprintf(", sent in batch %d", s.Batch)
		}
		fmt.Fprintf(w, "  %s %s, pending for %s%s\n", what, s.Key.Path(), ago(now, s.Since), sent)
	}
	if st.PausedDeletes > 0 {
		fmt.Fprintf(w, "held back:  %d deletes (mass-delete guard; run synkfs sync --confirm-deletes to apply them)\n", st.PausedDeletes)
	}
	fmt.Fprintf(w, "conflicts:  %d\n", len(st.Conflicts))
	for _, c := range st.Conflicts {
		fmt.Fprintf(w, "  %s: your version is in %s\n", c.Key.Path(), c.Copy)
	}
	if len(st.Quarantined) > 0 {
		fmt.Fprintf(w, "refused:    %d (by the server, for good; edit the file to try again)\n", len(st.Quarantined))
		for _, q := range st.Quarantined {
			fmt.Fprintf(w, "  %s: %s: %s\n", q.Key.Path(), q.Code, q.Message)
		}
	}
	if len(st.Refused) > 0 {
		fmt.Fprintf(w, "skipped:    %d records from the server that this folder cannot hold\n", len(st.Refused))
		for _, r := range st.Refused {
			fmt.Fprintf(w, "  %s: %s\n", r.Key.Path(), r.Reason)
		}
	}
	if len(st.Bad) > 0 {
		fmt.Fprintf(w, "bad files:  %d (not synced until fixed)\n", len(st.Bad))
		for _, b := range st.Bad {
			fmt.Fprintf(w, "  %s: %s\n", b.Path, b.Reason)
		}
	}
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}

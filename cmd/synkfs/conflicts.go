package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/replica"
)

type conflictsCmd struct {
	List    conflictsListCmd    `cmd:"" default:"withargs" help:"List the conflict copies in a synced folder."`
	Show    conflictsShowCmd    `cmd:"" help:"Show a field-level diff of base, local and server versions of a record."`
	Resolve conflictsResolveCmd `cmd:"" help:"Settle a record's conflict: keep ours, theirs, or a merged file."`
}

type conflictsListCmd struct {
	Dir string `arg:"" help:"The synced folder." type:"path"`
}

func (c *conflictsListCmd) Run(e *env) error {
	cs, err := replica.ListConflicts(c.Dir)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		fmt.Fprintln(e.stdout, "no conflicts")
		return nil
	}
	for _, x := range cs {
		reason := x.Reason
		if reason == "" {
			reason = "conflict"
		}
		fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", x.Key.Path(), x.Copy, reason)
	}
	return nil
}

type conflictsShowCmd struct {
	Dir    string `arg:"" help:"The synced folder." type:"path"`
	Record string `arg:"" help:"The record, as TYPE/ID."`
}

func (c *conflictsShowCmd) Run(e *env) error {
	k, err := parseRecordArg(c.Record)
	if err != nil {
		return err
	}
	cs, err := replica.ConflictsOf(c.Dir, k)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		return fmt.Errorf("no conflict for %s in %s", k.Path(), c.Dir)
	}
	theirs, err := os.ReadFile(filepath.Join(c.Dir, filepath.FromSlash(cs[0].Path)))
	deleted := errors.Is(err, os.ErrNotExist)
	if err != nil && !deleted {
		return err
	}
	if deleted {
		theirs = []byte("{}")
	}
	for _, x := range cs {
		ours, err := os.ReadFile(filepath.Join(c.Dir, filepath.FromSlash(x.Copy)))
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: local version in %s, server version in %s", k.Path(), x.Copy, x.Path)
		if deleted {
			fmt.Fprint(e.stdout, " (deleted on the server)")
		}
		fmt.Fprintln(e.stdout)
		if x.Reason != "" {
			fmt.Fprintf(e.stdout, "  %s\n", x.Reason)
		}
		diffs, err := merge.Diff(x.Base, ours, theirs)
		if err != nil {
			return fmt.Errorf("compare %s: %w", x.Copy, err)
		}
		if err := merge.FormatDiff(e.stdout, diffs); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "settle it with: synkfs conflicts resolve %s %s --ours | --theirs | --merged FILE\n", c.Dir, c.Record)
	return nil
}

type conflictsResolveCmd struct {
	Dir    string `arg:"" help:"The synced folder." type:"path"`
	Record string `arg:"" help:"The record, as TYPE/ID."`
	Ours   bool   `help:"Keep the local version (the conflict copy, as you may have edited it)." xor:"choice" required:""`
	Theirs bool   `help:"Keep the server's version (what is at the record's path)." xor:"choice" required:""`
	Merged string `help:"Use the JSON object in FILE." type:"existingfile" placeholder:"FILE" xor:"choice" required:""`
}

func (c *conflictsResolveCmd) Run(e *env) error {
	k, err := parseRecordArg(c.Record)
	if err != nil {
		return err
	}
	choice := replica.Theirs
	var body []byte
	switch {
	case c.Ours:
		choice = replica.Ours
	case c.Merged != "":
		choice = replica.Merged
		if body, err = os.ReadFile(c.Merged); err != nil {
			return err
		}
	}
	rel, err := replica.Resolve(c.Dir, k, choice, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "resolved %s: %s holds the chosen version; the conflict copies are kept in %s/recovery/\n", k.Path(), rel, replica.StateDir)
	return nil
}

// parseRecordArg reads TYPE/ID (the id may hold further slashes).
func parseRecordArg(s string) (synkfs.Key, error) {
	t, id, ok := strings.Cut(s, "/")
	k := synkfs.Key{Type: t, ID: strings.TrimSuffix(id, ".json")}
	if !ok || k.Validate() != nil {
		return synkfs.Key{}, &codeError{exitUsage, fmt.Errorf("record %q: want TYPE/ID", s)}
	}
	return k, nil
}

package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/synkfs/synkfs/auth"
)

// tokenCmd manages a server's token file.
type tokenCmd struct {
	Add    tokenAddCmd    `cmd:"" help:"Add a token to a token file and print its secret (once)."`
	List   tokenListCmd   `cmd:"" help:"List the tokens of a token file (names, roles, types; never secrets)."`
	Remove tokenRemoveCmd `cmd:"" help:"Remove (revoke) a token from a token file; a running server closes its connections within seconds."`
}

type tokenAddCmd struct {
	Tokens string `help:"The token file (created if missing, mode 0600)." type:"path" required:"" placeholder:"FILE"`
	Name   string `help:"A name for the token, unique in the file (e.g. the machine or person using it)." required:""`
	Role   string `help:"read-only (pull only) or read-write." enum:"read-only,read-write" required:""`
	Types  string `help:"Comma-separated record types the token may see and write; others are invisible to it (default: all)." placeholder:"A,B"`
}

// Run adds the token and prints its secret alone on stdout, so that
// 'synkfs token add ... > laptop.token' makes the client's token file.
func (c *tokenAddCmd) Run(e *env) error {
	role, err := auth.ParseRole(c.Role)
	if err != nil {
		return &codeError{exitUsage, err}
	}
	var types []string
	for t := range strings.SplitSeq(c.Types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			types = append(types, t)
		}
	}
	secret, err := auth.Add(c.Tokens, c.Name, role, types, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, secret)
	fmt.Fprintf(e.stderr, "synkfs: added token %q (%s) to %s; the secret above is shown only now: save it in a file of mode 0600 and give the client --token-file FILE\n", c.Name, role, c.Tokens)
	return nil
}

type tokenListCmd struct {
	Tokens string `help:"The token file." type:"path" required:"" placeholder:"FILE"`
}

func (c *tokenListCmd) Run(e *env) error {
	set, err := auth.Load(c.Tokens)
	if err != nil {
		return err
	}
	for _, t := range set.Tokens() {
		types := "all types"
		if t.Limited() {
			types = strings.Join(t.Types, ",")
		}
		fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", t.Name, t.Role, types)
	}
	return nil
}

type tokenRemoveCmd struct {
	Tokens string `help:"The token file." type:"path" required:"" placeholder:"FILE"`
	Name   string `arg:"" optional:"" help:"The name of the token to remove (as 'synkfs token list' shows it)."`
	Flag   string `name:"name" help:"The name of the token to remove, as a flag like 'token add' takes it." placeholder:"NAME"`
}

// Run removes the token. A 'synkfs serve --tokens FILE' running on the
// file reloads it within seconds and closes the token's connections.
func (c *tokenRemoveCmd) Run(e *env) error {
	name := c.Name
	switch {
	case c.Name == "" && c.Flag == "":
		return &codeError{exitUsage, errors.New("token remove: name the token to remove: 'synkfs token remove --tokens FILE NAME'")}
	case c.Name != "" && c.Flag != "" && c.Name != c.Flag:
		return &codeError{exitUsage, fmt.Errorf("token remove: two names given, %q and --name %q", c.Name, c.Flag)}
	case name == "":
		name = c.Flag
	}
	if err := auth.Remove(c.Tokens, name); err != nil {
		if errors.Is(err, auth.ErrNoToken) {
			return fmt.Errorf("%w ('synkfs token list --tokens %s' shows the names)", err, c.Tokens)
		}
		return err
	}
	fmt.Fprintf(e.stderr, "synkfs: removed token %q from %s; a 'synkfs serve --tokens %s' running now closes its connections within a few seconds and refuses it from then on\n", name, c.Tokens, c.Tokens)
	if set, err := auth.Load(c.Tokens); err == nil && set.Len() == 0 {
		fmt.Fprintf(e.stderr, "synkfs: %s has no tokens left: a running server now refuses every client, and serve will not start with it until a token is added\n", c.Tokens)
	}
	return nil
}

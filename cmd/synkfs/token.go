package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/synkfs/synkfs/auth"
)

// tokenCmd manages a server's token file.
type tokenCmd struct {
	Add  tokenAddCmd  `cmd:"" help:"Add a token to a token file and print its secret (once)."`
	List tokenListCmd `cmd:"" help:"List the tokens of a token file (names, roles, types; never secrets)."`
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

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/pgstore"
	"github.com/synkfs/synkfs/server"
)

type serveCmd struct {
	Listen             string        `help:"Address to listen on." default:"127.0.0.1:8080"`
	Data               string        `help:"Keep the records in this folder as <type>/<id>.json files (default: in memory, lost on exit)." type:"path" placeholder:"DIR" xor:"store"`
	Postgres           string        `help:"Keep the records in this PostgreSQL database (a postgres:// URL or key=value string), which several serve instances may share." placeholder:"URL" env:"SYNKFS_POSTGRES" xor:"store"`
	Strict             bool          `help:"Drop writes from original synk clients that were based on an older version of a record, instead of letting the last writer win."`
	TombstoneRetention time.Duration `help:"Keep delete markers this long; replicas away for longer take a full resync." default:"720h"`
	AddrFile           string        `help:"Write the address actually listened on to this file once ready (useful with --listen 127.0.0.1:0)." type:"path" placeholder:"FILE"`

	securityFlags `embed:""`
}

func (c *serveCmd) Run(e *env) error {
	store, what, err := c.openStore(e)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			e.log.Error("close store", "err", err)
		}
	}()

	opts := &server.Options{
		Logger:             e.log,
		Strict:             c.Strict,
		TombstoneRetention: c.TombstoneRetention,
	}
	tlsConf, err := c.securityFlags.apply(e, c.Listen, opts)
	if err != nil {
		return err
	}
	srv := server.New(store, opts)
	stopTokens := c.securityFlags.watchTokens(e, srv) // --tokens: reload on change and SIGHUP
	defer stopTokens()
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server running there? choose another address with --listen)", c.Listen, err)
	}
	addr := ln.Addr().String()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConf}
	scheme := "ws://"
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "wss://"
	}

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	e.log.Info("synkfs serve ready", "url", scheme+addr+"/", "store", what,
		"epoch", store.Epoch(), "version", store.Version(), "records", store.Count())
	if c.AddrFile != "" {
		if err := os.WriteFile(c.AddrFile, []byte(addr+"\n"), 0o644); err != nil {
			return fmt.Errorf("write --addr-file: %w", err)
		}
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-e.ctx.Done():
	}
	e.log.Info("shutting down: draining clients")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(srv.Shutdown(ctx), hs.Shutdown(ctx))
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// postgresOpenTimeout bounds connecting to the database and migrating
// its schema at start.
const postgresOpenTimeout = 30 * time.Second

func (c *serveCmd) openStore(e *env) (synkfs.Store, string, error) {
	if c.Postgres != "" {
		ctx, cancel := context.WithTimeout(e.ctx, postgresOpenTimeout)
		defer cancel()
		s, err := pgstore.Open(ctx, c.Postgres, nil)
		if err != nil {
			return nil, "", fmt.Errorf("open the PostgreSQL store: %w (check --postgres: the server must be reachable and the user allowed to create tables)", err)
		}
		return s, "postgres " + redactURL(c.Postgres), nil
	}
	if c.Data == "" {
		return memstore.New(), "memory (lost on exit; use --data DIR to keep it)", nil
	}
	// Record files are written behind the journal: a batch is durable
	// (and acknowledged) once journaled; a restart replays the journal.
	s, err := fsstore.Open(c.Data, &fsstore.Options{Logger: e.log, WriteBehind: true})
	if err != nil {
		return nil, "", fmt.Errorf("open data folder %s: %w", c.Data, err)
	}
	return s, c.Data, nil
}

// redactURL returns a database URL fit for logs: its password hidden.
// Strings that are not URLs (key=value settings) are shown only by name.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "(settings string)"
	}
	return u.Redacted()
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// securityFlags are serve's flags for who may connect and how much each
// connection may do. docs/SECURITY.md explains each.
type securityFlags struct {
	Tokens           string        `help:"Require a bearer token from every client; FILE lists the tokens (hashes only), see 'synkfs token add'; it is reloaded when it changes and on SIGHUP." type:"path" placeholder:"FILE" env:"SYNKFS_TOKENS"`
	InsecureNoAuth   bool          `help:"Serve without tokens on an address other than loopback: anyone who can reach it may read and change every record."`
	TLSCert          string        `name:"tls-cert" help:"Serve wss:// with this PEM certificate (chain)." type:"path" placeholder:"FILE"`
	TLSKey           string        `name:"tls-key" help:"The PEM private key of --tls-cert." type:"path" placeholder:"FILE"`
	AllowOrigin      []string      `help:"Let browsers from pages on this host pattern connect (repeatable; e.g. app.example.com or *.example.com). Same-origin and non-browser clients always may." placeholder:"PATTERN"`
	MaxConns         int           `help:"Most clients connected at once; more get 503." default:"1000"`
	RateLimit        float64       `help:"Messages a second one client may send on average; a client over it is told so and disconnected (0: no limit)." default:"100"`
	RateBurst        int           `help:"Messages one client may send in a burst above --rate-limit (default: twice the rate)."`
	MaxMessage       int           `help:"Largest message a client may send, in MiB; a larger one closes its connection." default:"4" placeholder:"MIB"`
	HandshakeTimeout time.Duration `help:"Disconnect a client that sends nothing this long after connecting." default:"30s"`

	// tokensRead is --tokens as apply read it, and tokensCount the number
	// of tokens it held: where watchTokens starts from.
	tokensRead  os.FileInfo
	tokensCount int
}

// apply checks the flags against the listen address, loads the tokens and
// the certificate into opts, and returns the TLS configuration (nil
// without --tls-cert).
func (f *securityFlags) apply(e *env, listen string, opts *server.Options) (*tls.Config, error) {
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return nil, &codeError{exitUsage, errors.New("--tls-cert and --tls-key go together")}
	}
	loopback, err := isLoopback(listen)
	if err != nil {
		return nil, &codeError{exitUsage, err}
	}
	switch {
	case f.Tokens != "":
		// Stat before reading: a change in between is seen by the
		// first poll of watchTokens.
		fi, err := os.Stat(f.Tokens)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		set, err := auth.Load(f.Tokens)
		if err != nil {
			return nil, err
		}
		if set.Len() == 0 {
			return nil, fmt.Errorf("token file %s has no tokens: add one with 'synkfs token add --tokens %s --name NAME --role read-write'", f.Tokens, f.Tokens)
		}
		opts.Tokens = set
		f.tokensRead, f.tokensCount = fi, set.Len()
		e.log.Info("clients need a token", "tokens", set.Len(), "file", f.Tokens)
		if !loopback && f.TLSCert == "" {
			e.log.Warn("tokens travel in clear text without TLS: anyone on the network path can read and reuse them; use --tls-cert and --tls-key, or a TLS proxy in front")
		}
	case loopback:
		e.log.Warn("serving without authentication: listening on loopback only, so only this machine can connect; use --tokens FILE to serve a network")
	case f.InsecureNoAuth:
		e.log.Warn("serving WITHOUT AUTHENTICATION on a network address (--insecure-no-auth): anyone who can reach it may read and change every record", "listen", listen)
	default:
		return nil, &codeError{exitUsage, fmt.Errorf("--listen %s is not a loopback address, and no --tokens file is given: anyone who can reach it could read and change every record. Create tokens with 'synkfs token add' and pass --tokens FILE (or, on a network you fully trust, --insecure-no-auth)", listen)}
	}
	opts.OriginPatterns = f.AllowOrigin
	opts.MaxConns = f.MaxConns
	opts.RateLimit = f.RateLimit
	opts.RateBurst = f.RateBurst
	opts.HandshakeTimeout = f.HandshakeTimeout
	if f.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = -1
	}
	if f.MaxMessage > 0 {
		opts.Limits.MaxMessage = int64(f.MaxMessage) << 20
		opts.Limits.MaxRecord = int(min(opts.Limits.MaxMessage, wire.DefaultMaxRecord))
	}
	if f.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert and --tls-key: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // WebSocket upgrades need HTTP/1.1
	}, nil
}

// isLoopback reports whether listen ("host:port") binds only loopback
// addresses. An empty host binds every interface; a host name other than
// localhost is not trusted to resolve to loopback.
func isLoopback(listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, fmt.Errorf("--listen %s: %w", listen, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback(), nil
}

// tokenPollInterval is how often serve looks whether its --tokens file
// changed.
const tokenPollInterval = 2 * time.Second

// watchTokens starts the goroutine that keeps srv's tokens in step with
// the --tokens file: it reloads the file when its size, modification time
// or inode change (looked at every tokenPollInterval; 'synkfs token add'
// and 'token remove' replace the file by rename) and on SIGHUP. The
// returned stop ends the goroutine and waits for it; serve calls it when
// the server stops. Without --tokens nothing is started.
func (f *securityFlags) watchTokens(e *env, srv *server.Server) (stop func()) {
	if f.Tokens == "" {
		return func() {}
	}
	r := &tokenReloader{path: f.Tokens, log: e.log, apply: srv.SetTokens, read: f.tokensRead, count: f.tokensCount}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.run(ctx, hup, tokenPollInterval)
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// tokenReloader reloads a token file into a server. Only its run
// goroutine uses it.
type tokenReloader struct {
	path  string
	log   *slog.Logger
	apply func(*auth.Set) // the server's SetTokens

	read    os.FileInfo // the file as last read; nil: it could not be
	count   int         // tokens in force
	lastErr string      // the problem last logged, to log it once per change
}

// run checks the file every poll and on every value from hup, until ctx
// is done.
func (r *tokenReloader) run(ctx context.Context, hup <-chan os.Signal, poll time.Duration) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check(false)
		case <-hup:
			r.log.Info("SIGHUP: reloading the token file", "file", r.path)
			r.check(true)
		}
	}
}

// check reloads the file if it changed since it was last read (always
// when force) and gives the server the new set. A file that cannot be
// read or does not decode leaves the tokens in force and is logged, once
// per change of the file (every time when force). A valid file with no
// tokens is applied: the server then refuses every client, as the
// operator who removed the last token asked.
func (r *tokenReloader) check(force bool) {
	fi, err := os.Stat(r.path)
	if err != nil {
		r.read = nil
		r.fail(err, force)
		return
	}
	if !force && r.read != nil && os.SameFile(fi, r.read) && fi.Size() == r.read.Size() && fi.ModTime().Equal(r.read.ModTime()) {
		return
	}
	r.read = fi
	set, err := auth.Load(r.path)
	if err != nil {
		r.fail(err, force)
		return
	}
	r.lastErr = ""
	r.apply(set)
	r.count = set.Len()
	r.log.Info("tokens reloaded", "tokens", set.Len(), "file", r.path)
	if set.Len() == 0 {
		r.log.Warn("the token file has no tokens: every client is refused until one is added with 'synkfs token add'", "file", r.path)
	}
}

func (r *tokenReloader) fail(err error, force bool) {
	if msg := err.Error(); msg != r.lastErr || force {
		r.lastErr = msg
		r.log.Error("token file not reloaded: the server keeps the tokens it had; fix the file (restore a good copy, or delete it and add the tokens again with 'synkfs token add'): it is reloaded as soon as it changes, or on SIGHUP",
			"file", r.path, "tokens", r.count, "err", err)
	}
}

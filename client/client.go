// Package client connects a local replica to `synkfs serve`: it dials the
// server's WebSocket, handshakes (hello/welcome), pushes staged batches one
// at a time and waits for each acknowledgement, pulls what is new when the
// server notifies, walks a snapshot when the server's history is not
// continuous with the replica's, and after a lost link reconnects with
// capped exponential backoff and full jitter, resuming from the replica's
// cursor.
//
// The client keeps no records and no durable state of its own: everything
// that must survive a restart lives behind the Replica interface. A Client
// runs either continuously (Run, for `synkfs sync`) or once (SyncOnce, for
// `synkfs sync --once`).
//
// Goroutines: a connected client owns one reader and one pinger goroutine
// per connection; Run and SyncOnce return only after both have stopped.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/synkfs/synkfs/wire"
)

// Defaults for the zero fields of Options.
const (
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultPingInterval = 15 * time.Second
	DefaultPingTimeout  = 10 * time.Second
	DefaultPageSize     = 1000
	DefaultAckTimeout   = 30 * time.Second
)

// Options configure a Client. The zero value of every field but URL works.
type Options struct {
	// URL of the server, e.g. ws://127.0.0.1:8080/ (wss:// for TLS).
	URL string
	// ClientID is the stable id of this replica; the server remembers the
	// last batch it applied per client id, which makes resent batches
	// apply exactly once. Empty: the server cannot deduplicate across
	// connections, so replicas should always set it.
	ClientID string
	// Header is sent with the WebSocket upgrade, e.g. Authorization.
	Header http.Header
	// HTTPClient dials the server (TLS configuration, proxies). Nil:
	// http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives connection events. Nil: logs are discarded.
	Logger *slog.Logger

	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts: attempt n waits a uniformly random time in
	// [0, min(MaxBackoff, MinBackoff*2^n)] ("full jitter"). The attempt
	// count resets once a connection has caught up with the server.
	// Zero: DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often the client pings the server; a ping not
	// answered within PingTimeout drops the link. PingTimeout also bounds
	// the dial, the handshake and each write. Zero: the defaults.
	PingInterval, PingTimeout time.Duration
	// AckTimeout bounds the wait for an answer the server owes: the ack
	// of a pushed batch, the changes reply to a push or a pull (each part
	// of a long reply restarts it), a snapshot page. When it passes, the
	// session treats the link as broken and reconnects; a resent batch is
	// applied once (the server answers a batch id it applied with a
	// duplicate ack). Pings alone cannot tell: a link that lost one
	// message still answers them. It should be well above a busy server's
	// commit time. Zero: DefaultAckTimeout.
	AckTimeout time.Duration
	// NoZstd: do not ask for zstd-compressed binary frames; negotiate
	// permessage-deflate instead. By default the client asks for zstd and
	// leaves permessage-deflate off so nothing is compressed twice.
	NoZstd bool
	// PageSize is the number of records asked per snapshot page (the
	// server caps it). Zero: DefaultPageSize.
	PageSize int
	// Limits bound what the client accepts from the server. Nil: the wire
	// defaults, except that a message may be up to 64 MiB and hold up to
	// 1,048,576 records, because a replica catching up receives everything
	// it missed in one changes message.
	Limits *wire.Limits
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = DefaultPingTimeout
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Limits == nil {
		o.Limits = &wire.Limits{MaxMessage: 64 << 20, MaxRecords: 1 << 20}
	}
	return o
}

// State is a snapshot of the client's connection, for `synkfs status`.
type State struct {
	// Connected is true between a welcome and the loss of the link.
	Connected bool
	// Epoch and ServerVersion are the latest the server reported.
	Epoch         string
	ServerVersion uint64
	// LastContact is when the server was last heard from (any message or
	// pong); zero if never.
	LastContact time.Time
	// LastError is the error that ended the last connection or attempt,
	// nil if none yet.
	LastError error
	// Attempts counts consecutive failed connections since the last one
	// that caught up.
	Attempts int
	// InFlight is the id of the batch awaiting its ack, 0 if none.
	InFlight uint64
}

// ServerError is an error message from the server that ended a connection,
// or a refusal of the upgrade.
type ServerError struct {
	Code    string // a wire.Code* constant
	Message string
}

func (e *ServerError) Error() string { return "server: " + e.Code + ": " + e.Message }

// Permanent reports whether retrying cannot help without a change on our
// side (credentials, permissions, a message the server will never take).
func (e *ServerError) Permanent() bool { return permanentCode(e.Code) }

func permanentCode(code string) bool {
	switch code {
	case wire.CodeBusy, wire.CodeRateLimit, wire.CodeInternal:
		return false
	}
	return true
}

// Client syncs one Replica with one server. Create it with New; call Run or
// SyncOnce (never both at once, nor either twice concurrently); Kick and
// State may be called from any goroutine at any time.
type Client struct {
	opts    Options
	replica Replica
	log     *slog.Logger
	kick    chan struct{}
	retry   chan struct{}

	// busy guards against concurrent Run/SyncOnce.
	busy sync.Mutex

	mu    sync.Mutex
	state State
}

// New returns a client for r. It does not connect until Run or SyncOnce.
func New(opts Options, r Replica) *Client {
	opts = opts.withDefaults()
	return &Client{
		opts:    opts,
		replica: r,
		log:     opts.Logger,
		kick:    make(chan struct{}, 1),
		retry:   make(chan struct{}, 1),
	}
}

// Retry tells the client that what ended its last connection on our side
// is fixed (the replica's disk works again): a client waiting to reconnect
// stops waiting. Unlike Kick, it also cuts a wait after the server was
// unreachable, so call it only for local problems. It never blocks.
func (c *Client) Retry() {
	select {
	case c.retry <- struct{}{}:
	default:
	}
}

// Kick tells the client that something was staged: a connected client asks
// the replica for its next batch right away. It never blocks.
func (c *Client) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// State returns the client's current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Client) update(fn func(*State)) {
	c.mu.Lock()
	fn(&c.state)
	c.mu.Unlock()
}

// Run keeps the replica in sync until ctx is done: it connects, syncs,
// and after a lost link or a failed attempt waits with backoff and
// reconnects. Errors, permanent ones included, are logged and recorded in
// State; Run keeps trying. It returns ctx's error once the connection and
// every goroutine it started are gone (a clean close waits for the
// server's close reply, at most a few seconds).
func (c *Client) Run(ctx context.Context) error {
	if !c.busy.TryLock() {
		return errors.New("client: already running")
	}
	defer c.busy.Unlock()
	for {
		select {
		case <-c.retry: // for an earlier wait
		default:
		}
		healthy, err := c.session(ctx, false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		attempt := 0
		c.update(func(s *State) {
			s.Connected = false
			s.InFlight = 0
			s.LastError = err
			if healthy {
				s.Attempts = 0
			}
			s.Attempts++
			attempt = s.Attempts
		})
		d := backoff(c.opts.MinBackoff, c.opts.MaxBackoff, attempt-1, rand.Int64N)
		c.log.Warn("sync link lost", "err", err, "attempt", attempt, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-c.retry:
			t.Stop()
		}
	}
}

// SyncOnce connects once, pushes every staged batch, pulls until the
// replica has caught up with the server, and closes the link. It returns
// nil when in sync, and an error when the server cannot be reached, the link
// drops or the server refuses us; staged changes then stay staged. It does
// not retry.
func (c *Client) SyncOnce(ctx context.Context) error {
	if !c.busy.TryLock() {
		return errors.New("client: already running")
	}
	defer c.busy.Unlock()
	_, err := c.session(ctx, true)
	c.update(func(s *State) {
		s.Connected = false
		s.InFlight = 0
		s.LastError = err
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", c.opts.URL, err)
	}
	return nil
}

// backoff returns the delay before attempt n (0-based): a uniformly random
// duration in [0, min(max, min*2^n)]. randN(k) returns an int in [0, k).
func backoff(min, max time.Duration, n int, randN func(int64) int64) time.Duration {
	ceil := max
	if n < 62 {
		if d := min << n; d > 0 && d>>n == min && d < max {
			ceil = d
		}
	}
	return time.Duration(randN(int64(ceil) + 1))
}

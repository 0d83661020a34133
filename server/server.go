// Package server is the hub of `synkfs serve`: it owns a synkfs.Store,
// commits the batches clients push at one new version each, fans out
// notifies, and serves the WebSocket protocol of docs/PROTOCOL.md at "/",
// plus /healthz and /metrics.
//
// A Server is an http.Handler:
//
//	srv := server.New(store, nil)
//	hs := &http.Server{Addr: "127.0.0.1:8080", Handler: srv}
//	go hs.ListenAndServe()
//	...
//	srv.Shutdown(ctx) // closes the WebSockets (hijacked: hs.Shutdown does not see them)
//	hs.Shutdown(ctx)
//
// The server never closes the store: its owner does, after Shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/wire"
)

// Options tune a Server. The zero value (or a nil *Options) gives the
// defaults named on each field.
type Options struct {
	// Logger receives the server's structured logs (default slog.Default()).
	Logger *slog.Logger
	// Strict drops a legacy client's stale writes (base version below
	// the server's version of the record) instead of applying them last
	// writer wins, and logs each one.
	Strict bool
	// Limits bound what clients may send (zero fields: wire defaults).
	Limits wire.Limits
	// SendQueue is the number of replies that may wait for one client
	// (default 256). A client whose queue is full is closed with 1008.
	// Notifies do not count: each client has one coalescing slot for them.
	SendQueue int
	// SnapshotPageMax caps the records in one snapshot page (default 5000).
	SnapshotPageMax int
	// TombstoneRetention is how long tombstones are kept (default 30 days).
	TombstoneRetention time.Duration
	// CompactInterval is how often tombstones older than the retention are
	// compacted (default: a tenth of the retention, at most an hour).
	CompactInterval time.Duration
	// PingInterval is the time between WebSocket pings (default 15s);
	// PingTimeout how long a pong may take before the link is closed
	// (default 10s).
	PingInterval, PingTimeout time.Duration
	// WriteTimeout bounds one write to a client (default 10s); a client
	// that does not take a message in time is disconnected.
	WriteTimeout time.Duration
	// OriginPatterns lists the cross-origin hosts whose browsers may
	// connect (websocket.AcceptOptions.OriginPatterns); same-origin and
	// non-browser clients always may.
	OriginPatterns []string
	// MaxConns caps concurrent WebSocket clients (0: no cap); upgrades
	// beyond it get 503.
	MaxConns int

	// Tokens, when set, is who may connect and what each may do (see
	// auth.go): an upgrade without a valid bearer secret gets 401. Nil:
	// anyone who reaches the server may read and write everything. It is
	// the initial set: Server.SetTokens replaces it while the server runs.
	Tokens *auth.Set
	// RateLimit is how many messages a second one client may send on
	// average, with bursts of up to RateBurst (default: twice RateLimit);
	// a client over it gets a rate-limit error and is closed with 1008.
	// Zero: no rate limit.
	RateLimit float64
	RateBurst int
	// HandshakeTimeout closes a client whose first message does not come
	// within it of the upgrade (default DefaultHandshakeTimeout;
	// negative: no timeout).
	HandshakeTimeout time.Duration
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.SendQueue <= 0 {
		out.SendQueue = 256
	}
	if out.SnapshotPageMax <= 0 {
		out.SnapshotPageMax = 5000
	}
	if out.TombstoneRetention <= 0 {
		out.TombstoneRetention = 30 * 24 * time.Hour
	}
	if out.CompactInterval <= 0 {
		out.CompactInterval = min(out.TombstoneRetention/10, time.Hour)
	}
	if out.PingInterval <= 0 {
		out.PingInterval = 15 * time.Second
	}
	if out.PingTimeout <= 0 {
		out.PingTimeout = 10 * time.Second
	}
	if out.WriteTimeout <= 0 {
		out.WriteTimeout = 10 * time.Second
	}
	lim := wire.DefaultLimits
	if out.Limits.MaxMessage > 0 {
		lim.MaxMessage = out.Limits.MaxMessage
	}
	if out.Limits.MaxRecords > 0 {
		lim.MaxRecords = out.Limits.MaxRecords
	}
	if out.Limits.MaxRecord > 0 {
		lim.MaxRecord = out.Limits.MaxRecord
	}
	if out.Limits.MaxDepth > 0 {
		lim.MaxDepth = out.Limits.MaxDepth
	}
	out.Limits = lim
	return out
}

// Server is the hub. Create it with New; it is safe for concurrent use.
type Server struct {
	store   synkfs.Store
	opts    Options
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux

	// commitMu serialises commits: the conflict checks of a batch and its
	// Apply are one step with respect to every other commit.
	commitMu sync.Mutex

	mu      sync.Mutex
	clients map[*client]struct{}
	closing bool
	healing bool           // a heal goroutine recovers the store (heal.go)
	wg      sync.WaitGroup // client handlers, the compactor and the healer

	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc
	stop   chan struct{} // closed by Shutdown: stops the compactor and the healer
	kick   chan chan error

	shutdownOnce sync.Once
	shutdownErr  error

	// tokens is the current token set (nil: no authentication). Upgrades
	// read it without locks; SetTokens stores it under mu (auth.go).
	tokens atomic.Pointer[auth.Set]
}

// New returns a Server over store and starts its tombstone compactor.
// opts may be nil. Call Shutdown to stop it.
func New(store synkfs.Store, opts *Options) *Server {
	o := opts.withDefaults()
	s := &Server{
		store:   store,
		opts:    o,
		log:     o.Logger,
		clients: make(map[*client]struct{}),
		stop:    make(chan struct{}),
		kick:    make(chan chan error),
	}
	s.tokens.Store(o.Tokens)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/healthz", s.serveHealth)
	s.mux.Handle("/metrics", s.requireToken(s.metrics.handler()))
	s.mux.HandleFunc("/", s.serveRoot)
	s.wg.Add(1)
	go s.compactor()
	if w, ok := store.(synkfs.Watcher); ok {
		s.wg.Add(1)
		go s.watch(w)
	}
	return s
}

// Bounds of the backoff between Watch calls that failed.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// watch announces to this server's clients the batches that other servers
// commit to a shared store, until Shutdown. When Watch fails (its first
// database link refused, say) it calls it again after a backoff, for as
// long as the server runs: a Watch that starts announces the store's
// version, so the clients catch up with what they missed meanwhile.
func (s *Server) watch(w synkfs.Watcher) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := watchRetryMin
	for {
		err := w.Watch(ctx, s.broadcast)
		if ctx.Err() != nil {
			return
		}
		s.log.Error("cannot hear of other servers' commits, trying again: meanwhile clients learn of them only when they push or reconnect",
			"err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

// ServeHTTP serves WebSocket upgrades at "/", /healthz and /metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Pinger is implemented by stores that live behind a link (a database):
// Ping reports whether the store can be reached now. /healthz answers 503
// while it cannot, so that a load balancer sends clients to a server that
// can commit.
type Pinger interface {
	Ping(ctx context.Context) error
}

// healthPingTimeout bounds the store's Ping in /healthz.
const healthPingTimeout = 2 * time.Second

// serveHealth answers 200 "ok ..." while the server can commit, and 503
// with the reason while its store is broken (see Recoverer) or cannot be
// reached (see Pinger).
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if cause := s.storeBroken(); cause != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unavailable: %s; commits are refused until it works again, and the server retries by itself\n", diskProblem(cause))
		return
	}
	if p, ok := s.store.(Pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), healthPingTimeout)
		err := p.Ping(ctx)
		cancel()
		if err != nil {
			// The error may name hosts and users: logged, not shown.
			s.log.Warn("health check: the store cannot be reached", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "unavailable: the store cannot be reached; commits fail until it can\n")
			return
		}
	}
	fmt.Fprintf(w, "ok version=%d epoch=%s\n", s.store.Version(), s.store.Epoch())
}

func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" || !isUpgrade(r) {
		serveWeb(w, r) // the browser demo page and synk.js; 404 otherwise
		return
	}
	s.serveWS(w, r)
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return true
		}
	}
	return false
}

// register adds c, or refuses when the server is closing or full.
func (s *Server) register(c *client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errors.New("server is shutting down")
	}
	if s.opts.MaxConns > 0 && len(s.clients) >= s.opts.MaxConns {
		return fmt.Errorf("server is at its limit of %d clients", s.opts.MaxConns)
	}
	s.clients[c] = struct{}{}
	s.recheckLocked(c) // its token may have changed since it was checked
	s.wg.Add(1)
	s.metrics.clients.Inc()
	return nil
}

func (s *Server) unregister(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
	s.metrics.clients.Dec()
	s.wg.Done()
}

// announceCurrent tells every ready client the store's version. A commit
// that failed may have landed all the same (its answer lost), and a
// duplicate ack may be the first sign of such a commit: neither is
// announced by the commit path, and clients that already have the version
// ignore the notify.
func (s *Server) announceCurrent() { s.broadcast(s.store.Version()) }

// broadcast tells every ready client that the store is at version v.
// It never blocks: each client has one coalescing slot.
func (s *Server) broadcast(v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		c.signal(v)
	}
}

// Compact drops tombstones older than the retention now. The compactor
// calls it periodically; callers may too (it is safe at any time).
func (s *Server) Compact(ctx context.Context) error {
	before := time.Now().Add(-s.opts.TombstoneRetention)
	floor := s.store.Floor()
	if err := s.store.Compact(ctx, before); err != nil {
		return fmt.Errorf("compact tombstones: %w", err)
	}
	if f := s.store.Floor(); f != floor {
		s.log.Info("compacted tombstones", "floor", f, "before", before)
	}
	return nil
}

func (s *Server) compactor() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Compact(s.ctx); err != nil && s.storeBroken() == nil {
				s.log.Error("compaction failed", "err", err)
			}
		}
	}
}

// Shutdown stops accepting clients, closes every WebSocket with 1001
// (going away) and waits for every goroutine the server started, or for
// ctx; then it drops the links that are left. It returns the first error
// (ctx's when it gave up waiting). Later calls return the same result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		for c := range s.clients {
			c.kill(websocket.StatusGoingAway, "server shutting down")
		}
		s.mu.Unlock()
		close(s.stop)

		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.shutdownErr = fmt.Errorf("shutdown: %w", ctx.Err())
			s.cancel() // unblocks reads and writes: links are dropped
			<-done
		}
		s.cancel()
	})
	return s.shutdownErr
}

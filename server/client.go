package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs/wire"
)

// maxBadRun is how many bad messages in a row close a client with 1008.
const maxBadRun = 10

// maxClientID bounds the client id of a hello, in bytes.
const maxClientID = 256

// serverFeatures are the extensions this server supports, in welcome order.
var serverFeatures = []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot, wire.FeatureZstd, wire.FeatureSkipOwn}

// client is one WebSocket. Three goroutines serve it: the HTTP handler's
// (reading and committing), a writer (the only one that writes data
// messages) and a pinger. kill stops all three; the handler waits for the
// other two before it returns.
type client struct {
	s    *Server
	conn *wire.Conn
	log  *slog.Logger

	ctx    context.Context // cancelled by kill: stop serving
	cancel context.CancelFunc
	// hard is cancelled by drop (and forced shutdown): it aborts a write
	// in progress. A graceful kill leaves it, since cancelling a write's
	// context makes the library cut the link without a close frame.
	hard       context.Context
	hardCancel context.CancelFunc

	out     chan outItem  // replies, bounded by Options.SendQueue
	wake    chan struct{} // capacity 1: a notify is pending
	pending atomic.Uint64 // the newest version to notify
	ready   atomic.Bool   // notifies may be sent (after the first reply)

	killOnce    sync.Once
	closeCode   websocket.StatusCode
	closeReason string

	// Owned by the reading goroutine.
	started  bool
	extended bool
	id       string
	features map[string]bool
	badRun   int
	helloed  *wire.Hello // the accepted hello, to tell a repeat of it
	closing  bool        // a close is queued: read no more
	seenIn   int64
	sec      security // token and limits: auth.go, limits.go

	// own holds the versions of this link's latest acknowledged pushes
	// under skip-own: pulls leave them out.
	own ownVersions

	// Owned by the writer.
	sent    uint64 // newest version this client was sent
	acked   uint64 // newest version an ack sent to this client carried
	seenOut int64
}

// outItem is one entry of a client's send queue: a message, or work the
// writer does when it gets there (so a large reply is built only when the
// client can take it).
type outItem struct {
	msg   wire.Message
	after func() // runs once msg is written

	pull bool // send the changes since `from`
	from uint64

	snap *wire.SnapshotRequest

	// close ends the client once everything queued before it is sent.
	close     bool
	closeCode websocket.StatusCode
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing, full := s.closing, s.opts.MaxConns > 0 && len(s.clients) >= s.opts.MaxConns
	s.mu.Unlock()
	if closing || full {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "synkfs: server is busy or shutting down", http.StatusServiceUnavailable)
		return
	}
	tok, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns: s.opts.OriginPatterns,
		Subprotocols:   acceptSubprotocols,
		// Context takeover would cost a fixed 1.2 MB flate writer per
		// link (1.2 GB for 1,000 clients); without it only messages over
		// 512 bytes are compressed, with pooled writers. Notifies are tiny.
		CompressionMode: websocket.CompressionNoContextTakeover,
	})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := s.newClient(ws, r.RemoteAddr)
	c.sec.tok = tok
	if err := s.register(c); err != nil {
		_ = ws.Close(websocket.StatusTryAgainLater, "server busy")
		return
	}
	defer s.unregister(c)
	defer c.watchHandshake()()
	c.log.Debug("client connected")
	c.run()
	c.log.Debug("client disconnected", "code", c.closeCode, "reason", c.closeReason)
}

func (s *Server) newClient(ws *websocket.Conn, remote string) *client {
	hard, hardCancel := context.WithCancel(s.ctx)
	ctx, cancel := context.WithCancel(hard)
	return &client{
		s:          s,
		hard:       hard,
		hardCancel: hardCancel,
		conn:       wire.NewConn(ws, &s.opts.Limits),
		log:        s.log.With("remote", remote),
		ctx:        ctx,
		cancel:     cancel,
		out:        make(chan outItem, s.opts.SendQueue),
		wake:       make(chan struct{}, 1),
	}
}

func (c *client) run() {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.writer() }()
	go func() { defer wg.Done(); c.pinger() }()
	defer c.hardCancel()
	if !c.reader() {
		c.kill(websocket.StatusNormalClosure, "")
	}
	wg.Wait()
}

// kill ends the client: the writer closes the link with code. Only the
// first call counts. It never blocks.
func (c *client) kill(code websocket.StatusCode, reason string) {
	c.killOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		c.cancel()
	})
}

// drop ends the client at once, aborting a write in progress: for links
// that do not take what is sent to them.
func (c *client) drop(code websocket.StatusCode, reason string) {
	c.kill(code, reason)
	c.hardCancel()
}

// signal records that the store is at v and wakes the writer. It never
// blocks and never queues: a client that has not taken its notify yet gets
// only the newest version.
func (c *client) signal(v uint64) {
	if !c.ready.Load() {
		return
	}
	for {
		old := c.pending.Load()
		if v <= old || c.pending.CompareAndSwap(old, v) {
			break
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *client) rewake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue adds a reply to the send queue; a full queue drops the client.
func (c *client) enqueue(it outItem) bool {
	select {
	case c.out <- it:
		return true
	default:
		c.s.metrics.drops.Inc()
		c.log.Warn("send queue full: dropping client", "queue", cap(c.out))
		c.drop(websocket.StatusPolicyViolation, "send queue full")
		return false
	}
}

// reader reads and handles messages until the link fails or the client is
// killed. It returns true when it queued a close after the replies still
// waiting (the writer then ends the client).
func (c *client) reader() (closing bool) {
	for c.ctx.Err() == nil && !c.closing {
		m, err := c.conn.Read(c.s.ctx)
		if c.throttle(err) {
			continue
		}
		in, _ := c.conn.Stats()
		c.s.metrics.bytesIn.Add(float64(in - c.seenIn))
		c.seenIn = in
		var ce *wire.CodeError
		if errors.As(err, &ce) {
			c.bad(ce.Code, ce.Message, ce.Batch)
			continue
		}
		if err != nil {
			if s := websocket.CloseStatus(err); s == -1 && c.ctx.Err() == nil {
				c.log.Debug("read failed", "err", err)
			}
			return false
		}
		if c.handle(m) {
			c.badRun = 0
		}
	}
	return c.closing
}

// bad reports a refused message: an error message to an extended client, a
// log line for a legacy one; too many in a row close the link.
func (c *client) bad(code, msg string, batch uint64) {
	c.s.metrics.errors.WithLabelValues(code).Inc()
	c.badRun++
	if c.extended {
		c.enqueue(outItem{msg: &wire.Error{Code: code, Message: msg, Batch: batch}})
	} else {
		c.log.Info("bad message from a legacy client", "code", code, "message", msg)
	}
	if c.badRun >= maxBadRun {
		c.log.Warn("closing a client that keeps sending bad messages", "in_a_row", c.badRun)
		c.closing = true
		if c.enqueue(outItem{close: true, closeCode: websocket.StatusPolicyViolation}) {
			return
		}
		c.kill(websocket.StatusPolicyViolation, "too many bad messages")
	}
}

// handle acts on one well-formed message; it reports whether the message
// was acceptable.
func (c *client) handle(m wire.Message) bool {
	switch m := m.(type) {
	case *wire.Hello:
		if c.started {
			if c.helloed != nil && sameHello(c.helloed, m) {
				// A link that delivered the hello twice: answering it
				// with an error would end a healthy session.
				c.log.Debug("ignoring a repeat of the hello")
				return true
			}
			c.bad(wire.CodeBadMessage, "hello must be the first message, and only once", 0)
			return false
		}
		return c.hello(m)
	case *wire.Changes:
		c.started = true
		return c.changes(m)
	case *wire.SnapshotRequest:
		if !c.features[wire.FeatureSnapshot] {
			c.bad(wire.CodeBadMessage, "snapshot requests need the snapshot feature, agreed in hello", 0)
			return false
		}
		c.enqueue(outItem{snap: m})
		return true
	default:
		c.bad(wire.CodeBadMessage, fmt.Sprintf("a client may not send %s messages", m.Type()), 0)
		return false
	}
}

func (c *client) hello(h *wire.Hello) bool {
	c.started, c.extended = true, true
	if h.Protocol < 1 {
		c.bad(wire.CodeBadMessage, fmt.Sprintf("hello protocol %d is not supported; this server speaks %d", h.Protocol, wire.ProtocolVersion), 0)
		return false
	}
	if len(h.Client) > maxClientID {
		c.bad(wire.CodeBadMessage, fmt.Sprintf("client id of %d bytes is over the limit of %d", len(h.Client), maxClientID), 0)
		return false
	}
	c.helloed = h
	c.id = c.scopeID(h.Client)
	c.features = map[string]bool{}
	var agreed []string
	for _, f := range serverFeatures {
		if !slices.Contains(h.Features, f) {
			continue
		}
		if f == wire.FeatureAck && c.id == "" {
			continue // batch ids are counted per client id
		}
		c.features[f] = true
		agreed = append(agreed, f)
	}
	if c.id != "" {
		c.log = c.log.With("client", c.id)
	}
	st := c.s.store
	epoch, v, floor := st.Epoch(), st.Version(), st.Floor()
	if h.Epoch == epoch && h.Version > v {
		// A client ahead of the store must resync, unless the store's
		// version is only stale: a store behind a link answers the last
		// version it read while the link is down.
		if p, ok := st.(Pinger); ok {
			ctx, cancel := context.WithTimeout(c.ctx, healthPingTimeout)
			err := p.Ping(ctx)
			cancel()
			if err != nil {
				c.log.Warn("hello while the store cannot be reached", "err", err)
				c.bad(wire.CodeBusy, "the server cannot reach its store now; it retries by itself: connect again later", 0)
				return false
			}
			v = st.Version()
		}
	}
	w := &wire.Welcome{
		Protocol:  wire.ProtocolVersion,
		Epoch:     epoch,
		Version:   v,
		Floor:     floor,
		Features:  agreed,
		Resync:    h.Epoch != epoch || h.Version < floor || h.Version > v,
		LastBatch: c.s.lastBatch(c.id),
	}
	it := outItem{msg: w}
	if c.features[wire.FeatureZstd] {
		it.after = c.conn.EnableZstd
	}
	c.log.Debug("handshake", "features", agreed, "version", h.Version, "resync", w.Resync)
	if c.enqueue(it) {
		c.ready.Store(true)
	}
	return true
}

// sameHello reports whether b repeats a field for field (the same
// message delivered twice).
func sameHello(a, b *wire.Hello) bool {
	return a.Protocol == b.Protocol && a.Client == b.Client && a.Epoch == b.Epoch &&
		a.Version == b.Version && slices.Equal(a.Features, b.Features)
}

func (c *client) changes(m *wire.Changes) bool {
	c.reportForbidden(m)
	if len(m.Update)+len(m.Delete) > 0 {
		ack, committed, err := c.s.commit(c, m)
		if errors.Is(err, errDiskFailed) {
			// Logged once, by storeBroken.
			c.log.Debug("commit refused: the store is broken", "err", err)
			c.bad(wire.CodeBusy, diskProblem(err)+", so it cannot store the batch now; it retries by itself: resend the batch later", m.Batch)
			return true // not the client's fault
		}
		if err != nil {
			c.log.Error("commit failed", "err", err)
			c.bad(wire.CodeInternal, "the server could not store the batch; retry later", m.Batch)
			c.s.announceCurrent() // it may have landed all the same
			return true           // not the client's fault
		}
		if ack != nil && committed > 0 && c.features[wire.FeatureSkipOwn] {
			// One version per batch: the changes at it are this push's,
			// and the ack gives their version. Noted before the ack is
			// queued, so no pull sends them after it.
			c.own.add(committed)
		}
		if ack != nil {
			if !c.enqueue(outItem{msg: ack}) {
				return true
			}
			if ack.Duplicate {
				c.ready.Store(true)
				// A batch whose commit landed while its answer was lost
				// (a database link cut after COMMIT was sent) was never
				// announced; its resend is the first sign of it.
				c.s.announceCurrent()
				return true // nothing new: no changes reply is owed
			}
		}
		if committed > 0 {
			defer c.s.broadcastFor(committed, m) // after this client's reply is queued
		}
	}
	// Ready before the pull is queued: a commit broadcast between the
	// writer sending this reply and a later Store(true) would otherwise be
	// lost. A notify that races the reply is harmless: the writer sends
	// queued replies first and skips notifies the reply already covered.
	c.ready.Store(true)
	c.enqueue(outItem{pull: true, from: m.Version})
	return true
}

func (c *client) pinger() {
	t := time.NewTicker(c.s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.PingTimeout)
		err := c.conn.Ping(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Info("closing a client that does not answer pings", "err", err)
				c.drop(websocket.StatusGoingAway, "ping timeout")
			}
			return
		}
	}
}

// writer sends the queued replies and the coalesced notifies, replies
// first, then closes the link once the client is killed.
func (c *client) writer() {
	defer func() {
		err := c.conn.Close(c.closeCode, c.closeReason)
		if err != nil && !errors.Is(err, context.Canceled) {
			c.log.Debug("close", "err", err)
		}
	}()
	for {
		var it outItem
		select {
		case it = <-c.out:
		default:
			select {
			case <-c.ctx.Done():
				return
			case it = <-c.out:
			case <-c.wake:
				// A reply queued before the commit of v goes first:
				// load v, then look at the queue (a reply is queued
				// before its commit is broadcast), and keep the wake.
				v := c.pending.Load()
				select {
				case it = <-c.out:
					c.rewake()
				default:
					if v <= c.sent {
						continue // the client already has it from a reply
					}
					it = outItem{msg: &wire.Notify{Version: v}}
				}
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		if err := c.send(it); err != nil {
			if c.ctx.Err() == nil {
				c.log.Info("write failed: dropping client", "err", err)
				c.kill(websocket.StatusGoingAway, "write failed")
			}
			return
		}
	}
}

// write sends one message with the write timeout.
func (c *client) write(m wire.Message) error {
	ctx, cancel := context.WithTimeout(c.hard, c.s.opts.WriteTimeout)
	defer cancel()
	err := c.conn.Write(ctx, m)
	_, out := c.conn.Stats()
	c.s.metrics.bytesOut.Add(float64(out - c.seenOut))
	c.seenOut = out
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *wire.Changes:
		c.sent = max(c.sent, m.Version)
	case *wire.Notify:
		c.sent = max(c.sent, m.Version)
	case *wire.Ack:
		c.acked = max(c.acked, m.Version)
	}
	return nil
}

func (c *client) send(it outItem) error {
	switch {
	case it.close:
		c.kill(it.closeCode, "too many bad messages")
		return nil
	case it.pull:
		return c.sendChanges(it.from)
	case it.snap != nil:
		return c.sendSnapshotPage(it.snap)
	}
	if err := c.write(it.msg); err != nil {
		return err
	}
	if it.after != nil {
		it.after()
	}
	return nil
}

// ownMax is how many of a link's own push versions are remembered: enough
// for the pushes a client has in flight before it reads their replies.
const ownMax = 64

// ownVersions remembers the versions of a link's latest acknowledged
// pushes; the reader adds, the writer reads.
type ownVersions struct {
	mu sync.Mutex
	vs [ownMax]uint64
	n  int
}

func (o *ownVersions) add(v uint64) {
	o.mu.Lock()
	o.vs[o.n%ownMax] = v
	o.n++
	o.mu.Unlock()
}

// list returns the versions remembered (nil when none).
func (o *ownVersions) list() []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == 0 {
		return nil
	}
	return slices.Clone(o.vs[:min(o.n, ownMax)])
}

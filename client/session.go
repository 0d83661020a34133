package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// protocolVersion is the extension protocol this client speaks.
const protocolVersion = 1

// ErrLinkDead: a ping went unanswered.
var ErrLinkDead = errors.New("link dead: ping not answered")

// ErrNoAnswer: an answer the server owes (an ack, a changes reply, a
// snapshot page) did not come within Options.AckTimeout.
var ErrNoAnswer = errors.New("no answer from the server")

// inbound is one result of the reader goroutine.
type inbound struct {
	msg wire.Message
	err error
}

// session is one connection's state. Only the goroutine running
// Client.session touches it.
type session struct {
	c      *Client
	r      Replica
	conn   *wire.Conn
	in     <-chan inbound
	once   bool
	epoch  string
	cursor uint64 // replica's version, cached
	target uint64 // highest server version heard of

	lastBatch uint64 // from welcome: batches at or below it were applied
	// pulling: a changes reply is expected (to a pull or to a push); it
	// ends with a message at or above pullUntil (the server may split a
	// long reply into parts, each complete up to its version).
	pulling   bool
	pullUntil uint64
	inflight  *Batch
	caughtUp  bool // reached the in-sync state at least once
	// heard is when the last push or pull was sent, the ack in flight
	// came or the last changes message was applied: while an answer is owed, AckTimeout after it
	// the link counts as broken.
	heard time.Time
}

// session connects, syncs and serves one connection. once: return nil as
// soon as the replica is in sync. healthy reports whether the connection
// caught up with the server at least once (the backoff then resets).
func (c *Client) session(ctx context.Context, once bool) (healthy bool, err error) {
	o := &c.opts
	dialCtx, cancelDial := context.WithTimeout(ctx, o.PingTimeout)
	mode := websocket.CompressionDisabled
	if o.NoZstd {
		mode = websocket.CompressionContextTakeover
	}
	ws, resp, err := websocket.Dial(dialCtx, o.URL, &websocket.DialOptions{
		HTTPClient:      o.HTTPClient,
		HTTPHeader:      o.Header,
		CompressionMode: mode,
	})
	cancelDial()
	if err != nil {
		if se := refusal(resp); se != nil {
			return false, se
		}
		if resp != nil && resp.StatusCode != 0 && resp.StatusCode != 101 {
			return false, fmt.Errorf("dial: server answered %s: %w", resp.Status, err)
		}
		return false, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(o.Limits.MaxMessage + 1)
	conn := wire.NewConn(ws, o.Limits)

	sctx, cancel := context.WithCancelCause(ctx)
	in := make(chan inbound)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.readLoop(sctx, conn, in) }()
	go func() { defer wg.Done(); c.pingLoop(sctx, conn, cancel) }()

	s := &session{c: c, r: c.replica, conn: conn, in: in, once: once}
	err = s.run(sctx)
	if err == nil || ctx.Err() != nil {
		// Done, or asked to stop: say goodbye while the reader is still
		// there to take the server's close reply.
		_ = conn.Close(websocket.StatusNormalClosure, "")
	} else {
		_ = ws.CloseNow()
	}
	cancel(nil)
	wg.Wait()
	return s.caughtUp, err
}

// readLoop hands every message read from conn to in, until an error.
func (c *Client) readLoop(ctx context.Context, conn *wire.Conn, in chan<- inbound) {
	for {
		m, err := conn.Read(ctx)
		if err == nil {
			c.update(func(s *State) { s.LastContact = time.Now() })
		}
		select {
		case in <- inbound{msg: m, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// pingLoop pings the server every PingInterval and cancels the session when
// a ping is not answered within PingTimeout.
func (c *Client) pingLoop(ctx context.Context, conn *wire.Conn, cancel context.CancelCauseFunc) {
	t := time.NewTicker(c.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, c.opts.PingTimeout)
		err := conn.Ping(pctx)
		pcancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			cancel(fmt.Errorf("%w: %v", ErrLinkDead, err))
			return
		}
		c.update(func(s *State) { s.LastContact = time.Now() })
	}
}

// fail returns the reason the session context ended.
func fail(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// recv waits for the next message from the server.
func (s *session) recv(ctx context.Context) (wire.Message, error) {
	select {
	case <-ctx.Done():
		return nil, fail(ctx)
	case in := <-s.in:
		if in.err != nil {
			if ctx.Err() != nil {
				return nil, fail(ctx)
			}
			return nil, fmt.Errorf("read: %w", in.err)
		}
		return in.msg, nil
	}
}

func (s *session) send(ctx context.Context, m wire.Message) error {
	wctx, cancel := context.WithTimeout(ctx, s.c.opts.PingTimeout)
	defer cancel()
	if err := s.conn.Write(wctx, m); err != nil {
		if ctx.Err() != nil {
			return fail(ctx)
		}
		return fmt.Errorf("write %s: %w", m.Type(), err)
	}
	return nil
}

func (s *session) run(ctx context.Context) error {
	if err := s.handshake(ctx); err != nil {
		return err
	}
	if err := s.pushNext(ctx); err != nil {
		return err
	}
	if err := s.maybePull(ctx); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if s.idle() {
			// Something may have been staged since the last look.
			if err := s.pushNext(ctx); err != nil {
				return err
			}
			if s.idle() {
				if !s.caughtUp {
					s.caughtUp = true
					s.c.update(func(st *State) { st.Attempts = 0 })
					s.c.log.Info("in sync", "epoch", s.epoch, "version", s.cursor)
				}
				if s.once {
					return nil
				}
			}
		}
		var expired <-chan time.Time
		if s.owed() != "" {
			timer.Reset(time.Until(s.heard.Add(s.c.opts.AckTimeout)))
			expired = timer.C
		}
		select {
		case <-ctx.Done():
			return fail(ctx)
		case <-expired:
			select {
			case in := <-s.in:
				// A message waited while a long apply ran: take it first.
				if err := s.take(ctx, in); err != nil {
					return err
				}
				continue
			default:
			}
			if what := s.owed(); what != "" && time.Since(s.heard) >= s.c.opts.AckTimeout {
				s.c.log.Info("no answer from the server: reconnecting", "waited_for", what, "timeout", s.c.opts.AckTimeout)
				return fmt.Errorf("%w: %s within %s", ErrNoAnswer, what, s.c.opts.AckTimeout)
			}
		case <-s.c.kick:
			if err := s.pushNext(ctx); err != nil {
				return err
			}
		case in := <-s.in:
			if err := s.take(ctx, in); err != nil {
				return err
			}
		}
	}
}

// take handles one result of the reader.
func (s *session) take(ctx context.Context, in inbound) error {
	if in.err != nil {
		return s.linkLost(ctx, in.err)
	}
	return s.handle(ctx, in.msg)
}

// owed describes the answer the session waits for from the server, ""
// if none.
func (s *session) owed() string {
	switch {
	case s.inflight != nil:
		return fmt.Sprintf("the ack of batch %d", s.inflight.ID)
	case s.pulling:
		return fmt.Sprintf("the changes reply up to version %d", s.pullUntil)
	}
	return ""
}

// idle reports whether nothing is in flight and the replica has every
// version the server told of.
func (s *session) idle() bool {
	return s.inflight == nil && !s.pulling && s.target <= s.cursor
}

var wantFeatures = []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot, wire.FeatureSkipOwn}

func (s *session) handshake(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, s.c.opts.PingTimeout)
	defer cancel()
	epoch, version := s.r.Cursor()
	features := slices.Clone(wantFeatures)
	if !s.c.opts.NoZstd {
		features = append(features, wire.FeatureZstd)
	}
	hello := &wire.Hello{Protocol: protocolVersion, Client: s.c.opts.ClientID,
		Epoch: epoch, Version: version, Features: features}
	if err := s.send(hctx, hello); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	m, err := s.recv(hctx)
	if err != nil {
		if ctx.Err() == nil && hctx.Err() != nil {
			return errors.New("handshake: no welcome from the server")
		}
		return fmt.Errorf("handshake: %w", err)
	}
	var w *wire.Welcome
	switch m := m.(type) {
	case *wire.Welcome:
		w = m
	case *wire.Error:
		return &ServerError{Code: m.Code, Message: m.Message}
	default:
		return fmt.Errorf("handshake: got %q instead of welcome", m.Type())
	}
	for _, f := range []string{wire.FeatureAck, wire.FeatureSnapshot} {
		if !slices.Contains(w.Features, f) {
			return fmt.Errorf("handshake: server does not support %q", f)
		}
	}
	if slices.Contains(w.Features, wire.FeatureZstd) && !s.c.opts.NoZstd {
		s.conn.EnableZstd()
	}
	s.epoch, s.cursor, s.target, s.lastBatch = w.Epoch, version, w.Version, w.LastBatch
	s.c.update(func(st *State) {
		st.Connected, st.Epoch, st.ServerVersion = true, w.Epoch, w.Version
	})
	s.c.log.Info("connected", "url", s.c.opts.URL, "epoch", w.Epoch, "server_version", w.Version,
		"version", version, "resync", w.Resync, "last_batch", w.LastBatch)

	// Batches the server already applied leave the stage before a snapshot
	// may re-stage the rest. Without a snapshot, the last one stays: it is
	// resent, and the server's duplicate ack repeats its results (its ack
	// may be the one that was lost).
	if err := s.dropApplied(ctx, w.Resync); err != nil {
		return err
	}
	if w.Resync {
		if err := s.resync(ctx); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
	return nil
}

// dropApplied acknowledges, as duplicates, staged batches the server
// reported as applied in the welcome: those below lastBatch, and the one
// equal to it too when all is true.
func (s *session) dropApplied(ctx context.Context, all bool) error {
	for {
		b, ok := s.r.NextBatch()
		if !ok || b.ID > s.lastBatch || (b.ID == s.lastBatch && !all) {
			return nil
		}
		ack := &wire.Ack{Batch: b.ID, Duplicate: true, Version: s.target}
		s.c.log.Debug("batch applied before the link was lost", "batch", b.ID)
		if err := s.r.Acked(ctx, b, ack); err != nil {
			return fmt.Errorf("ack batch %d: %w", b.ID, err)
		}
	}
}

// resync walks a snapshot into the replica, then pulls since its version.
func (s *session) resync(ctx context.Context) error {
	first, err := s.page(ctx, nil)
	if err != nil {
		return err
	}
	s.c.log.Info("taking a snapshot", "epoch", first.Epoch, "version", first.Version)
	var iterErr error
	complete := false
	pages := func(yield func([]synkfs.Record, error) bool) {
		p := first
		for {
			if !yield(p.Records, nil) {
				return
			}
			if p.Done || p.Next == nil {
				complete = true
				return
			}
			next := *p.Next
			p, iterErr = s.page(ctx, &next)
			if iterErr != nil {
				yield(nil, iterErr)
				return
			}
		}
	}
	snap := &Snapshot{Epoch: first.Epoch, Version: first.Version, Total: first.Total, Pages: pages}
	if err := s.r.ApplySnapshot(ctx, snap); err != nil {
		return fmt.Errorf("apply snapshot: %w", err)
	}
	if iterErr != nil {
		return iterErr
	}
	if !complete {
		return errors.New("replica stopped before the last snapshot page")
	}
	s.epoch, s.cursor = first.Epoch, first.Version
	s.target = max(s.target, first.Version)
	return nil
}

// page asks for one snapshot page and waits for it, noting notifies that
// arrive meanwhile. A page that cannot answer the request (one a faulty
// link delivered twice: its first key is not after the requested one) is
// ignored, so that it is never taken for the next page.
func (s *session) page(ctx context.Context, after *synkfs.Key) (*wire.SnapshotPage, error) {
	req := &wire.SnapshotRequest{After: after, Limit: s.c.opts.PageSize}
	if err := s.send(ctx, req); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, s.c.opts.AckTimeout)
	defer cancel()
	for {
		m, err := s.recv(pctx)
		if err != nil {
			if ctx.Err() == nil && pctx.Err() != nil {
				s.c.log.Info("no answer from the server: reconnecting", "waited_for", "a snapshot page", "timeout", s.c.opts.AckTimeout)
				return nil, fmt.Errorf("%w: a snapshot page within %s", ErrNoAnswer, s.c.opts.AckTimeout)
			}
			return nil, err
		}
		switch m := m.(type) {
		case *wire.SnapshotPage:
			if !answers(m, after) {
				s.c.log.Debug("ignoring a snapshot page that does not follow the requested key", "after", after.Path())
				continue
			}
			if s.epoch != "" && m.Epoch != s.epoch {
				return nil, fmt.Errorf("server epoch changed during the snapshot (%s -> %s)", s.epoch, m.Epoch)
			}
			s.serverAt(m.Version)
			return m, nil
		case *wire.Notify:
			s.serverAt(m.Version)
		case *wire.Error:
			return nil, &ServerError{Code: m.Code, Message: m.Message}
		default:
			s.c.log.Debug("ignoring message during snapshot", "type", m.Type())
		}
	}
}

// answers reports whether page p can be the answer to a request for the
// records after the key after (nil: from the start): every key it holds,
// and the key to continue after, come after it. A page delivered twice
// repeats keys at or before the key asked after, which its predecessor
// ended with.
func answers(p *wire.SnapshotPage, after *synkfs.Key) bool {
	if after == nil {
		return true
	}
	if len(p.Records) > 0 {
		return after.Less(p.Records[0].Key)
	}
	return p.Next == nil || after.Less(*p.Next)
}

// serverAt notes that the server has reached version v.
func (s *session) serverAt(v uint64) {
	if v > s.target {
		s.target = v
	}
	s.c.update(func(st *State) {
		if v > st.ServerVersion {
			st.ServerVersion = v
		}
	})
}

func (s *session) handle(ctx context.Context, m wire.Message) error {
	switch m := m.(type) {
	case *wire.Changes:
		s.heard = time.Now()
		if m.Version >= s.pullUntil {
			s.pulling = false
		}
		s.serverAt(m.Version)
		if m.Version > s.cursor || (m.Version == s.cursor && len(m.Update)+len(m.Delete) > 0) {
			if err := s.r.ApplyRemote(ctx, s.epoch, m); err != nil {
				return fmt.Errorf("apply changes at version %d: %w", m.Version, err)
			}
			s.cursor = m.Version
		}
		s.heard = time.Now() // applying a large part may take a while
		return s.maybePull(ctx)
	case *wire.Notify:
		s.serverAt(m.Version)
		return s.maybePull(ctx)
	case *wire.Ack:
		if s.inflight == nil || m.Batch != s.inflight.ID {
			s.c.log.Debug("ignoring ack for a batch not in flight", "batch", m.Batch)
			return nil
		}
		s.heard = time.Now()
		if m.Duplicate {
			// No changes reply is owed for a duplicate; pull instead.
			s.pulling = false
		} else {
			s.pullUntil = max(s.pullUntil, m.Version)
		}
		s.serverAt(m.Version)
		if err := s.acked(ctx, m); err != nil {
			return err
		}
		if err := s.pushNext(ctx); err != nil {
			return err
		}
		return s.maybePull(ctx)
	case *wire.Error:
		return s.serverError(ctx, m)
	default:
		s.c.log.Debug("ignoring unexpected message", "type", m.Type())
		return nil
	}
}

// linkLost handles the reader's error. A server that closed the link with
// 1009 (message too big) while a batch was in flight will never take that
// batch: it is rejected record by record so that it does not block the
// ones behind it.
func (s *session) linkLost(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fail(ctx)
	}
	err = fmt.Errorf("read: %w", err)
	if s.inflight != nil && websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
		b := s.inflight
		s.c.log.Warn("server refused a batch as too large", "batch", b.ID, "records", b.Len())
		if aerr := s.acked(ctx, rejectAll(b, wire.CodeTooLarge, "the server closed the link: batch over its message size limit")); aerr != nil {
			return aerr
		}
	}
	return err
}

// rejectAll returns a synthetic ack that rejects every record of b.
func rejectAll(b *Batch, code, msg string) *wire.Ack {
	ack := &wire.Ack{Batch: b.ID, Results: make([]wire.Result, 0, b.Len())}
	for _, r := range b.Update {
		ack.Results = append(ack.Results, wire.Result{Key: r.Key, Status: wire.StatusRejected, Code: code, Message: msg})
	}
	for _, d := range b.Delete {
		ack.Results = append(ack.Results, wire.Result{Key: d.Key, Status: wire.StatusRejected, Code: code, Message: msg})
	}
	return ack
}

// oversize reports, with a code and a sentence, a batch the server would
// refuse by its default limits, so it is rejected without a round trip
// (and without the server closing the link). The size is estimated
// from the bodies and keys.
func oversize(b *Batch) (code, msg string, bad bool) {
	if n := b.Len(); n > wire.DefaultMaxRecords {
		return wire.CodeTooMany, fmt.Sprintf("batch of %d records is over the %d limit", n, wire.DefaultMaxRecords), true
	}
	size := 64
	for _, r := range b.Update {
		size += len(r.Body) + len(r.Type) + len(r.ID) + 48
	}
	for _, d := range b.Delete {
		size += len(d.Type) + len(d.ID) + 48
	}
	if size > wire.DefaultMaxMessage {
		return wire.CodeTooLarge, fmt.Sprintf("batch of about %d bytes is over the %d-byte message limit", size, wire.DefaultMaxMessage), true
	}
	return "", "", false
}

// serverError handles an error message: a batch refused for good is
// rejected record by record; anything else ends the connection. Only an
// error that names the batch in flight refuses it: the server reads the
// batch id even out of a message it cannot decode (wire.PeekBatch), and an
// error naming no batch may be about another message entirely (say, a
// hello that a faulty link delivered twice), so it must not quarantine
// the batch's changes.
func (s *session) serverError(ctx context.Context, e *wire.Error) error {
	serr := &ServerError{Code: e.Code, Message: e.Message}
	if s.inflight == nil || !serr.Permanent() || e.Batch != s.inflight.ID {
		return serr
	}
	s.c.log.Warn("server refused a batch", "batch", s.inflight.ID, "code", e.Code, "reason", e.Message)
	s.pulling = false
	if err := s.acked(ctx, rejectAll(s.inflight, e.Code, e.Message)); err != nil {
		return err
	}
	if err := s.pushNext(ctx); err != nil {
		return err
	}
	return s.maybePull(ctx)
}

func (s *session) acked(ctx context.Context, ack *wire.Ack) error {
	b := *s.inflight
	s.inflight = nil
	s.c.update(func(st *State) { st.InFlight = 0 })
	if err := s.r.Acked(ctx, b, ack); err != nil {
		return fmt.Errorf("ack batch %d: %w", b.ID, err)
	}
	return nil
}

// pushNext sends the replica's next batch unless one is in flight. The
// push also pulls: the server answers it with the changes since our cursor.
func (s *session) pushNext(ctx context.Context) error {
	for s.inflight == nil {
		b, ok := s.r.NextBatch()
		if !ok {
			return nil
		}
		if b.ID == 0 {
			return errors.New("replica staged a batch with id 0")
		}
		if b.ID < s.lastBatch || b.Len() == 0 {
			// Applied before (or nothing to send): settle it locally. The
			// last applied batch is resent: its duplicate ack carries
			// its results.
			ack := &wire.Ack{Batch: b.ID, Duplicate: b.Len() > 0, Version: s.cursor}
			if err := s.r.Acked(ctx, b, ack); err != nil {
				return fmt.Errorf("ack batch %d: %w", b.ID, err)
			}
			continue
		}
		if code, why, bad := oversize(&b); bad {
			s.c.log.Warn("batch over the server limits", "batch", b.ID, "code", code, "reason", why)
			if err := s.r.Acked(ctx, b, rejectAll(&b, code, why)); err != nil {
				return fmt.Errorf("ack batch %d: %w", b.ID, err)
			}
			continue
		}
		msg := &wire.Changes{Version: s.cursor, Batch: b.ID, Update: b.Update, Delete: b.Delete}
		if msg.Update == nil {
			msg.Update = []synkfs.Record{}
		}
		if msg.Delete == nil {
			msg.Delete = []synkfs.Tombstone{}
		}
		s.inflight = &b
		s.pulling, s.pullUntil = true, s.target
		s.c.update(func(st *State) { st.InFlight = b.ID })
		s.heard = time.Now()
		if err := s.send(ctx, msg); err != nil {
			return err
		}
	}
	return nil
}

// maybePull asks for changes when the server is ahead and no changes reply
// is already on its way: notifies coalesce into one pull.
func (s *session) maybePull(ctx context.Context) error {
	if s.pulling || s.target <= s.cursor {
		return nil
	}
	s.pulling, s.pullUntil = true, s.target
	s.heard = time.Now()
	return s.send(ctx, &wire.Changes{Version: s.cursor})
}

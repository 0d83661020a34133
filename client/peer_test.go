package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// peer is a small scripted server speaking the extended protocol over a
// real loopback WebSocket, with knobs to misbehave. It stands in for
// package server in the unit tests of the client's link handling.
type peer struct {
	t  *testing.T
	hs *httptest.Server

	mu        sync.Mutex
	epoch     string
	version   uint64
	floor     uint64
	recs      map[synkfs.Key]synkfs.Change
	lastBatch map[string]uint64
	applied   int // batches applied
	accepted  int // connections accepted
	conns     map[*wire.Conn]bool

	// knobs
	dropBeforeAck int    // close the link after applying this many batches, before acking
	dropOnReceive int    // close the link on receiving this many batches, applying nothing
	refuse        string // answer every batch with an error of this code
	refuseOnce    bool   // clear refuse after one use
	mute          bool   // after the welcome, stop reading (and answering pings)
	stray         string // answer the next batch with an error of this code naming no batch, applying nothing
	repeatPages   bool   // send every snapshot page twice, as a faulty link might
	twice         bool   // repeat every message both ways, as a link that repeats whole messages
	staleReplies  int    // answer this many pulls as of one version back, as a server whose version read is stale

	stop chan struct{} // closed when the test ends
	wmu  sync.Mutex    // keeps a repeated message next to its first copy
}

// write sends m on conn, twice in a row when the twice knob is on.
func (p *peer) write(ctx context.Context, conn *wire.Conn, m wire.Message) error {
	p.mu.Lock()
	n := 1
	if p.twice {
		n = 2
	}
	p.mu.Unlock()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for range n {
		if err := conn.Write(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func newPeer(t *testing.T) *peer {
	p := &peer{t: t, epoch: "e1", recs: map[synkfs.Key]synkfs.Change{},
		lastBatch: map[string]uint64{}, conns: map[*wire.Conn]bool{}, stop: make(chan struct{})}
	p.hs = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.hs.Close)
	t.Cleanup(func() { close(p.stop); p.dropAll() })
	return p
}

func (p *peer) url() string { return "ws" + strings.TrimPrefix(p.hs.URL, "http") + "/" }

func (p *peer) set(fn func(p *peer)) {
	p.mu.Lock()
	fn(p)
	p.mu.Unlock()
}

func (p *peer) get(fn func(p *peer)) { p.set(fn) }

// reset gives the peer a new epoch and history, as an in-memory server
// restarting would, and drops every link.
func (p *peer) reset(epoch string, recs ...synkfs.Record) {
	p.mu.Lock()
	p.epoch, p.version, p.floor = epoch, 0, 0
	p.recs = map[synkfs.Key]synkfs.Change{}
	p.lastBatch = map[string]uint64{}
	if len(recs) > 0 {
		p.version = 1
		for _, r := range recs {
			r.Version = 1
			p.recs[r.Key] = synkfs.Change{Record: r}
		}
	}
	p.mu.Unlock()
	p.dropAll()
}

// dropAll closes every link without a close handshake.
func (p *peer) dropAll() {
	p.mu.Lock()
	conns := make([]*wire.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.WS().CloseNow()
	}
}

func (p *peer) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	conn := wire.NewConn(ws, nil)
	defer ws.CloseNow()
	ctx := r.Context()
	p.mu.Lock()
	p.accepted++
	p.conns[conn] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, conn)
		p.mu.Unlock()
	}()

	client := ""
	for {
		m, err := conn.Read(ctx)
		if err != nil {
			var ce *wire.CodeError
			if errors.As(err, &ce) {
				p.write(ctx, conn, &wire.Error{Code: ce.Code, Message: ce.Message})
				continue
			}
			return
		}
		switch m := m.(type) {
		case *wire.Hello:
			client = m.Client
			p.mu.Lock()
			w := &wire.Welcome{Protocol: 1, Epoch: p.epoch, Version: p.version, Floor: p.floor,
				Features:  []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot},
				LastBatch: p.lastBatch[client],
				Resync:    m.Epoch != p.epoch || m.Version < p.floor || m.Version > p.version}
			if slices.Contains(m.Features, wire.FeatureZstd) {
				w.Features = append(w.Features, wire.FeatureZstd)
			}
			mute := p.mute
			p.mu.Unlock()
			if err := p.write(ctx, conn, w); err != nil {
				return
			}
			if slices.Contains(w.Features, wire.FeatureZstd) {
				conn.EnableZstd()
			}
			if mute {
				// Read nothing more: pings go unanswered.
				select {
				case <-ctx.Done():
				case <-p.stop:
				}
				return
			}
		case *wire.Changes:
			p.mu.Lock()
			n := 1
			if p.twice {
				n = 2 // the link repeated the client's message
			}
			p.mu.Unlock()
			for range n {
				if !p.changes(ctx, conn, client, m) {
					return
				}
			}
		case *wire.SnapshotRequest:
			page := p.page(m)
			p.write(ctx, conn, page)
			p.mu.Lock()
			repeat := p.repeatPages
			p.mu.Unlock()
			if repeat {
				conn.Write(ctx, page)
			}
		}
	}
}

// changes handles a pull or a push; false drops the link.
func (p *peer) changes(ctx context.Context, conn *wire.Conn, client string, m *wire.Changes) bool {
	p.mu.Lock()
	var ack *wire.Ack
	if m.Batch != 0 {
		if p.dropOnReceive > 0 {
			p.dropOnReceive--
			p.mu.Unlock()
			return false
		}
		if p.stray != "" {
			code := p.stray
			p.stray = ""
			p.mu.Unlock()
			p.write(ctx, conn, &wire.Error{Code: code, Message: "hello must be the first message, and only once"})
			return true
		}
		if p.refuse != "" {
			code := p.refuse
			if p.refuseOnce {
				p.refuse = ""
			}
			p.mu.Unlock()
			p.write(ctx, conn, &wire.Error{Code: code, Message: "refused by the test", Batch: m.Batch})
			return true
		}
		if m.Batch <= p.lastBatch[client] {
			ack = &wire.Ack{Batch: m.Batch, Duplicate: true, Version: p.version}
		} else {
			ack = p.apply(client, m)
			if p.dropBeforeAck > 0 {
				p.dropBeforeAck--
				p.mu.Unlock()
				p.notifyAll()
				return false
			}
		}
	}
	upto := p.version
	if m.Batch == 0 && p.staleReplies > 0 && upto > 0 {
		p.staleReplies--
		upto--
	}
	reply := &wire.Changes{Version: upto, Update: []synkfs.Record{}, Delete: []synkfs.Tombstone{}}
	for _, c := range p.recs {
		if c.Version <= m.Version || c.Version > upto {
			continue
		}
		if c.Deleted {
			reply.Delete = append(reply.Delete, c.Tombstone())
		} else {
			reply.Update = append(reply.Update, c.Record)
		}
	}
	p.mu.Unlock()
	if ack != nil {
		if p.write(ctx, conn, ack) != nil {
			return false
		}
	}
	if p.write(ctx, conn, reply) != nil {
		return false
	}
	if ack != nil && !ack.Duplicate {
		p.notifyAll()
	}
	return true
}

// apply commits a batch at one new version, checking bases. p.mu is held.
func (p *peer) apply(client string, m *wire.Changes) *wire.Ack {
	v := p.version + 1
	ack := &wire.Ack{Batch: m.Batch, Version: v}
	check := func(k synkfs.Key, base uint64) bool {
		cur, ok := p.recs[k]
		if !ok || cur.Version <= base && !(base == 0 && !cur.Deleted) {
			return true
		}
		res := wire.Result{Key: k, Status: wire.StatusConflict}
		if cur.Deleted {
			res.Deleted, res.CurrentVersion = true, cur.Version
		} else {
			rec := cur.Record
			res.Current = &rec
		}
		ack.Results = append(ack.Results, res)
		return false
	}
	for _, r := range m.Update {
		if check(r.Key, r.Version) {
			r.Version = v
			p.recs[r.Key] = synkfs.Change{Record: r}
		}
	}
	for _, d := range m.Delete {
		if check(d.Key, d.Version) {
			p.recs[d.Key] = synkfs.Change{Record: synkfs.Record{Key: d.Key, Version: v}, Deleted: true}
		}
	}
	p.version = v
	p.lastBatch[client] = m.Batch
	p.applied++
	return ack
}

func (p *peer) notifyAll() {
	p.mu.Lock()
	n := &wire.Notify{Version: p.version}
	conns := make([]*wire.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.write(ctx, c, n)
		cancel()
	}
}

func (p *peer) page(m *wire.SnapshotRequest) *wire.SnapshotPage {
	p.mu.Lock()
	defer p.mu.Unlock()
	var keys []synkfs.Key
	for k, c := range p.recs {
		if !c.Deleted && (m.After == nil || m.After.Less(k)) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b synkfs.Key) int {
		if a.Less(b) {
			return -1
		}
		return 1
	})
	page := &wire.SnapshotPage{Epoch: p.epoch, Version: p.version, Records: []synkfs.Record{}, Done: true}
	if m.Limit > 0 && len(keys) > m.Limit {
		keys = keys[:m.Limit]
		last := keys[len(keys)-1]
		page.Next, page.Done = &last, false
	}
	for _, k := range keys {
		page.Records = append(page.Records, p.recs[k].Record)
	}
	return page
}

// checkLeaks fails the test if goroutines started during it outlive it.
// Register it first, so that its cleanup runs last.
func checkLeaks(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d now, %d before\n%s", runtime.NumGoroutine(), base, buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

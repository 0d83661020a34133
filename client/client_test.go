package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/client/memreplica"
	"github.com/synkfs/synkfs/wire"
)

func key(id string) synkfs.Key { return synkfs.Key{Type: "note", ID: id} }

// fast returns options for loopback tests: short backoff and pings.
func fast(url, id string) client.Options {
	return client.Options{URL: url, ClientID: id,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		PingInterval: time.Second, PingTimeout: time.Second}
}

// running is a client started with Run in the background.
type running struct {
	c    *client.Client
	r    *memreplica.Replica
	stop func() error
}

func start(t *testing.T, opts client.Options, r *memreplica.Replica) *running {
	t.Helper()
	c := client.New(opts, r)
	r.OnStage(c.Kick)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	var err error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return &running{c: c, r: r, stop: stop}
}

// wait polls cond until it holds or a few seconds pass.
func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func body(r *memreplica.Replica, id string) string {
	rec, ok := r.Get(key(id))
	if !ok {
		return "<none>"
	}
	return string(rec.Body)
}

func TestTwoClientsConverge(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	a := start(t, fast(p.url(), "a"), memreplica.New())
	b := start(t, fast(p.url(), "b"), memreplica.New())

	a.r.Put(key("1"), `{"n":1}`)
	b.r.Put(key("2"), `{"n":2}`)
	wait(t, "both records on both sides", func() bool {
		return body(a.r, "2") == `{"n":2}` && body(b.r, "1") == `{"n":1}`
	})
	b.r.Delete(key("1"))
	wait(t, "the delete to reach a", func() bool { return body(a.r, "1") == "<none>" })
	wait(t, "nothing staged", func() bool { return a.r.Pending() == 0 && b.r.Pending() == 0 })

	var version uint64
	p.get(func(p *peer) { version = p.version })
	wait(t, "both cursors at the server version", func() bool {
		_, va := a.r.Cursor()
		_, vb := b.r.Cursor()
		return va == version && vb == version
	})
	if st := a.c.State(); !st.Connected || st.ServerVersion != version || st.LastContact.IsZero() {
		t.Errorf("state = %+v, want connected at version %d", st, version)
	}
	if err := a.stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
}

// The link drops after the server applied a batch and before its ack: on
// reconnecting, the welcome's lastBatch settles it, and it is not applied
// twice.
func TestExactlyOnceWhenAckIsLost(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	p.set(func(p *peer) { p.dropBeforeAck = 1 })
	r := memreplica.New()
	r.Put(key("1"), `{"n":1}`)
	c := start(t, fast(p.url(), "a"), r)
	wait(t, "the batch to leave the stage", func() bool { return r.Pending() == 0 })
	wait(t, "the record's version", func() bool {
		rec, ok := r.Get(key("1"))
		return ok && rec.Version == 1
	})
	p.get(func(p *peer) {
		if p.applied != 1 || p.accepted < 2 {
			t.Errorf("applied %d batches over %d connections, want 1 over at least 2", p.applied, p.accepted)
		}
	})
	if dup, _ := r.Stats(); dup != 1 {
		t.Errorf("duplicate acks = %d, want 1", dup)
	}
	c.stop()
}

// The link drops when the batch arrives, before the server applied it: the
// batch is resent under the same id after reconnecting and applied once.
func TestResendAfterLostLink(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	r := memreplica.New()
	syncOnce(t, client.New(fast(p.url(), "a"), r)) // a cursor in this epoch: no resync below
	p.set(func(p *peer) { p.dropOnReceive = 2 })
	r.Put(key("1"), `{"n":1}`)
	r.Put(key("2"), `{"n":2}`)
	c := start(t, fast(p.url(), "a"), r)
	wait(t, "the batch to be applied", func() bool { return r.Pending() == 0 })
	p.get(func(p *peer) {
		if p.applied != 1 || p.accepted != 4 || p.lastBatch["a"] != 1 {
			t.Errorf("applied %d batches (last %d) over %d connections, want batch 1 once over 4",
				p.applied, p.lastBatch["a"], p.accepted)
		}
	})
	if dup, _ := r.Stats(); dup != 0 {
		t.Errorf("duplicate acks = %d, want 0", dup)
	}
	wait(t, "the attempt count to reset once caught up", func() bool { return c.c.State().Attempts == 0 })
	c.stop()
}

func TestConflictReported(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	b := memreplica.New()
	bc := client.New(fast(p.url(), "b"), b)
	syncOnce(t, bc)

	a := start(t, fast(p.url(), "a"), memreplica.New())
	a.r.Put(key("1"), `{"n":1}`)
	wait(t, "a's create", func() bool { return a.r.Pending() == 0 })

	// b, offline, has not seen a's record: its create has base 0 and
	// conflicts.
	b.Put(key("1"), `{"n":"b"}`)
	syncOnce(t, bc)
	if n := len(b.Conflicts()); n != 1 {
		t.Fatalf("%d conflicts, want 1", n)
	}
	got := b.Conflicts()[0]
	if got.Key != key("1") || got.Current == nil || string(got.Current.Body) != `{"n":1}` {
		t.Errorf("conflict = %+v, want the server's record", got)
	}
	if body(b, "1") != `{"n":1}` || b.Pending() != 0 {
		t.Errorf("after the conflict b has %s with %d pending, want the server's record", body(b, "1"), b.Pending())
	}
}

func syncOnce(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRefusedBatchIsRejectedNotRetried(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	p.set(func(p *peer) { p.refuse, p.refuseOnce = wire.CodeInvalid, true })
	r := memreplica.New()
	r.Put(key("bad"), `{"n":0}`)
	c := start(t, fast(p.url(), "a"), r)
	wait(t, "the rejection", func() bool { return len(r.Rejected()) == 1 })
	if got := r.Rejected()[0]; got.Code != wire.CodeInvalid || got.Key != key("bad") {
		t.Errorf("rejected = %+v", got)
	}
	// The next batch goes through on the same connection.
	r.Put(key("good"), `{"n":1}`)
	wait(t, "the next batch", func() bool { return r.Pending() == 0 && p.applied == 1 })
	p.get(func(p *peer) {
		if p.accepted != 1 {
			t.Errorf("%d connections, want 1", p.accepted)
		}
	})
	c.stop()
}

func TestBusyBatchIsRetried(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	p.set(func(p *peer) { p.refuse, p.refuseOnce = wire.CodeBusy, true })
	r := memreplica.New()
	r.Put(key("1"), `{"n":1}`)
	c := start(t, fast(p.url(), "a"), r)
	wait(t, "the batch to be applied", func() bool { return r.Pending() == 0 })
	p.get(func(p *peer) {
		if p.applied != 1 || p.accepted != 2 {
			t.Errorf("applied %d over %d connections, want 1 over 2", p.applied, p.accepted)
		}
	})
	if len(r.Rejected()) != 0 {
		t.Errorf("rejected %v, want none", r.Rejected())
	}
	c.stop()
}

// A new epoch makes the client walk a snapshot (in several pages), keep its
// local edit and push it against the new history.
func TestNewEpochTakesSnapshot(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	opts := fast(p.url(), "a")
	opts.PageSize = 2
	r := memreplica.New()
	r.Put(key("old"), `{"n":0}`)
	c := client.New(opts, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}

	var recs []synkfs.Record
	for i := range 5 {
		recs = append(recs, synkfs.Record{Key: key(fmt.Sprint("s", i)), Body: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	p.reset("e2", recs...)
	r.Put(key("mine"), `{"n":9}`)
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, snaps := r.Stats(); snaps != 2 { // the first sync's empty epoch also resyncs
		t.Errorf("snapshots = %d, want 2", snaps)
	}
	if epoch, v := r.Cursor(); epoch != "e2" || v != 2 {
		t.Errorf("cursor = %s@%d, want e2@2", epoch, v)
	}
	got := r.Records()
	if len(got) != 6 || body(r, "old") != "<none>" || body(r, "mine") != `{"n":9}` || body(r, "s4") != `{"i":4}` {
		t.Errorf("records after resync = %v", got)
	}
	p.get(func(p *peer) {
		if c, ok := p.recs[key("mine")]; !ok || c.Version != 2 {
			t.Errorf("server has %+v for the local edit, want it at version 2", c)
		}
	})
}

// A server that stops reading stops answering pings: the client drops the
// link and reconnects.
func TestDeadLinkDetectedByPing(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	p.set(func(p *peer) { p.mute = true })
	opts := fast(p.url(), "a")
	opts.PingInterval, opts.PingTimeout = 20*time.Millisecond, 50*time.Millisecond
	c := start(t, opts, memreplica.New())
	wait(t, "a reconnection", func() bool {
		var n int
		p.get(func(p *peer) { n = p.accepted })
		return n >= 2
	})
	if err := c.c.State().LastError; err == nil || !errors.Is(err, client.ErrLinkDead) {
		t.Errorf("last error = %v, want a dead link", err)
	}
	c.stop()
}

func TestSyncOnceUnreachable(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	url := p.url()
	p.hs.Close()
	r := memreplica.New()
	r.Put(key("1"), `{}`)
	c := client.New(fast(url, "a"), r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.SyncOnce(ctx)
	if err == nil {
		t.Fatal("SyncOnce against a closed port succeeded")
	}
	if r.Pending() != 1 {
		t.Errorf("pending = %d, want the edit still staged", r.Pending())
	}
	if c.State().LastError == nil {
		t.Error("state has no last error")
	}
}

// Run against nothing keeps retrying with growing attempts and returns
// promptly when cancelled.
func TestRunRetriesUntilCancelled(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	url := p.url()
	p.hs.Close()
	c := start(t, fast(url, "a"), memreplica.New())
	wait(t, "several attempts", func() bool { return c.c.State().Attempts >= 4 })
	began := time.Now()
	if err := c.stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("Run took %v to stop", d)
	}
}

// Offline edits are pushed when the server comes back, and the client
// catches up with what others did meanwhile.
func TestOfflineThenOnline(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	a := start(t, fast(p.url(), "a"), memreplica.New())
	b := start(t, fast(p.url(), "b"), memreplica.New())
	a.r.Put(key("1"), `{"n":1}`)
	wait(t, "b to see 1", func() bool { return body(b.r, "1") == `{"n":1}` })

	b.stop()
	a.r.Put(key("2"), `{"n":2}`)
	b.r.Put(key("3"), `{"n":3}`)
	wait(t, "a's edit applied", func() bool { return a.r.Pending() == 0 })
	if body(b.r, "2") != "<none>" {
		t.Fatal("an offline replica received a change")
	}
	b2 := start(t, fast(p.url(), "b"), b.r)
	wait(t, "convergence", func() bool {
		return body(a.r, "3") == `{"n":3}` && body(b2.r, "2") == `{"n":2}` && b2.r.Pending() == 0
	})
}

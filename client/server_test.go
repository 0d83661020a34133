package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/client/memreplica"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/server"
)

// realServer starts server.New over a fresh memstore on loopback and stops
// it when the test ends.
func realServer(t *testing.T) (addr string, store *memstore.Store) {
	t.Helper()
	store = memstore.New()
	srv := server.New(store, nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
		store.Close()
	})
	return strings.TrimPrefix(hs.URL, "http://"), store
}

func TestServerTwoClientsConverge(t *testing.T) {
	checkLeaks(t)
	addr, store := realServer(t)
	url := "ws://" + addr + "/"
	a := start(t, fast(url, "a"), memreplica.New())
	b := start(t, fast(url, "b"), memreplica.New())
	for i := range 20 {
		a.r.Put(key("a"+string(rune('a'+i))), `{"from":"a"}`)
		b.r.Put(key("b"+string(rune('a'+i))), `{"from":"b"}`)
	}
	a.r.Delete(key("ac"))
	wait(t, "convergence", func() bool {
		return a.r.Pending() == 0 && b.r.Pending() == 0 &&
			len(a.r.Records()) == 39 && len(b.r.Records()) == 39 &&
			cursorAt(a.r, store.Version()) && cursorAt(b.r, store.Version())
	})
	if store.Count() != 39 {
		t.Errorf("server holds %d records, want 39", store.Count())
	}
	for _, rec := range a.r.Records() {
		got, err := store.Get(rec.Key)
		if err != nil || got.Version != rec.Version || string(got.Body) != string(rec.Body) {
			t.Errorf("%s: replica %d %s, server %d %s (%v)", rec.Key, rec.Version, rec.Body, got.Version, got.Body, err)
		}
	}
}

func cursorAt(r *memreplica.Replica, v uint64) bool {
	_, got := r.Cursor()
	return got == v
}

// The server applies a batch whose ack never reaches the client; after the
// link is cut and restored, the batch is settled without a second apply.
func TestServerExactlyOnceAcrossReconnect(t *testing.T) {
	checkLeaks(t)
	addr, store := realServer(t)
	px := newProxy(t, addr)
	r := memreplica.New()
	c := start(t, fast(px.url(), "a"), r)
	wait(t, "the first sync", func() bool { return c.c.State().Connected && cursorAt(r, store.Version()) })

	before := store.Version()
	px.set(func(p *proxy) { p.dropDown = true })
	r.Put(key("1"), `{"n":1}`)
	wait(t, "the server to apply the batch", func() bool { return store.Version() == before+1 })
	px.cut()
	px.set(func(p *proxy) { p.dropDown = false })
	wait(t, "the batch to be settled", func() bool { return r.Pending() == 0 && cursorAt(r, before+1) })
	if dup, _ := r.Stats(); dup != 1 {
		t.Errorf("duplicate acks = %d, want 1", dup)
	}
	if v := store.Version(); v != before+1 {
		t.Errorf("server version %d, want %d: the batch was applied twice", v, before+1)
	}
	if rec, ok := r.Get(key("1")); !ok || rec.Version != before+1 {
		t.Errorf("replica has %+v, want version %d", rec, before+1)
	}
}

// A batch with a conflict whose ack is lost: the client resends it after
// reconnecting and the server's duplicate ack still reports the conflict.
func TestServerLostAckStillReportsConflict(t *testing.T) {
	checkLeaks(t)
	addr, store := realServer(t)
	px := newProxy(t, addr)
	r := memreplica.New()
	c := start(t, fast(px.url(), "a"), r)
	wait(t, "the first sync", func() bool { return c.c.State().Connected && cursorAt(r, store.Version()) })

	// Another writer creates note/1 behind the replica's back, unseen.
	px.set(func(p *proxy) { p.dropDown = true })
	before := store.Version()
	if err := store.Apply(context.Background(), synkfs.Batch{Version: before + 1, Puts: []synkfs.Record{{Key: key("1"), Version: before + 1, Body: []byte(`{"by":"other"}`)}}}); err != nil {
		t.Fatal(err)
	}
	// Stage both before the client hears of either, so they go as one
	// batch: a batch of the conflict alone would apply nothing and move
	// no version.
	r.OnStage(func() {})
	r.Put(key("1"), `{"by":"a"}`) // a create: conflicts
	r.Put(key("2"), `{"by":"a"}`) // applies
	r.OnStage(c.c.Kick)
	c.c.Kick()
	wait(t, "the server to apply the batch", func() bool { return store.Version() == before+2 })
	px.cut()
	px.set(func(p *proxy) { p.dropDown = false })
	wait(t, "the batch to be settled", func() bool { return r.Pending() == 0 && cursorAt(r, before+2) })
	if dup, _ := r.Stats(); dup != 1 {
		t.Errorf("duplicate acks = %d, want 1", dup)
	}
	cs := r.Conflicts()
	if len(cs) != 1 || cs[0].Key != key("1") || cs[0].Current == nil || string(cs[0].Current.Body) != `{"by":"other"}` {
		t.Fatalf("conflicts = %+v; want note/1 against the other writer's record", cs)
	}
}

// A new server (new epoch) behind the same address: the client walks a
// snapshot, keeps its offline edit and pushes it.
func TestServerEpochChange(t *testing.T) {
	checkLeaks(t)
	addr1, store1 := realServer(t)
	px := newProxy(t, addr1)
	r := memreplica.New()
	opts := fast(px.url(), "a")
	opts.PageSize = 3
	c := client.New(opts, r)
	r.Put(key("old"), `{"n":0}`)
	syncOnce(t, c)
	if store1.Count() != 1 {
		t.Fatalf("first server holds %d records", store1.Count())
	}

	addr2, store2 := realServer(t)
	seed := memreplica.New()
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7"} {
		seed.Put(key(id), `{"seed":true}`)
	}
	syncOnce(t, client.New(fast("ws://"+addr2+"/", "seed"), seed))

	px.set(func(p *proxy) { p.target = addr2 })
	r.Put(key("mine"), `{"n":9}`)
	syncOnce(t, c)
	if epoch, v := r.Cursor(); epoch != store2.Epoch() || v != store2.Version() {
		t.Errorf("cursor %s@%d, want %s@%d", epoch, v, store2.Epoch(), store2.Version())
	}
	if _, snaps := r.Stats(); snaps < 2 {
		t.Errorf("snapshots = %d, want one per epoch", snaps)
	}
	if body(r, "old") != "<none>" || body(r, "s7") != `{"seed":true}` || body(r, "mine") != `{"n":9}` {
		t.Errorf("replica after the epoch change: %v", r.Records())
	}
	if _, err := store2.Get(key("mine")); err != nil {
		t.Errorf("offline edit did not reach the new server: %v", err)
	}
}

// Offline (connections refused) then online: staged edits go out, and the
// replica catches up with what happened meanwhile.
func TestServerOfflineThenOnline(t *testing.T) {
	checkLeaks(t)
	addr, store := realServer(t)
	px := newProxy(t, addr)
	a := start(t, fast("ws://"+addr+"/", "a"), memreplica.New())
	b := start(t, fast(px.url(), "b"), memreplica.New())
	wait(t, "b connected", func() bool { return b.c.State().Connected })

	px.set(func(p *proxy) { p.down = true })
	px.cut()
	wait(t, "b to notice", func() bool { return !b.c.State().Connected })
	a.r.Put(key("1"), `{"by":"a"}`)
	b.r.Put(key("2"), `{"by":"b"}`)
	wait(t, "a's edit on the server", func() bool { return a.r.Pending() == 0 })
	wait(t, "b's attempts to fail", func() bool { return b.c.State().Attempts >= 2 })
	if b.r.Pending() != 1 || body(b.r, "1") != "<none>" {
		t.Fatal("b synced while offline")
	}

	px.set(func(p *proxy) { p.down = false })
	wait(t, "convergence", func() bool {
		return b.r.Pending() == 0 && body(b.r, "1") == `{"by":"a"}` && body(a.r, "2") == `{"by":"b"}`
	})
	if store.Count() != 2 {
		t.Errorf("server holds %d records, want 2", store.Count())
	}
}

// A link that stays open but carries nothing (frozen relay) is detected by
// the ping timeout, and the client reconnects.
func TestServerDeadLinkByPing(t *testing.T) {
	checkLeaks(t)
	addr, _ := realServer(t)
	px := newProxy(t, addr)
	opts := fast(px.url(), "a")
	opts.PingInterval, opts.PingTimeout = 30*time.Millisecond, 100*time.Millisecond
	r := memreplica.New()
	c := start(t, opts, r)
	wait(t, "connected", func() bool { return c.c.State().Connected })

	px.set(func(p *proxy) { p.frozen = true })
	wait(t, "the dead link to be dropped", func() bool {
		return errors.Is(c.c.State().LastError, client.ErrLinkDead)
	})
	px.set(func(p *proxy) { p.frozen = false })
	r.Put(key("1"), `{}`)
	wait(t, "a new link to carry the edit", func() bool { return r.Pending() == 0 })
	var n int
	px.set(func(p *proxy) { n = p.connected })
	if n < 2 {
		t.Errorf("%d connections, want a reconnection", n)
	}
}

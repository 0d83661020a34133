package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

func TestHandshake(t *testing.T) {
	h := start(t, nil, nil)
	e := h.ext(t)
	w := e.hello("c1", "", 0, wire.FeatureAck, "teleport", wire.FeatureSnapshot)
	if w.Protocol != 1 || w.Epoch != h.store.Epoch() || w.Version != 0 || w.LastBatch != 0 {
		t.Fatalf("welcome = %+v", w)
	}
	if strings.Join(w.Features, ",") != "ack,snapshot" {
		t.Errorf("features = %v, want the intersection ack,snapshot", w.Features)
	}
	if !w.Resync {
		t.Error("a client without an epoch must be told to resync")
	}
	// Without a client id there is nothing to count batches by: no ack.
	e2 := h.ext(t)
	if w := e2.hello("", h.store.Epoch(), 0); slicesContain(w.Features, wire.FeatureAck) || w.Resync {
		t.Errorf("anonymous welcome = %+v", w)
	}
	// A second hello is refused.
	e2.send(&wire.Hello{Protocol: 1})
	if m := next[*wire.Error](e2); m.Code != wire.CodeBadMessage {
		t.Errorf("second hello: %+v", m)
	}
}

func push(e *ext, version, batch uint64, update []synkfs.Record, del []synkfs.Tombstone) *wire.Ack {
	e.t.Helper()
	e.send(&wire.Changes{Version: version, Batch: batch, Update: update, Delete: del})
	return next[*wire.Ack](e)
}

// TestExactlyOnce: a batch resent after a forced reconnect (and after a
// server restart over the same store) is acknowledged as a duplicate and
// applied once.
func TestExactlyOnce(t *testing.T) {
	store := memstore.New()
	h := start(t, store, nil)
	e := h.ext(t)
	e.hello("c1", store.Epoch(), 0)
	batch := []synkfs.Record{rec("doc", "1", 0, `{"n":1}`), rec("doc", "2", 0, `{"n":2}`)}
	ack := push(e, 0, 1, batch, nil)
	if ack.Batch != 1 || ack.Version != 1 || ack.Duplicate || len(ack.Results) != 0 {
		t.Fatalf("ack = %+v", ack)
	}
	if ch := next[*wire.Changes](e); ch.Version != 1 || len(ch.Update) != 2 {
		t.Fatalf("changes after ack = %+v", ch)
	}
	e.conn.WS().CloseNow() // the link drops before the client saw anything

	e = h.ext(t)
	if w := e.hello("c1", store.Epoch(), 0); w.LastBatch != 1 {
		t.Fatalf("welcome lastBatch = %d, want 1", w.LastBatch)
	}
	ack = push(e, 0, 1, batch, nil)
	if !ack.Duplicate || ack.Batch != 1 || ack.Version != 1 {
		t.Fatalf("resent batch ack = %+v, want duplicate at version 1", ack)
	}
	// Batch 2 goes on; a resent older batch is a duplicate too.
	ack = push(e, 1, 2, []synkfs.Record{rec("doc", "1", 1, `{"n":10}`)}, nil)
	if ack.Duplicate || ack.Version != 2 {
		t.Fatalf("batch 2 ack = %+v", ack)
	}
	next[*wire.Changes](e)
	if ack = push(e, 2, 1, batch, nil); !ack.Duplicate || ack.Version != 2 {
		t.Fatalf("old batch ack = %+v", ack)
	}
	if r, _ := store.Get(synkfs.Key{Type: "doc", ID: "1"}); r.Version != 2 || store.Version() != 2 {
		t.Fatalf("doc/1 at %d, store at %d; want 2 and 2", r.Version, store.Version())
	}

	// A new server over the same store remembers the batch ids.
	h2 := start(t, store, nil)
	e = h2.ext(t)
	if w := e.hello("c1", store.Epoch(), 2); w.LastBatch != 2 || w.Resync {
		t.Fatalf("welcome after restart = %+v", w)
	}
	if ack = push(e, 2, 2, batch, nil); !ack.Duplicate {
		t.Fatalf("batch 2 after restart = %+v", ack)
	}
	// Another client id counts its own batches.
	o := h2.ext(t)
	o.hello("c2", store.Epoch(), 2)
	if ack = push(o, 2, 1, []synkfs.Record{rec("doc", "3", 0, `{}`)}, nil); ack.Duplicate || ack.Version != 3 {
		t.Fatalf("c2 batch 1 = %+v", ack)
	}
}

// TestConflicts: stale bases are reported with the server's record and not
// applied; rejected records are reported; the rest of the batch applies.
func TestConflicts(t *testing.T) {
	h := start(t, nil, nil)
	a, b := h.ext(t), h.ext(t)
	a.hello("a", h.store.Epoch(), 0)
	b.hello("b", h.store.Epoch(), 0)
	if ack := push(a, 0, 1, []synkfs.Record{rec("u", "1", 0, `{"by":"a"}`), rec("u", "2", 0, `{}`)}, nil); ack.Version != 1 || len(ack.Results) != 0 {
		t.Fatalf("a's create: %+v", ack)
	}
	next[*wire.Changes](a)
	if ack := push(a, 1, 2, nil, []synkfs.Tombstone{{Key: synkfs.Key{Type: "u", ID: "2"}, Version: 1}}); ack.Version != 2 {
		t.Fatalf("a's delete: %+v", ack)
	}
	next[*wire.Changes](a)

	ack := push(b, 0, 1, []synkfs.Record{
		rec("u", "1", 0, `{"by":"b"}`), // create onto an existing record
		rec("u", "2", 1, `{"by":"b"}`), // update onto a newer tombstone
		rec("u", "3", 0, `{"by":"b"}`), // a fresh create: applied
		rec("u", "", 0, `{}`),          // can never be stored
	}, []synkfs.Tombstone{{Key: synkfs.Key{Type: "u", ID: "1"}, Version: 0}}) // stale delete, later entry for u/1 wins
	if ack.Version != 3 || len(ack.Results) != 3 {
		t.Fatalf("b's batch ack = %+v", ack)
	}
	next[*wire.Changes](b)
	byID := map[string]wire.Result{}
	for _, r := range ack.Results {
		byID[r.ID] = r
	}
	if r := byID["1"]; r.Status != wire.StatusConflict || r.Current == nil || r.Current.Version != 1 || string(r.Current.Body) != `{"by":"a"}` {
		t.Errorf("u/1 result = %+v", r)
	}
	if r := byID["2"]; r.Status != wire.StatusConflict || !r.Deleted || r.CurrentVersion != 2 {
		t.Errorf("u/2 result = %+v", r)
	}
	if r := byID[""]; r.Status != wire.StatusRejected || r.Code != wire.CodeInvalid || r.Message == "" {
		t.Errorf("invalid record result = %+v", r)
	}
	if r, err := h.store.Get(synkfs.Key{Type: "u", ID: "1"}); err != nil || string(r.Body) != `{"by":"a"}` {
		t.Errorf("u/1 = %+v, %v; want a's record untouched", r, err)
	}
	if r, err := h.store.Get(synkfs.Key{Type: "u", ID: "3"}); err != nil || r.Version != 3 {
		t.Errorf("u/3 = %+v, %v", r, err)
	}
	// With the current base the update applies.
	if ack := push(b, 3, 2, []synkfs.Record{rec("u", "1", 1, `{"by":"b"}`)}, nil); ack.Version != 4 || len(ack.Results) != 0 {
		t.Errorf("update at the current base: %+v", ack)
	}
	if got := metric(t, h, "synkfs_conflicts_total"); got != "2" {
		t.Errorf("conflicts metric = %s, want 2", got)
	}
}

// TestEpochChange: a client that saw another store's epoch is told to
// resync; so is one whose version is above the server's.
func TestEpochChange(t *testing.T) {
	h1 := start(t, nil, nil)
	e := h1.ext(t)
	w1 := e.hello("c", "", 0)
	push(e, 0, 1, []synkfs.Record{rec("a", "1", 0, `{}`)}, nil)

	h2 := start(t, nil, nil) // an in-memory server restarted
	e2 := h2.ext(t)
	w2 := e2.hello("c", w1.Epoch, 1)
	if w2.Epoch == w1.Epoch || !w2.Resync || w2.LastBatch != 0 {
		t.Fatalf("welcome from a new store = %+v (old epoch %s)", w2, w1.Epoch)
	}
	e3 := h1.ext(t)
	if w := e3.hello("c", w1.Epoch, 1); w.Resync {
		t.Fatalf("same epoch and version: %+v", w)
	}
	e4 := h1.ext(t)
	if w := e4.hello("c", w1.Epoch, 7); !w.Resync {
		t.Fatalf("version above the server's: %+v", w)
	}
}

// TestCompactionResync: tombstones past the retention are compacted; a
// client behind the floor is told to resync (extended) or sent the full
// state (legacy).
func TestCompactionResync(t *testing.T) {
	h := start(t, nil, &server.Options{TombstoneRetention: time.Millisecond})
	e := h.ext(t)
	epoch := h.store.Epoch()
	e.hello("c", epoch, 0)
	push(e, 0, 1, []synkfs.Record{rec("a", "1", 0, `{}`), rec("a", "2", 0, `{}`), rec("a", "3", 0, `{}`)}, nil)
	next[*wire.Changes](e)
	push(e, 1, 2, nil, []synkfs.Tombstone{{Key: synkfs.Key{Type: "a", ID: "2"}, Version: 1}})
	next[*wire.Changes](e)
	time.Sleep(5 * time.Millisecond)
	if err := h.srv.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := h.store.Floor(); f != 2 {
		t.Fatalf("floor = %d, want 2", f)
	}
	if w := h.ext(t).hello("c", epoch, 1); !w.Resync || w.Floor != 2 {
		t.Fatalf("client behind the floor: %+v", w)
	}
	if w := h.ext(t).hello("c", epoch, 2); w.Resync {
		t.Fatalf("client at the floor: %+v", w)
	}
	// An extended client pulling from behind the floor is sent away to resync.
	e5 := h.ext(t)
	e5.hello("c5", epoch, 2)
	e5.send(&wire.Changes{Version: 1})
	if code := closeStatus(t, e5.conn.WS()); code != websocket.StatusGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	// A legacy client behind the floor gets every live record.
	l := h.raw(t)
	l.send(`{"type":"changes","version":1}`)
	m := l.recvType("changes")
	if num(t, m["version"]) != 2 || len(entries(m, "update")) != 2 || len(entries(m, "delete")) != 0 {
		t.Fatalf("legacy full state = %v", m)
	}
}

func TestSnapshotPages(t *testing.T) {
	h := start(t, nil, &server.Options{SnapshotPageMax: 7})
	b := synkfs.Batch{Version: 1}
	for i := range 25 {
		b.Puts = append(b.Puts, rec("s", fmt.Sprintf("%03d", i), 1, fmt.Sprintf(`{"i":%d}`, i)))
	}
	if err := h.store.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	e := h.ext(t)
	e.hello("c", "", 0)
	var got []string
	var after *synkfs.Key
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("snapshot does not end")
		}
		e.send(&wire.SnapshotRequest{After: after, Limit: 100})
		p := next[*wire.SnapshotPage](e)
		if len(p.Records) > 7 || p.Version != 1 || p.Epoch != h.store.Epoch() || p.Total != 25 {
			t.Fatalf("page = %+v", p)
		}
		for _, r := range p.Records {
			got = append(got, r.ID)
		}
		if p.Done {
			break
		}
		after = p.Next
	}
	if len(got) != 25 || got[0] != "000" || got[24] != "024" {
		t.Fatalf("snapshot keys = %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("snapshot out of order: %v", got)
		}
	}
	// Without the feature agreed, a snapshot request is an error.
	o := h.ext(t)
	o.hello("o", "", 0, wire.FeatureAck)
	o.send(&wire.SnapshotRequest{})
	if m := next[*wire.Error](o); m.Code != wire.CodeBadMessage {
		t.Fatalf("snapshot without the feature: %+v", m)
	}
}

// TestLimits: each limit gets its error code; a frame over the message
// size closes the link with 1009; the server keeps serving.
func TestLimits(t *testing.T) {
	lim := wire.Limits{MaxMessage: 32 << 10, MaxRecords: 5, MaxRecord: 1 << 10, MaxDepth: 8}
	h := start(t, nil, &server.Options{Limits: lim})
	e := h.ext(t)
	e.hello("c", "", 0)
	many := make([]synkfs.Record, 6)
	for i := range many {
		many[i] = rec("a", fmt.Sprint(i), 0, `{}`)
	}
	cases := []struct {
		name string
		msg  string
		code string
	}{
		{"records per batch", mustEncode(t, &wire.Changes{Batch: 1, Update: many}), wire.CodeTooMany},
		{"record size", mustEncode(t, &wire.Changes{Batch: 2, Update: []synkfs.Record{rec("a", "1", 0, fmt.Sprintf(`{"x":%q}`, strings.Repeat("x", 2000)))}}), wire.CodeTooLarge},
		{"depth", `{"type":"changes","version":0,"update":[{"type":"a","id":"1","version":0,"x":[[[[[[[[1]]]]]]]]}]}`, wire.CodeTooDeep},
		{"garbage", `{"type":"changes"`, wire.CodeBadMessage},
	}
	for _, tc := range cases {
		if err := e.conn.WS().Write(ctxT(t), websocket.MessageText, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		m := next[*wire.Error](e)
		if m.Code != tc.code || m.Message == "" {
			t.Errorf("%s: error %+v, want code %s", tc.name, m, tc.code)
		}
	}
	if h.store.Version() != 0 {
		t.Errorf("refused messages changed the store: version %d", h.store.Version())
	}
	// A good batch still applies on the same link.
	if ack := push(e, 0, 3, many[:5], nil); ack.Version != 1 {
		t.Errorf("good batch after errors: %+v", ack)
	}
	// A frame over the message limit ends the link with 1009.
	big := fmt.Sprintf(`{"type":"changes","version":0,"pad":%q}`, strings.Repeat("p", 40<<10))
	if err := e.conn.WS().Write(ctxT(t), websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	if code := closeStatus(t, e.conn.WS()); code != websocket.StatusMessageTooBig {
		t.Errorf("oversized frame: close %d, want 1009", code)
	}
	if got := metric(t, h, `synkfs_errors_total{code="too-many"}`); got != "1" {
		t.Errorf("too-many errors metric = %s", got)
	}
	// The server is fine.
	l := h.raw(t)
	l.send(`{"type":"changes","version":0}`)
	if m := l.recvType("changes"); num(t, m["version"]) != 1 {
		t.Errorf("after the limits: %v", m)
	}
}

func mustEncode(t *testing.T, m wire.Message) string {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGarbageFrames: each bad message gets an error; the tenth in a row
// closes the link with 1008; a good message in between resets the count.
func TestGarbageFrames(t *testing.T) {
	h := start(t, nil, nil)
	e := h.ext(t)
	e.hello("c", "", 0)
	ws := e.conn.WS()
	for i := range 9 {
		if err := ws.Write(ctxT(t), websocket.MessageText, []byte(fmt.Sprintf("garbage %d", i))); err != nil {
			t.Fatal(err)
		}
		if m := next[*wire.Error](e); m.Code != wire.CodeBadMessage {
			t.Fatalf("garbage %d: %+v", i, m)
		}
	}
	e.send(&wire.Changes{}) // good: resets the count
	next[*wire.Changes](e)
	frames := [][]byte{{0xff, 0xfe}, []byte(`{"type":"ack","batch":1,"version":1}`), []byte(`{"type":"welcome"}`), []byte(`null`)}
	for i := range 10 {
		typ := websocket.MessageText
		if i == 3 {
			typ = websocket.MessageBinary // not zstd
		}
		if err := ws.Write(ctxT(t), typ, frames[i%len(frames)]); err != nil {
			break // the server may close first
		}
	}
	errs := 0
	for {
		m, err := e.conn.Read(ctxT(t))
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Fatalf("close: %v, want 1008", err)
			}
			break
		}
		if _, ok := m.(*wire.Error); ok {
			errs++
		}
	}
	if errs < 9 {
		t.Errorf("got %d error replies before the close, want 9 or 10", errs)
	}
}

// TestStuckClient: a client that pulls but never reads fills its small
// send queue and is dropped, while another client still gets notifies.
func TestStuckClient(t *testing.T) {
	h := start(t, nil, &server.Options{SendQueue: 2})
	// Make each pull reply large, so the stuck link's buffers fill fast.
	b := synkfs.Batch{Version: 1}
	for i := range 200 {
		b.Puts = append(b.Puts, rec("big", fmt.Sprint(i), 1, fmt.Sprintf(`{"pad":%q}`, strings.Repeat(fmt.Sprintf("%08x", i*7919), 250))))
	}
	if err := h.store.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	watcher := h.raw(t)
	watcher.send(`{"type":"changes","version":1}`)
	watcher.recvType("changes")

	stuck := h.dial(t)
	for i := 0; i < 200; i++ {
		if err := stuck.Write(ctxT(t), websocket.MessageText, []byte(`{"type":"changes","version":0}`)); err != nil {
			break // dropped already
		}
	}
	deadline := time.Now().Add(testTimeout)
	for metric(t, h, "synkfs_send_queue_drops_total") != "1" {
		if time.Now().After(deadline) {
			t.Fatal("stuck client was not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	producer := h.raw(t)
	producer.send(`{"type":"changes","version":1,"update":[{"type":"a","id":"1","version":1}]}`)
	producer.recvType("changes")
	if m := watcher.recv(); m["type"] != "notify" || num(t, m["version"]) != 2 {
		t.Fatalf("watcher got %v, want notify 2", m)
	}
}

// TestCoalescedNotify: a client that does not read while many commits land
// gets fewer notifies than commits, the last one at the newest version.
func TestCoalescedNotify(t *testing.T) {
	h := start(t, nil, nil)
	w := h.raw(t)
	w.send(`{"type":"changes","version":0}`)
	w.recvType("changes")
	p := h.ext(t)
	p.hello("p", "", 0)
	const n = 50
	for i := range n {
		p.send(&wire.Changes{Version: uint64(i), Update: []synkfs.Record{rec("c", fmt.Sprint(i), 0, `{}`)}})
	}
	for range n {
		next[*wire.Changes](p)
	}
	got := 0
	for {
		m := w.recv()
		got++
		if num(t, m["version"]) == n {
			break
		}
	}
	if got > n {
		t.Errorf("%d notifies for %d commits", got, n)
	}
	t.Logf("%d notifies for %d commits", got, n)
}

func TestShutdown(t *testing.T) {
	store := memstore.New()
	srv := server.New(store, nil)
	hs := newLoopback(t, srv)
	ws, _, err := websocket.Dial(ctxT(t), hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	c := &raw{t: t, ws: ws}
	c.send(`{"type":"changes","version":0}`)
	c.recvType("changes")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	if code := closeStatus(t, ws); code != websocket.StatusGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, _, err := websocket.Dial(ctxT(t), hs, nil); err == nil {
		t.Error("dial after shutdown succeeded")
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := start(t, nil, nil)
	c := h.raw(t)
	c.send(`{"type":"changes","version":0,"update":[{"type":"a","id":"1","version":0},{"type":"a","id":"2","version":0}]}`)
	c.recvType("changes")
	if body := httpGet(t, h.hs.URL+"/healthz"); !strings.HasPrefix(body, "ok version=1 ") {
		t.Errorf("healthz = %q", body)
	}
	for name, want := range map[string]string{
		"synkfs_clients_connected":     "1",
		"synkfs_store_version":         "1",
		"synkfs_batches_applied_total": "1",
		"synkfs_records_applied_total": "2",
	} {
		if got := metric(t, h, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	for _, name := range []string{"synkfs_bytes_in_total", "synkfs_bytes_out_total"} {
		if got := metric(t, h, name); got == "0" || got == "" {
			t.Errorf("%s = %q", name, got)
		}
	}
}

// metric returns the value of one series from /metrics ("" if absent).
func metric(t testing.TB, h *harness, series string) string {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, h.hs.URL+"/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return rest
		}
	}
	return ""
}

// TestSkipOwn: with skip-own agreed, the changes reply to a push leaves
// out the records of the link's own acknowledged pushes (the acks gave
// their versions) and still brings everyone else's; without it, the
// push's records come back as before.
func TestSkipOwn(t *testing.T) {
	h := start(t, nil, nil)
	other := h.ext(t)
	other.hello("other", "", 0)
	pushed(other, 0, 1, []synkfs.Record{rec("t", "theirs", 0, `{"by":"other"}`)}, nil)

	me := h.ext(t)
	w := me.hello("me", "", 0, append(slices.Clone(allFeatures), wire.FeatureSkipOwn)...)
	if !slicesContain(w.Features, wire.FeatureSkipOwn) {
		t.Fatalf("server did not agree to skip-own: %v", w.Features)
	}
	ack := push(me, 0, 1, []synkfs.Record{rec("t", "mine", 0, `{"by":"me"}`), rec("t", "mine2", 0, `{}`)}, nil)
	ch := next[*wire.Changes](me)
	if len(ch.Update) != 1 || ch.Update[0].ID != "theirs" || ch.Version != ack.Version {
		t.Fatalf("reply with skip-own = %+v, want only t/theirs and version %d", ch, ack.Version)
	}

	// A second push sent before the first one's reply was read (its
	// version still 0) leaves out both pushes' records.
	ack2 := push(me, 0, 2, []synkfs.Record{rec("t", "mine3", 0, `{}`)}, nil)
	if ch := next[*wire.Changes](me); len(ch.Update) != 1 || ch.Update[0].ID != "theirs" || ch.Version != ack2.Version {
		t.Fatalf("reply to a pipelined push = %+v, want only t/theirs", ch)
	}

	plain := h.ext(t)
	plain.hello("plain", "", ack2.Version)
	ack = push(plain, ack2.Version, 1, []synkfs.Record{rec("t", "p", 0, `{}`)}, nil)
	if ch := next[*wire.Changes](plain); len(ch.Update) != 1 || ch.Update[0].ID != "p" || ch.Update[0].Version != ack.Version {
		t.Fatalf("reply without skip-own = %+v, want its own t/p back", ch)
	}
}

// TestDuplicateAnnounces: a batch whose commit landed while its answer was
// lost (here: written to the store as the server would have, with no
// broadcast) is announced to the other clients when its resend gets a
// duplicate ack.
func TestDuplicateAnnounces(t *testing.T) {
	h := start(t, nil, nil)
	watcher := h.ext(t)
	watcher.hello("watcher", "", 0)
	watcher.send(&wire.Changes{}) // a first pull makes the link ready for notifies
	next[*wire.Changes](watcher)

	landed := `{"batch":1,"version":1,"applied":1}`
	err := h.store.Apply(context.Background(), synkfs.Batch{Version: 1,
		Puts: []synkfs.Record{rec("t", "1", 1, `{}`)},
		Meta: map[string][]byte{"client/lost/batch": []byte(landed)}})
	if err != nil {
		t.Fatal(err)
	}
	lost := h.ext(t)
	if w := lost.hello("lost", "", 0); w.LastBatch != 1 {
		t.Fatalf("lastBatch = %d, want 1", w.LastBatch)
	}
	if ack := push(lost, 0, 1, []synkfs.Record{rec("t", "1", 0, `{}`)}, nil); !ack.Duplicate {
		t.Fatalf("resend: %+v, want a duplicate", ack)
	}
	waitNotify(watcher, 1)
}

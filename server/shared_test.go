package server_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/pgstore"
	"github.com/synkfs/synkfs/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sharedCluster runs n servers over one fresh PostgreSQL database, each
// with its own pgstore (its own connection pool and listener), as n
// `synkfs serve --postgres` instances would.
func sharedCluster(t testing.TB, n int) ([]*harness, []*pgstore.Store) {
	t.Helper()
	url := pgtest.URL(t)
	hs := make([]*harness, n)
	sts := make([]*pgstore.Store, n)
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		st, err := pgstore.Open(ctx, url, nil)
		cancel()
		if err != nil {
			t.Fatalf("open instance %d: %v", i, err)
		}
		t.Cleanup(func() { st.Close() })
		sts[i] = st
		hs[i] = start(t, st, nil)
	}
	return hs, sts
}

// waitNotify reads from e until a notify at or above v arrives.
func waitNotify(e *ext, v uint64) {
	e.t.Helper()
	for {
		m := e.recv()
		if nt, ok := m.(*wire.Notify); ok && nt.Version >= v {
			return
		}
	}
}

// TestSharedNotify: a change pushed through one instance reaches a client
// of another at once, and its pull there returns the change.
func TestSharedNotify(t *testing.T) {
	hs, _ := sharedCluster(t, 3)
	listeners := []*ext{hs[1].ext(t), hs[2].ext(t)}
	for i, l := range listeners {
		l.hello(fmt.Sprintf("listener-%d", i), "", 0)
	}
	p := hs[0].ext(t)
	w := p.hello("pusher", "", 0)
	ack := pushed(p, w.Version, 1, []synkfs.Record{rec("task", "1", 0, `{"title":"from a"}`)}, nil)
	if ack.Version == 0 || len(ack.Results) != 0 {
		t.Fatalf("ack = %+v", ack)
	}
	for _, l := range listeners {
		waitNotify(l, ack.Version)
		l.send(&wire.Changes{Version: 0})
		ch := next[*wire.Changes](l)
		if len(ch.Update) != 1 || ch.Update[0].Key != (synkfs.Key{Type: "task", ID: "1"}) || ch.Update[0].Version != ack.Version {
			t.Fatalf("pull from another instance = %+v, want task/1 at %d", ch, ack.Version)
		}
	}
}

// TestSharedExactlyOnce: a client whose ack was lost reconnects to
// another instance and resends its batch: it is applied once, and the
// second instance answers with the first one's ack.
func TestSharedExactlyOnce(t *testing.T) {
	hs, sts := sharedCluster(t, 2)
	a := hs[0].ext(t)
	a.hello("mover", "", 0)
	batch := []synkfs.Record{rec("task", "1", 0, `{"n":1}`), rec("task", "2", 0, `{"n":2}`)}
	first := pushed(a, 0, 7, batch, nil)
	before := sts[1].Version()

	b := hs[1].ext(t)
	w := b.hello("mover", "", 0)
	if w.LastBatch != 7 {
		t.Fatalf("welcome from the other instance: lastBatch = %d, want 7", w.LastBatch)
	}
	again := push(b, 0, 7, batch, nil)
	if !again.Duplicate || again.Version != first.Version {
		t.Fatalf("resent batch: ack = %+v, want a duplicate at version %d", again, first.Version)
	}
	if v := sts[0].Version(); v != before {
		t.Fatalf("version moved from %d to %d on a resent batch", before, v)
	}
}

// TestSharedConflict: two clients of two instances create the same record
// from the same base: one wins, the other is told of the conflict with
// the winner's record.
func TestSharedConflict(t *testing.T) {
	hs, _ := sharedCluster(t, 2)
	a, b := hs[0].ext(t), hs[1].ext(t)
	a.hello("a", "", 0)
	b.hello("b", "", 0)
	ackA := pushed(a, 0, 1, []synkfs.Record{rec("doc", "x", 0, `{"by":"a"}`)}, nil)
	ackB := pushed(b, 0, 1, []synkfs.Record{rec("doc", "x", 0, `{"by":"b"}`)}, nil)
	if len(ackA.Results) != 0 {
		t.Fatalf("first writer: %+v", ackA)
	}
	if len(ackB.Results) != 1 || ackB.Results[0].Status != wire.StatusConflict || ackB.Results[0].Current == nil ||
		string(ackB.Results[0].Current.Body) != `{"by":"a"}` {
		t.Fatalf("second writer on another instance: %+v, want a conflict carrying a's record", ackB)
	}
}

// TestSharedVersions: clients of three instances push at once; every
// committed batch has its own version, the versions of the history are
// strictly increasing without gaps, and each record carries its ack's
// version.
func TestSharedVersions(t *testing.T) {
	hs, sts := sharedCluster(t, 3)
	const perClient = 25
	type acked struct {
		key     synkfs.Key
		version uint64
	}
	var mu sync.Mutex
	var all []acked
	var wg sync.WaitGroup
	for i, h := range hs {
		e := h.ext(t)
		e.hello(fmt.Sprintf("c%d", i), "", 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perClient {
				k := fmt.Sprintf("%d-%d", i, n)
				e.send(&wire.Changes{Batch: uint64(n + 1), Update: []synkfs.Record{rec("v", k, 0, `{}`)}})
				var ack *wire.Ack
				for ack == nil {
					switch m := e.recv().(type) {
					case *wire.Ack:
						ack = m
					case *wire.Notify, *wire.Changes:
					default:
						t.Errorf("client %d: unexpected %s", i, m.Type())
						return
					}
				}
				mu.Lock()
				all = append(all, acked{synkfs.Key{Type: "v", ID: k}, ack.Version})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	for _, a := range all {
		if seen[a.version] {
			t.Fatalf("version %d acknowledged twice", a.version)
		}
		seen[a.version] = true
		c, ok := sts[0].Lookup(a.key)
		if !ok || c.Version != a.version {
			t.Fatalf("%s: store has version %d, ack said %d", a.key, c.Version, a.version)
		}
	}
	var prev uint64
	n := 0
	err := sts[2].Since(0, func(c synkfs.Change) error {
		if c.Version != prev+1 {
			return fmt.Errorf("history goes from version %d to %d", prev, c.Version)
		}
		prev = c.Version
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(hs)*perClient {
		t.Fatalf("history holds %d changes, want %d", n, len(hs)*perClient)
	}
}

// TestSharedHealth: /healthz of an instance that can no longer reach its
// database answers 503.
func TestSharedHealth(t *testing.T) {
	hs, sts := sharedCluster(t, 1)
	if code := healthStatus(t, hs[0].hs.URL); code != http.StatusOK {
		t.Fatalf("healthz = %d, want 200", code)
	}
	sts[0].Close() // its pool is gone: as unreachable as a stopped database
	if code := healthStatus(t, hs[0].hs.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz without a database = %d, want 503", code)
	}
}

func healthStatus(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSharedHelloAheadWhileUnreachable: a client ahead of what an
// instance last read of the database, while the database cannot be
// reached, is told busy rather than sent into a resync on a stale version.
func TestSharedHelloAheadWhileUnreachable(t *testing.T) {
	hs, sts := sharedCluster(t, 1)
	epoch := sts[0].Epoch()
	sts[0].Close() // its pool is gone: as unreachable as a stopped database
	e := hs[0].ext(t)
	e.send(&wire.Hello{Protocol: 1, Client: "ahead", Epoch: epoch, Version: 5, Features: allFeatures})
	if m, ok := e.recv().(*wire.Error); !ok || m.Code != wire.CodeBusy {
		t.Fatalf("hello ahead of an unreachable store: %+v, want a busy error", m)
	}
}

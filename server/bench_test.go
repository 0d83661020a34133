package server_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/wire"
)

// ingest pushes 100-record batches with acks through the hub into store
// and reports records/s.
func ingest(b *testing.B, store synkfs.Store) {
	h := start(b, store, nil)
	e := h.ext(b)
	e.hello("bench", "", 0, wire.FeatureAck)
	const per = 100
	batch := make([]synkfs.Record, per)
	n := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		n++
		for i := range batch {
			batch[i] = rec("ingest", fmt.Sprintf("%d-%d", n, i), 0, `{"title":"a record of modest size","done":false,"n":42}`)
		}
		ack := push(e, store.Version(), n, batch, nil)
		if ack.Duplicate || len(ack.Results) != 0 {
			b.Fatalf("ack = %+v", ack)
		}
		next[*wire.Changes](e)
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkIngest: 100-record batches pushed by a client, acknowledged,
// committed to memstore.
func BenchmarkIngest(b *testing.B) { ingest(b, memstore.New()) }

// BenchmarkIngestFile: the same into the file-backed store as `synkfs
// serve --data` runs it, record files written behind the journal.
func BenchmarkIngestFile(b *testing.B) {
	ingest(b, openFS(b, b.TempDir(), &fsstore.Options{WriteBehind: true}))
}

// BenchmarkIngestFileSync: the file-backed store writing every record
// file before Apply returns.
func BenchmarkIngestFileSync(b *testing.B) {
	ingest(b, openFS(b, b.TempDir(), nil))
}

// BenchmarkIngestBaseline applies the same batches to memstore directly:
// the cost of the store alone.
func BenchmarkIngestBaseline(b *testing.B) {
	st := memstore.New()
	const per = 100
	n := uint64(0)
	for b.Loop() {
		n++
		batch := synkfs.Batch{Version: n}
		for i := range per {
			batch.Puts = append(batch.Puts, rec("ingest", fmt.Sprintf("%d-%d", n, i), n, `{"title":"a record of modest size","done":false,"n":42}`))
		}
		if err := st.Apply(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
}

var pushMsg = func() []byte {
	data, err := wire.Encode(&wire.Changes{Update: []synkfs.Record{rec("rt", "1", 0, `{"title":"x"}`)}})
	if err != nil {
		panic(err)
	}
	return data
}()

// BenchmarkPushRoundTrip: one-record push, ack back (with the changes
// reply of the original flow), over loopback.
func BenchmarkPushRoundTrip(b *testing.B) {
	h := start(b, nil, nil)
	e := h.ext(b)
	e.hello("rt", "", 0, wire.FeatureAck)
	ctx := context.Background()
	n := uint64(0)
	for b.Loop() {
		n++
		if err := e.conn.Write(ctx, &wire.Changes{Version: n - 1, Batch: n, Update: []synkfs.Record{rec("rt", "1", n-1, `{"title":"x"}`)}}); err != nil {
			b.Fatal(err)
		}
		m, err := e.conn.Read(ctx)
		if ack, ok := m.(*wire.Ack); err != nil || !ok || ack.Version != n {
			b.Fatalf("got %+v, %v; want ack at %d", m, err, n)
		}
		if m, err = e.conn.Read(ctx); err != nil || m.Type() != wire.TypeChanges {
			b.Fatalf("got %+v, %v; want changes", m, err)
		}
	}
}

// BenchmarkRawEchoRoundTrip: the same bytes echoed by a bare WebSocket
// server: the floor any push round trip stands on.
func BenchmarkRawEchoRoundTrip(b *testing.B) {
	url := newLoopback(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, data, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if err := ws.Write(r.Context(), typ, data); err != nil {
				return
			}
		}
	}))
	ws, _, err := websocket.Dial(ctxT(b), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close(websocket.StatusNormalClosure, "")
	ctx := context.Background()
	for b.Loop() {
		if err := ws.Write(ctx, websocket.MessageText, pushMsg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// fanout measures the time from a commit to its notify reaching n
// connected clients.
func fanout(b *testing.B, n int) {
	h := start(b, nil, nil)
	var mu sync.Mutex
	target := uint64(0)
	var got sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	defer func() { cancel(); readers.Wait() }()
	for range n {
		ws, _, err := websocket.Dial(ctxT(b), h.url, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ws.CloseNow() })
		c := wire.NewConn(ws, nil)
		if err := c.Write(ctxT(b), &wire.Changes{}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(ctxT(b)); err != nil {
			b.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			seen := uint64(0)
			for {
				m, err := c.Read(ctx)
				if err != nil {
					return
				}
				if nt, ok := m.(*wire.Notify); ok && nt.Version > seen {
					seen = nt.Version
					mu.Lock()
					if seen >= target && target > 0 {
						got.Done()
					}
					mu.Unlock()
				}
			}
		}()
	}
	p := h.ext(b)
	p.hello("p", "", 0, wire.FeatureAck)
	v := uint64(0)
	for b.Loop() {
		v++
		mu.Lock()
		target = v
		got.Add(n)
		mu.Unlock()
		p.send(&wire.Changes{Version: v - 1, Update: []synkfs.Record{rec("f", "1", v-1, `{}`)}})
		done := make(chan struct{})
		go func() { got.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(testTimeout):
			b.Fatalf("notify %d did not reach all %d clients", v, n)
		}
		next[*wire.Changes](p)
	}
}

// BenchmarkFanout1000: a change reaching 1,000 clients as notify.
func BenchmarkFanout1000(b *testing.B) { fanout(b, 1000) }

// BenchmarkFanout1 is its baseline: the same change reaching one client.
func BenchmarkFanout1(b *testing.B) { fanout(b, 1) }

package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// The scale-out benchmarks compare servers over one PostgreSQL database
// (1 and 3 instances) with a single in-memory server, in the same run.
// Each runs with the same number of pushing clients (scalePushers), spread
// over the instances.

const scalePushers = 6

// ingestOver pushes 100-record batches from scalePushers clients spread
// over hs, until b.N batches are acknowledged, and reports records/s.
func ingestOver(b *testing.B, hs []*harness) {
	const per = 100
	pushers := make([]*ext, scalePushers)
	for i := range pushers {
		pushers[i] = hs[i%len(hs)].ext(b)
		pushers[i].hello(fmt.Sprintf("ingest-%d", i), "", 0, wire.FeatureAck)
	}
	body := `{"title":"a record of modest size","done":false,"n":42}`
	var mu sync.Mutex
	left := b.N
	var wg sync.WaitGroup
	b.ResetTimer()
	for i, e := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]synkfs.Record, per)
			var seen uint64 // the version this client has pulled up to
			for n := uint64(1); ; n++ {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				for j := range batch {
					batch[j] = rec("ingest", fmt.Sprintf("%d-%d-%d", i, n, j), 0, body)
				}
				e.send(&wire.Changes{Version: seen, Batch: n, Update: batch})
				for got := false; !got; {
					switch m := e.recv().(type) {
					case *wire.Ack:
						if len(m.Results) != 0 || m.Duplicate {
							b.Errorf("ack = %+v", m)
							return
						}
					case *wire.Changes: // the pull owed after the ack
						seen, got = m.Version, true
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkScaleIngestMemory is the baseline: one in-memory server.
func BenchmarkScaleIngestMemory(b *testing.B) { ingestOver(b, []*harness{start(b, nil, nil)}) }

// BenchmarkScaleIngestPostgres1: one instance over PostgreSQL.
func BenchmarkScaleIngestPostgres1(b *testing.B) {
	hs, _ := sharedCluster(b, 1)
	ingestOver(b, hs)
}

// BenchmarkScaleIngestPostgres3: three instances over one database.
func BenchmarkScaleIngestPostgres3(b *testing.B) {
	hs, _ := sharedCluster(b, 3)
	ingestOver(b, hs)
}

// notifyAcross measures the time from a one-record push through from to
// the notify reaching a client of to (they may be the same server).
func notifyAcross(b *testing.B, from, to *harness) {
	p := from.ext(b)
	p.hello("pusher", "", 0, wire.FeatureAck)
	l := to.ext(b)
	l.hello("listener", "", 0, wire.FeatureAck)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notified := make(chan uint64, 64)
	go func() {
		for {
			m, err := l.conn.Read(ctx)
			if err != nil {
				return
			}
			if nt, ok := m.(*wire.Notify); ok {
				notified <- nt.Version
			}
		}
	}()
	var total time.Duration
	b.ResetTimer()
	for n := uint64(1); n <= uint64(b.N); n++ {
		t0 := time.Now()
		p.send(&wire.Changes{Batch: n, Update: []synkfs.Record{rec("n", "1", 0, `{}`)}})
		ack := next[*wire.Ack](p)
		for v := uint64(0); v < ack.Version; {
			select {
			case v = <-notified:
			case <-time.After(testTimeout):
				b.Fatalf("notify of version %d did not arrive", ack.Version)
			}
		}
		total += time.Since(t0)
		next[*wire.Changes](p)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/notify")
}

// BenchmarkScaleNotifyMemory is the baseline: pusher and listener on one
// in-memory server.
func BenchmarkScaleNotifyMemory(b *testing.B) {
	h := start(b, nil, nil)
	notifyAcross(b, h, h)
}

// BenchmarkScaleNotifyPostgres1: both on one instance over PostgreSQL.
func BenchmarkScaleNotifyPostgres1(b *testing.B) {
	hs, _ := sharedCluster(b, 1)
	notifyAcross(b, hs[0], hs[0])
}

// BenchmarkScaleNotifyPostgres3: the pusher on one instance, the listener
// on another of three: the notify crosses the database (LISTEN/NOTIFY).
func BenchmarkScaleNotifyPostgres3(b *testing.B) {
	hs, _ := sharedCluster(b, 3)
	notifyAcross(b, hs[0], hs[2])
}

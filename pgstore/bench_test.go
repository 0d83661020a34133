package pgstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/pgstore"
)

// The ingest benchmarks do a server's work for each pushed batch: read
// the version, look up every key (the conflict check), write the batch at
// the next version. Against pgstore that happens inside Commit; against
// memstore (the baseline, in the same run) under one mutex, as the server
// does. Each reports records/s.

const batchRecords = 10_000

var body = []byte(`{"title":"a note","done":false,"tags":["x","y"],"n":42}`)

// BenchmarkIngestCommits: one-record commits, one after another (run
// with -benchtime=10000x for 10,000 of them).
func BenchmarkIngestCommits(b *testing.B) {
	s := open(b, pgtest.URL(b), nil)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		k := key("note", fmt.Sprint(i))
		i++
		err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
			n := v.Version() + 1
			v.Lookup(k)
			return synkfs.Batch{Version: n, Puts: []synkfs.Record{{Key: k, Version: n, Body: body}}}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkIngestCommitsMemstore(b *testing.B) {
	s := memstore.New()
	ctx := context.Background()
	var mu sync.Mutex
	i := 0
	for b.Loop() {
		k := key("note", fmt.Sprint(i))
		i++
		mu.Lock()
		n := s.Version() + 1
		s.Lookup(k)
		err := s.Apply(ctx, synkfs.Batch{Version: n, Puts: []synkfs.Record{{Key: k, Version: n, Body: body}}})
		mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func batchKeys(iter int) []synkfs.Key {
	keys := make([]synkfs.Key, batchRecords)
	for j := range keys {
		keys[j] = key("note", fmt.Sprintf("%d-%d", iter, j))
	}
	return keys
}

func buildBatch(v synkfs.View, keys []synkfs.Key) synkfs.Batch {
	n := v.Version() + 1
	bt := synkfs.Batch{Version: n, Puts: make([]synkfs.Record, 0, len(keys))}
	for _, k := range keys {
		v.Lookup(k)
		bt.Puts = append(bt.Puts, synkfs.Record{Key: k, Version: n, Body: body})
	}
	return bt
}

// BenchmarkIngestBatch: one 10,000-record batch per iteration, its keys
// looked up with one Preload.
func BenchmarkIngestBatch(b *testing.B) {
	benchBatch(b, true)
}

// BenchmarkIngestBatchNoPreload: the same with one Lookup query per
// record, to show what Preload saves.
func BenchmarkIngestBatchNoPreload(b *testing.B) {
	benchBatch(b, false)
}

func benchBatch(b *testing.B, preload bool) {
	s := open(b, pgtest.URL(b), nil)
	ctx := context.Background()
	iter := 0
	for b.Loop() {
		keys := batchKeys(iter)
		iter++
		err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
			if preload {
				if err := v.(pgstore.Preloader).Preload(keys); err != nil {
					return synkfs.Batch{}, err
				}
			}
			return buildBatch(v, keys), nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchRecords)/b.Elapsed().Seconds(), "records/s")
}

// memView is the View of memstore's baseline: the store itself, read
// under the mutex.
type memView struct{ *memstore.Store }

func BenchmarkIngestBatchMemstore(b *testing.B) {
	s := memstore.New()
	ctx := context.Background()
	var mu sync.Mutex
	iter := 0
	for b.Loop() {
		keys := batchKeys(iter)
		iter++
		mu.Lock()
		err := s.Apply(ctx, buildBatch(memView{s}, keys))
		mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchRecords)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAnnounce: a one-record commit through store A until a Watch
// on store B (another pool, as another instance) announces it.
// BenchmarkAnnounceBaseline is the same commit without waiting: the
// difference is the cross-instance notify latency.
func BenchmarkAnnounce(b *testing.B) {
	benchAnnounce(b, true)
}

func BenchmarkAnnounceBaseline(b *testing.B) {
	benchAnnounce(b, false)
}

func benchAnnounce(b *testing.B, wait bool) {
	url := pgtest.URL(b)
	a, other := open(b, url, nil), open(b, url, nil)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan uint64, 1024)
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = other.Watch(ctx, func(v uint64) {
			select {
			case got <- v:
			case <-ctx.Done():
			}
		})
	})
	defer func() { cancel(); wg.Wait() }()
	<-got // the announcement at start
	i := 0
	for b.Loop() {
		k := key("note", fmt.Sprint(i))
		i++
		var n uint64
		for len(got) > 0 && !wait {
			<-got // keep the watch from blocking
		}
		err := a.Commit(context.Background(), func(v synkfs.View) (synkfs.Batch, error) {
			n = v.Version() + 1
			return synkfs.Batch{Version: n, Puts: []synkfs.Record{{Key: k, Version: n, Body: body}}}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if wait {
			for v := range got {
				if v >= n {
					break
				}
			}
		}
	}
}

// BenchmarkIngestCommitsParallel: one-record commits from three Stores
// (three pools, as three instances) with two committers each, all at
// once; BenchmarkIngestCommitsParallelMemstore runs six committers on
// one memstore under its mutex.
func BenchmarkIngestCommitsParallel(b *testing.B) {
	url := pgtest.URL(b)
	stores := []*pgstore.Store{open(b, url, nil), open(b, url, nil), open(b, url, nil)}
	commit := func(w, i int) error {
		s := stores[w%len(stores)]
		k := key("note", fmt.Sprintf("%d-%d", w, i))
		return s.Commit(context.Background(), func(v synkfs.View) (synkfs.Batch, error) {
			n := v.Version() + 1
			v.Lookup(k)
			return synkfs.Batch{Version: n, Puts: []synkfs.Record{{Key: k, Version: n, Body: body}}}, nil
		})
	}
	benchParallel(b, commit)
}

func BenchmarkIngestCommitsParallelMemstore(b *testing.B) {
	s := memstore.New()
	var mu sync.Mutex
	commit := func(w, i int) error {
		k := key("note", fmt.Sprintf("%d-%d", w, i))
		mu.Lock()
		defer mu.Unlock()
		n := s.Version() + 1
		s.Lookup(k)
		return s.Apply(context.Background(), synkfs.Batch{Version: n, Puts: []synkfs.Record{{Key: k, Version: n, Body: body}}})
	}
	benchParallel(b, commit)
}

// benchParallel runs b.N calls of commit spread over six goroutines.
func benchParallel(b *testing.B, commit func(w, i int) error) {
	const workers = 6
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < b.N; i += workers {
				if err := commit(w, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

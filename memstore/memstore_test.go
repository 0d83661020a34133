package memstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/storetest"
	"github.com/synkfs/synkfs/memstore"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) synkfs.Store { return memstore.New() })
}

// TestRandomAgainstMap applies random batches and compares the store with
// a plain map after each one, covering the skip lists' insert and delete
// paths far beyond the contract suite's small cases.
func TestRandomAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := memstore.New()
	type entry struct {
		v       uint64
		deleted bool
	}
	model := map[synkfs.Key]entry{}
	for v := uint64(1); v <= 2000; v++ {
		b := synkfs.Batch{Version: v}
		k := synkfs.Key{Type: "t", ID: fmt.Sprint(rng.IntN(300))}
		if rng.IntN(3) == 0 {
			b.Deletes = []synkfs.Tombstone{{Key: k, Version: v}}
			model[k] = entry{v, true}
		} else {
			b.Puts = []synkfs.Record{{Key: k, Version: v, Body: json.RawMessage(`{}`)}}
			model[k] = entry{v, false}
		}
		if err := s.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	var live []synkfs.Key
	for k, e := range model {
		if !e.deleted {
			live = append(live, k)
		}
	}
	slices.SortFunc(live, func(a, b synkfs.Key) int {
		if a.Less(b) {
			return -1
		}
		return 1
	})
	recs, err := s.Scan(synkfs.Key{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var got []synkfs.Key
	for _, r := range recs {
		got = append(got, r.Key)
		if r.Version != model[r.Key].v {
			t.Errorf("%s at %d, want %d", r.Key, r.Version, model[r.Key].v)
		}
	}
	if !slices.Equal(got, live) {
		t.Fatalf("scan keys differ from the model: %d vs %d", len(got), len(live))
	}
	n := 0
	var prev uint64
	if err := s.Since(1000, func(c synkfs.Change) error {
		if c.Version <= prev || model[c.Key].v != c.Version || model[c.Key].deleted != c.Deleted {
			return fmt.Errorf("since: %s@%d deleted=%v out of order or stale", c.Key, c.Version, c.Deleted)
		}
		prev = c.Version
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, e := range model {
		if e.v > 1000 {
			want++
		}
	}
	if n != want {
		t.Fatalf("since 1000 reported %d changes, want %d", n, want)
	}
}

// BenchmarkSinceRecent measures catching up on the last batch (100
// changes) of a store of 100,000 records; BenchmarkSinceRecentBaseline
// reads the same 100 records with Get, the least any catch-up can cost.
func BenchmarkSinceRecent(b *testing.B) {
	s := filled(b, 100_000)
	v := s.Version() - 1
	b.ResetTimer()
	for b.Loop() {
		n := 0
		_ = s.Since(v, func(synkfs.Change) error { n++; return nil })
		if n != 100 {
			b.Fatalf("since reported %d", n)
		}
	}
}

func BenchmarkSinceRecentBaseline(b *testing.B) {
	s := filled(b, 100_000)
	keys := make([]synkfs.Key, 100)
	for i := range keys {
		keys[i] = synkfs.Key{Type: "t", ID: fmt.Sprint(100_000 - 1 - i)}
	}
	b.ResetTimer()
	for b.Loop() {
		for _, k := range keys {
			if _, err := s.Get(k); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func filled(b *testing.B, n int) *memstore.Store {
	s := memstore.New()
	for i := 0; i < n; i += 100 {
		batch := synkfs.Batch{Version: uint64(i/100 + 1)}
		for j := i; j < i+100; j++ {
			batch.Puts = append(batch.Puts, synkfs.Record{Key: synkfs.Key{Type: "t", ID: fmt.Sprint(j)}, Version: batch.Version, Body: json.RawMessage(`{"x":1}`)})
		}
		if err := s.Apply(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/pgstore"
)

// commitPut commits, through s, one put of k with value under client
// id's batch n, as the server does (Commit with a view).
func commitPut(ctx context.Context, s synkfs.Committer, id string, n uint64, k synkfs.Key, value string) error {
	return s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		next := v.Version() + 1
		return synkfs.Batch{
			Version: next,
			Puts:    []synkfs.Record{{Key: k, Version: next, Body: fmt.Appendf(nil, `{"v":%q}`, value)}},
			Meta:    map[string][]byte{"client/" + id + "/batch": fmt.Appendf(nil, `{"batch":%d,"version":%d,"applied":1}`, n, next)},
		}, nil
	})
}

// TestWrapKeepsSharedStore: a pgstore wrapped by History still offers
// Commit, Watch and Ping to the server's type assertions; commits of
// several writers over two stores on one database, reported in whatever
// order their calls return, are recorded in the database's order without
// a violation; a commit whose fn fails records nothing; and the database
// then holds exactly what the history acknowledged.
func TestWrapKeepsSharedStore(t *testing.T) {
	url := pgtest.URL(t)
	ctx := context.Background()
	h := NewHistory()
	var wrapped []synkfs.Store
	for range 2 {
		st, err := pgstore.Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		wrapped = append(wrapped, h.Wrap(st))
	}
	for _, w := range wrapped {
		if _, ok := w.(synkfs.Committer); !ok {
			t.Fatal("the wrapped store lost Commit")
		}
		if _, ok := w.(synkfs.Watcher); !ok {
			t.Fatal("the wrapped store lost Watch")
		}
		p, ok := w.(interface{ Ping(context.Context) error })
		if !ok {
			t.Fatal("the wrapped store lost Ping")
		}
		if err := p.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}

	const writers, each = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			cm := wrapped[i%2].(synkfs.Committer)
			for n := range each {
				k := synkfs.Key{Type: "note", ID: fmt.Sprint(n % 4)}
				if err := commitPut(ctx, cm, fmt.Sprintf("c%d", i), uint64(n+1), k, fmt.Sprintf("w%d.%d", i, n)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	boom := errors.New("refused")
	err := wrapped[0].(synkfs.Committer).Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		return synkfs.Batch{Version: v.Version() + 1, Puts: []synkfs.Record{{Key: synkfs.Key{Type: "note", ID: "x"}, Version: v.Version() + 1, Body: []byte(`{"v":"never"}`)}}}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("commit with a failing fn: %v", err)
	}
	h.CheckShared(wrapped[1])
	if v := h.Violations(); len(v) > 0 {
		t.Fatalf("violations:\n%s", strings.Join(v, "\n"))
	}
	if h.Batches != writers*each || h.HasValue("never") {
		t.Fatalf("recorded %d batches (want %d), the failed fn's value recorded: %v", h.Batches, writers*each, h.HasValue("never"))
	}
	for i := range writers {
		if !h.HasValue(fmt.Sprintf("w%d.%d", i, each-1)) {
			t.Fatalf("writer %d's last value not recorded", i)
		}
	}
}

// TestHistoryOrdersRuns feeds History the runs of shared-store commits
// out of order, as calls on several servers return: they are recorded in
// sequence order; a failed run with changes counts when the next run's
// view is past it, and not when it is not; a run never reported fails
// the end check.
func TestHistoryOrdersRuns(t *testing.T) {
	k := synkfs.Key{Type: "note", ID: "1"}
	put := func(v uint64, value string) synkfs.Batch {
		return synkfs.Batch{Version: v, Puts: []synkfs.Record{{Key: k, Version: v, Body: fmt.Appendf(nil, `{"v":%q}`, value)}}}
	}
	h := NewHistory()
	h.ran("s", []uint64{2}, []uint64{1}, put(2, "b"), nil)
	if h.HasValue("b") {
		t.Fatal("run 2 recorded before run 1")
	}
	h.ran("s", []uint64{1}, []uint64{0}, put(1, "a"), nil)
	if !h.HasValue("a") || !h.HasValue("b") || h.Batches != 2 {
		t.Fatalf("after runs 1 and 2: a %v, b %v, %d batches", h.HasValue("a"), h.HasValue("b"), h.Batches)
	}
	// Run 3 failed and committed: run 4 saw its version. Run 5 failed and
	// did not: run 6 saw the version run 5 saw. Runs 6 and 7 are one call
	// whose first run was retried (a conflict between transactions).
	h.ran("s", []uint64{3}, []uint64{2}, put(3, "c"), errors.New("link lost during commit"))
	if h.HasValue("c") {
		t.Fatal("a failed run recorded before the next run tells")
	}
	h.ran("s", []uint64{4}, []uint64{3}, put(4, "d"), nil)
	h.ran("s", []uint64{5}, []uint64{4}, put(5, "e"), errors.New("rolled back"))
	if h.HasValue("e") {
		t.Fatal("a failed run recorded before the next run tells")
	}
	h.ran("s", []uint64{6, 7}, []uint64{4, 4}, put(5, "f"), nil)
	if !h.HasValue("c") || h.HasValue("e") || !h.HasValue("f") {
		t.Fatalf("c %v (want true), e %v (want false), f %v (want true)", h.HasValue("c"), h.HasValue("e"), h.HasValue("f"))
	}
	if v := h.Violations(); len(v) > 0 {
		t.Fatalf("violations: %v", v)
	}
	// Run 8 never reported: the end check says so.
	h.ran("s", []uint64{9}, []uint64{5}, put(6, "g"), nil)
	h.mu.Lock()
	h.drain(6)
	h.mu.Unlock()
	if v := h.Violations(); len(v) != 1 || !strings.Contains(v[0], "run 8 never reported") {
		t.Fatalf("violations: %v", v)
	}
}

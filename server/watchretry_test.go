package server_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/memstore"
)

// flakyWatcher is a store that other servers also write (a fake of the
// shared database, over a memstore): its first Watch fails at once, as
// pgstore's does when its first LISTEN connection fails; later ones
// announce the store's version, then each version sent on commits.
type flakyWatcher struct {
	synkfs.Store
	calls   atomic.Int32
	commits chan uint64
}

func (f *flakyWatcher) Watch(ctx context.Context, fn func(uint64)) error {
	if f.calls.Add(1) == 1 {
		return errors.New("listen: terminating connection due to administrator command")
	}
	fn(f.Version())
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case v := <-f.commits:
			fn(v)
		}
	}
}

// TestWatchRetriedAfterFirstFailure: when the store's Watch fails (its
// first database link refused, say), the server tries again, so that its
// clients still hear of the commits of other servers; it used to give up
// for the rest of its life.
func TestWatchRetriedAfterFirstFailure(t *testing.T) {
	fw := &flakyWatcher{Store: memstore.New(), commits: make(chan uint64)}
	h := start(t, fw, nil)
	e := h.ext(t)
	w := e.hello("listener", "", 0)

	// Another server commits version 1 to the shared store.
	err := fw.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("task", "1", 1, `{"title":"elsewhere"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case fw.commits <- 1:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server stopped watching the store after its first Watch failed (%d calls)", fw.calls.Load())
	}
	waitNotify(e, 1)
	if w.Version != 0 {
		t.Fatalf("welcome at version %d, want 0", w.Version)
	}
}

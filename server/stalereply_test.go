package server_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/wire"
)

// staleStore is a shared store (a fake of the database over a memstore)
// whose Version answers a frozen value while frozen is set, as pgstore's
// does when it cannot read the database and answers the version it last
// read. Its Watch announces each version sent on commits.
type staleStore struct {
	synkfs.Store
	frozen  atomic.Bool
	at      atomic.Uint64
	commits chan uint64
}

func (s *staleStore) Version() uint64 {
	if s.frozen.Load() {
		return s.at.Load()
	}
	return s.Store.Version()
}

func (s *staleStore) freeze() {
	s.at.Store(s.Store.Version())
	s.frozen.Store(true)
}

func (s *staleStore) Watch(ctx context.Context, fn func(uint64)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case v := <-s.commits:
			fn(v)
		}
	}
}

// A pull answering a notify is never below the notified version, even
// when the store's version read is stale: the client waits for a reply
// that reaches what it was told of.
func TestPullReplyReachesNotifiedVersion(t *testing.T) {
	st := &staleStore{Store: memstore.New(), commits: make(chan uint64)}
	h := start(t, st, nil)
	e := h.ext(t)
	e.hello("listener", "", 0)

	st.freeze()
	// Another server commits version 1 to the shared store.
	if err := st.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("task", "1", 1, `{"title":"elsewhere"}`)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case st.commits <- 1:
	case <-time.After(testTimeout):
		t.Fatal("the server does not watch the store")
	}
	waitNotify(e, 1)
	e.send(&wire.Changes{Version: 0})
	ch := next[*wire.Changes](e)
	if ch.Version < 1 || len(ch.Update) != 1 {
		t.Fatalf("pull after notify 1 answered at version %d with %d records, want version 1 with the record", ch.Version, len(ch.Update))
	}
}

// The changes reply to a push is never below the version its ack gave,
// even when the store's version read is stale.
func TestPushReplyReachesAckedVersion(t *testing.T) {
	st := &staleStore{Store: memstore.New(), commits: make(chan uint64)}
	h := start(t, st, nil)
	e := h.ext(t)
	e.hello("pusher", "", 0)

	st.freeze()
	e.send(&wire.Changes{Version: 0, Batch: 1, Update: []synkfs.Record{rec("task", "1", 0, `{"title":"mine"}`)}, Delete: []synkfs.Tombstone{}})
	ack := next[*wire.Ack](e)
	if ack.Version != 1 {
		t.Fatalf("ack at version %d, want 1", ack.Version)
	}
	ch := next[*wire.Changes](e)
	if ch.Version < ack.Version {
		t.Fatalf("push reply at version %d, below its ack's %d", ch.Version, ack.Version)
	}
}

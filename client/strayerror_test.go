package client_test

import (
	"testing"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/client/memreplica"
	"github.com/synkfs/synkfs/wire"
)

// An error naming no batch that arrives while a batch is in flight (what a
// server answers to a hello a faulty link delivered twice) is not the
// batch's refusal: the connection ends, and the batch is resent after the
// reconnect and applied once, with nothing rejected.
func TestErrorNamingNoBatchDoesNotRefuseTheBatch(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	r := memreplica.New()
	syncOnce(t, client.New(fast(p.url(), "a"), r)) // a cursor in this epoch: no resync below
	p.set(func(p *peer) { p.stray = wire.CodeBadMessage })
	r.Put(key("1"), `{"n":1}`)
	c := start(t, fast(p.url(), "a"), r)
	wait(t, "the batch to be applied", func() bool { return r.Pending() == 0 })
	if got := r.Rejected(); len(got) != 0 {
		t.Fatalf("rejected %+v, want none", got)
	}
	p.get(func(p *peer) {
		if p.stray != "" {
			t.Error("the stray error was never sent")
		}
		if p.applied != 1 || p.accepted != 3 || p.lastBatch["a"] != 1 {
			t.Errorf("applied %d batches (last %d) over %d connections, want batch 1 once over 3",
				p.applied, p.lastBatch["a"], p.accepted)
		}
	})
	if rec, ok := r.Get(key("1")); !ok || rec.Version != 1 || string(rec.Body) != `{"n":1}` {
		t.Errorf("record = %+v %v, want the body at version 1", rec, ok)
	}
	c.stop()
}

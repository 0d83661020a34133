package client_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client/memreplica"
)

// Over links that repeat every whole message both ways (each ack,
// changes reply, notify, welcome and snapshot page arrives twice; each
// push and pull reaches the server twice), replicas writing at once
// still converge on the server's version, without waiting for an answer
// that never comes (AckTimeout is left at its default, far above the
// test's deadline) and with each batch applied once.
func TestRepeatedMessagesConverge(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	p.set(func(p *peer) { p.twice = true })
	var rs []*running
	for _, id := range []string{"a", "b", "c"} {
		rs = append(rs, start(t, fast(p.url(), id), memreplica.New()))
	}
	wait(t, "connections", func() bool {
		return rs[0].c.State().Connected && rs[1].c.State().Connected && rs[2].c.State().Connected
	})
	for round := range 15 {
		// Apart enough that pushes, replies and notifies interleave.
		time.Sleep(3 * time.Millisecond)
		for i, r := range rs {
			r.r.Put(key(fmt.Sprintf("own%d-%d", i, round)), fmt.Sprintf(`{"by":%d}`, i))
			r.r.Put(key(fmt.Sprintf("shared%d", round%4)), fmt.Sprintf(`{"by":%d,"round":%d}`, i, round))
			if round%5 == 4 {
				r.r.Delete(key(fmt.Sprintf("shared%d", (round+1)%4)))
			}
		}
	}
	wait(t, "convergence over repeating links", func() bool {
		var v uint64
		p.get(func(p *peer) { v = p.version })
		for _, r := range rs {
			if r.r.Pending() != 0 || !cursorAt(r.r, v) {
				return false
			}
		}
		return true
	})
	var applied int
	var version uint64
	var recs map[synkfs.Key]synkfs.Change
	p.get(func(p *peer) {
		applied, version = p.applied, p.version
		recs = make(map[synkfs.Key]synkfs.Change, len(p.recs))
		for k, c := range p.recs {
			recs[k] = c
		}
	})
	t.Logf("%d batches applied, %d records on the server", applied, len(recs))
	if uint64(applied) != version {
		t.Errorf("%d batches applied for %d versions", applied, version)
	}
	for i, r := range rs {
		live := 0
		for k, c := range recs {
			if c.Deleted {
				if got, ok := r.r.Get(k); ok {
					t.Errorf("replica %d holds %s deleted on the server: %s", i, k, got.Body)
				}
				continue
			}
			live++
			got, ok := r.r.Get(k)
			if !ok || got.Version != c.Version || string(got.Body) != string(c.Body) {
				t.Errorf("replica %d: %s is %d %s, server %d %s", i, k, got.Version, got.Body, c.Version, c.Body)
			}
		}
		if n := len(r.r.Records()); n != live {
			t.Errorf("replica %d holds %d records, server %d", i, n, live)
		}
	}
}

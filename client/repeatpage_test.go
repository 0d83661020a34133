package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/client/memreplica"
)

// orderedReplica checks the snapshot contract on its way to a memreplica:
// pages come in key order, and no record comes twice.
type orderedReplica struct {
	*memreplica.Replica
	t *testing.T
}

func (r orderedReplica) ApplySnapshot(ctx context.Context, s *client.Snapshot) error {
	inner := s.Pages
	s.Pages = func(yield func([]synkfs.Record, error) bool) {
		var last *synkfs.Key
		for page, err := range inner {
			for _, rec := range page {
				if last != nil && !last.Less(rec.Key) {
					r.t.Errorf("snapshot yields %s after %s: out of order or repeated", rec.Key.Path(), last.Path())
				}
				k := rec.Key
				last = &k
			}
			if !yield(page, err) {
				return
			}
		}
	}
	return r.Replica.ApplySnapshot(ctx, s)
}

// A link that delivers every snapshot page twice: the extra copy is never
// taken for the answer to the next request, so the walk yields each record
// once, in order, and ends with the whole snapshot.
func TestRepeatedSnapshotPageIgnored(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	var recs []synkfs.Record
	for i := range 7 {
		recs = append(recs, synkfs.Record{Key: key(fmt.Sprint("s", i)), Body: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	p.reset("e2", recs...)
	p.set(func(p *peer) { p.repeatPages = true })
	opts := fast(p.url(), "a")
	opts.PageSize = 2
	r := orderedReplica{memreplica.New(), t}
	c := client.New(opts, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, snaps := r.Stats(); snaps != 1 {
		t.Errorf("snapshots = %d, want 1", snaps)
	}
	if got := r.Records(); len(got) != 7 || body(r.Replica, "s6") != `{"i":6}` {
		t.Errorf("records after the snapshot = %v", got)
	}
}

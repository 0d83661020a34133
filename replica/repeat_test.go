package replica

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/wire"
)

// A changes reply or a snapshot page delivered twice (a faulty link)
// repeats a version the folder already has: a local edit staged since is
// based on it and must neither be settled against it (no conflict copy,
// no recovery file) nor moved away from the record's path.
func TestRepeatedDeliveryKeepsStagedEdit(t *testing.T) {
	k := synkfs.Key{Type: "n", ID: "1"}
	for _, strategy := range []Strategy{KeepBoth, ServerWins} {
		for _, how := range []string{"changes", "snapshot"} {
			t.Run(string(strategy)+" "+how, func(t *testing.T) {
				srv := newServer(t)
				a := newSide(t, srv.url, &Options{OnConflict: strategy})
				b := newSide(t, srv.url, nil)
				b.write("n/1.json", `{"n":0}`)
				b.sync()
				a.sync() // a pulls n/1 at the server's version
				a.r.mu.Lock()
				v, known := a.r.baseVersion(k)
				a.r.mu.Unlock()
				if !known {
					t.Fatal("no base after the pull")
				}
				epoch, cursor := a.r.Cursor()

				a.write("n/1.json", `{"n":1}`)
				if err := a.r.Scan(); err != nil {
					t.Fatal(err)
				}
				again := synkfs.Record{Key: k, Version: v, Body: []byte(`{"n":0}`)}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var err error
				if how == "changes" {
					err = a.r.ApplyRemote(ctx, epoch, &wire.Changes{Version: cursor, Update: []synkfs.Record{again}})
				} else {
					err = a.r.ApplySnapshot(ctx, &client.Snapshot{Epoch: epoch, Version: cursor,
						Pages: func(yield func([]synkfs.Record, error) bool) { yield([]synkfs.Record{again}, nil) }})
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := a.read("n/1.json"); got != canon(t, `{"n":1}`) {
					t.Fatalf("record holds %s after the repeat, want the local edit", got)
				}
				if cs, _ := ListConflicts(a.dir); len(cs) != 0 {
					t.Fatalf("conflict copies %+v after a repeat", cs)
				}
				if rec := recoveryFiles(t, a.dir); len(rec) != 0 {
					t.Fatalf("recovery files %v after a repeat", rec)
				}
				if st := a.r.Status(); len(st.Staged) != 1 || st.Staged[0].Key != k {
					t.Fatalf("staged %+v, want the edit of n/1", st.Staged)
				}
				a.sync()
				b.sync()
				if got := b.read("n/1.json"); got != canon(t, `{"n":1}`) {
					t.Fatalf("the edit did not reach the other side: %s", got)
				}
			})
		}
	}
}

// A snapshot page holding a record whose name the folder cannot hold is
// applied without it; the record is listed as refused.
func TestSnapshotSkipsRecordTooLong(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	long := synkfs.Key{Type: strings.Repeat("t", 256), ID: "1"}
	good := synkfs.Key{Type: "n", ID: "1"}
	page := []synkfs.Record{{Key: long, Version: 3, Body: []byte(`{"a":1}`)}, {Key: good, Version: 4, Body: []byte(`{"b":2}`)}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.r.ApplySnapshot(ctx, &client.Snapshot{Epoch: "e1", Version: 4,
		Pages: func(yield func([]synkfs.Record, error) bool) { yield(page, nil) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.read("n/1.json"); got != canon(t, `{"b":2}`) {
		t.Fatalf("n/1 holds %q", got)
	}
	if e, v := a.r.Cursor(); e != "e1" || v != 4 {
		t.Fatalf("cursor %s/%d, want e1/4", e, v)
	}
	if rf := a.r.Status().Refused; len(rf) != 1 || rf[0].Key != long || rf[0].Version != 3 {
		t.Fatalf("refused %+v, want the long-named record", rf)
	}
}

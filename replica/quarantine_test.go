package replica

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// A remote change of a record whose local change is in the quarantine is
// settled against that change like against a staged one: the user's
// version is never overwritten without a copy.
func TestQuarantinedChangeSettledAgainstRemote(t *testing.T) {
	big := `{"n":"` + strings.Repeat("x", 2000) + `"}`
	for _, tc := range []struct {
		name     string
		strategy Strategy
		// inCopy: the quarantined version ends in a conflict copy (else
		// in .synk/recovery).
		inCopy bool
	}{
		{"merge clash", Merge, true},
		{"keep both", KeepBoth, true},
		{"server wins", ServerWins, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServerOpts(t, &server.Options{Limits: wire.Limits{MaxRecord: 512}})
			a := newSide(t, srv.url, &Options{OnConflict: tc.strategy})
			b := newSide(t, srv.url, nil)
			a.write("n/1.json", `{"n":0}`)
			a.sync()
			b.sync()

			a.write("n/1.json", big) // refused by the server for its size
			a.sync()
			if q := a.r.Status().Quarantined; len(q) != 1 || q[0].Key.ID != "1" {
				t.Fatalf("quarantine %+v, want n/1", q)
			}
			b.write("n/1.json", `{"n":2}`)
			b.sync()
			a.sync()

			if got := a.read("n/1.json"); got != canon(t, `{"n":2}`) {
				t.Fatalf("a's record holds %.40q, want the server's version", got)
			}
			if tc.inCopy {
				cs, err := ListConflicts(a.dir)
				if err != nil || len(cs) != 1 {
					t.Fatalf("conflicts %+v %v, want one", cs, err)
				}
				if got := a.read(cs[0].Copy); got != canon(t, big) {
					t.Fatalf("conflict copy holds %.40q, want the quarantined version", got)
				}
			} else if !hasValue(recoveryFiles(t, a.dir), canon(t, big)) {
				t.Fatal("the quarantined version is in no recovery file")
			}
			st := a.r.Status()
			if len(st.Quarantined) != 0 || len(st.Staged) != 0 {
				t.Fatalf("quarantined %+v, staged %+v: want neither once settled", st.Quarantined, st.Staged)
			}
			sameRecords(t, a, b)
		})
	}
}

// A quarantined change whose fields do not clash with the remote change is
// merged into it and sent again (and refused again: it stays the user's,
// in the file and in the quarantine).
func TestQuarantinedChangeMergedWithRemote(t *testing.T) {
	text := strings.Repeat("x", 2000)
	srv := newServerOpts(t, &server.Options{Limits: wire.Limits{MaxRecord: 512}})
	a := newSide(t, srv.url, nil)
	b := newSide(t, srv.url, nil)
	a.write("n/1.json", `{"n":0}`)
	a.sync()
	b.sync()
	a.write("n/1.json", `{"n":0,"text":"`+text+`"}`)
	a.sync()
	b.write("n/1.json", `{"n":2}`)
	b.sync()
	a.sync()
	if got, want := a.read("n/1.json"), canon(t, `{"n":2,"text":"`+text+`"}`); got != want {
		t.Fatalf("a's record holds %.40q, want both changes merged", got)
	}
	if q := a.r.Status().Quarantined; len(q) != 1 || q[0].Key.ID != "1" {
		t.Fatalf("quarantine %+v, want n/1 refused again", q)
	}
	if got := b.read("n/1.json"); got != canon(t, `{"n":2}`) {
		t.Fatalf("b holds %.40q", got)
	}
}

// A snapshot of the same history settles a quarantined change against the
// server's version like a remote change does, and leaves alone a refused
// create the server never had (it is the user's only copy).
func TestQuarantinedChangeAndSnapshot(t *testing.T) {
	big := `{"n":"` + strings.Repeat("x", 2000) + `"}`
	srv := newServerOpts(t, &server.Options{Limits: wire.Limits{MaxRecord: 512}})
	a := newSide(t, srv.url, nil)
	a.write("n/1.json", `{"n":0}`)
	a.sync()
	a.write("n/1.json", big)
	a.write("n/new.json", big)
	a.sync()
	if q := a.r.Status().Quarantined; len(q) != 2 {
		t.Fatalf("quarantine %+v, want n/1 and n/new", q)
	}
	epoch, version := a.r.Cursor()
	theirs := synkfs.Record{Key: synkfs.Key{Type: "n", ID: "1"}, Version: version + 1, Body: []byte(`{"n":2}`)}
	snap := &client.Snapshot{Epoch: epoch, Version: version + 1,
		Pages: func(yield func([]synkfs.Record, error) bool) { yield([]synkfs.Record{theirs}, nil) }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.r.ApplySnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if got := a.read("n/1.json"); got != canon(t, `{"n":2}`) {
		t.Fatalf("n/1 holds %.40q, want the snapshot's version", got)
	}
	cs, err := ListConflicts(a.dir)
	if err != nil || len(cs) != 1 || a.read(cs[0].Copy) != canon(t, big) {
		t.Fatalf("conflicts %+v %v, want one copy of the quarantined version", cs, err)
	}
	if got := a.read("n/new.json"); got != canon(t, big) {
		t.Fatalf("the refused create holds %.40q after the snapshot", got)
	}
	if q := a.r.Status().Quarantined; len(q) != 1 || q[0].Key.ID != "new" {
		t.Fatalf("quarantine %+v, want n/new only", q)
	}
}

package pgstore_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
)

// TestVersionAfterLostConnections: when the database dropped a store's
// pooled connections (a restart, killed backends), Version still reads
// the version another store committed meanwhile instead of the value it
// last read: a server that welcomed a client with that stale version sent
// a client ahead of it back to a full resync (found by the chaos run over
// three servers).
func TestVersionAfterLostConnections(t *testing.T) {
	base := pgtest.URL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "pgstore-head-test")
	u.RawQuery = q.Encode()
	a := open(t, u.String(), nil)
	b := open(t, base, nil)
	ctx := context.Background()
	if v := a.Version(); v != 0 {
		t.Fatalf("version %d, want 0", v)
	}
	if err := b.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{put(key("task", "1"), 1, `{"a":1}`)}}); err != nil {
		t.Fatal(err)
	}
	var killed int
	err = b.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'pgstore-head-test'`).Scan(&killed)
	if err != nil || killed == 0 {
		t.Fatalf("kill the first store's connections: %d killed, %v", killed, err)
	}
	if v := a.Version(); v != 1 {
		t.Fatalf("version %d after the first store lost its connections, want 1", v)
	}
}

// TestVersionNeverBelowWhatItAnnounced: once the database cannot be read,
// Version answers at least the versions this store committed and the
// ones its Watch announced, never the older value it last read.
func TestVersionNeverBelowWhatItAnnounced(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url, nil), open(t, url, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan uint64, 8)
	go func() { _ = a.Watch(ctx, func(v uint64) { heard <- v }) }()
	<-heard // the first call announces the version at start
	if err := a.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		return synkfs.Batch{Version: v.Version() + 1, Puts: []synkfs.Record{put(key("t", "a"), v.Version()+1, `{}`)}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{put(key("t", "b"), 2, `{}`)}}); err != nil {
		t.Fatal(err)
	}
	if v := <-heard; v != 2 {
		t.Fatalf("watch announced %d, want 2", v)
	}
	cancel()
	a.Close() // nothing can be read now
	if v := a.Version(); v != 2 {
		t.Fatalf("version of a closed store after it announced 2: %d", v)
	}
}

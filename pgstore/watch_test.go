package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/pgstore"
)

// watch runs s.Watch until the test ends and returns the versions it
// announces.
func watch(t *testing.T, s *pgstore.Store) <-chan uint64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan uint64, 100)
	ret := make(chan error, 1)
	go func() { ret <- s.Watch(ctx, func(v uint64) { got <- v }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ret:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after its ctx ended")
		}
	})
	return got
}

func next(t *testing.T, got <-chan uint64) uint64 {
	t.Helper()
	select {
	case v := <-got:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no announcement within 10s")
		return 0
	}
}

// commitOne commits one record at the next version and returns it.
func commitOne(t *testing.T, s *pgstore.Store) uint64 {
	t.Helper()
	var n uint64
	err := s.Commit(context.Background(), func(v synkfs.View) (synkfs.Batch, error) {
		n = v.Version() + 1
		return synkfs.Batch{Version: n, Puts: []synkfs.Record{put(key("r", "x"), n, `{}`)}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWatch: a commit through store A is announced to a Watch on store
// B once it is readable there; B's own commits are not announced; after
// the listener's connection is killed, Watch reconnects and announces
// the current version, then announces commits again.
func TestWatch(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url, nil), open(t, url, nil)
	got := watch(t, b)
	if v := next(t, got); v != 0 {
		t.Fatalf("first announcement = %d, want the version at start, 0", v)
	}

	v1 := commitOne(t, a)
	if v := next(t, got); v != v1 {
		t.Fatalf("announced %d after A committed %d", v, v1)
	}
	if b.Version() < v1 {
		t.Fatalf("announced %d but B reads version %d", v1, b.Version())
	}

	commitOne(t, b) // B's own: not announced
	v3 := commitOne(t, a)
	if v := next(t, got); v != v3 {
		t.Fatalf("announced %d, want %d (B's own commit skipped)", v, v3)
	}

	// Kill the listener's connection.
	var killed int
	err := a.Pool().QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, pgstore.WatchApplicationName).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d listener connections (%v), want 1", killed, err)
	}
	if v := next(t, got); v != v3 {
		t.Fatalf("announcement after the reconnect = %d, want the current version %d", v, v3)
	}
	v4 := commitOne(t, a)
	if v := next(t, got); v != v4 {
		t.Fatalf("after the reconnect, announced %d, want %d", v, v4)
	}
	select {
	case v := <-got:
		t.Fatalf("unexpected announcement %d", v)
	case <-time.After(100 * time.Millisecond):
	}
}

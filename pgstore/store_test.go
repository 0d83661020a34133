package pgstore_test

import (
	"context"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/internal/storetest"
	"github.com/synkfs/synkfs/pgstore"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens a store on url, closed when the test ends.
func open(t testing.TB, url string, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) synkfs.Store { return open(t, pgtest.URL(t), nil) })
}

// TestReopen: everything survives closing the store and opening the same
// database again (the directory storetest passes names nothing here: the
// database is the test's).
func TestReopen(t *testing.T) {
	url := pgtest.URL(t)
	storetest.RunReopen(t, func(t *testing.T, dir string) synkfs.Store {
		s, err := pgstore.Open(context.Background(), url, nil)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	})
}

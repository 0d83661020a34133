package chaos

import (
	"context"
	"fmt"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/internal/vfs"
)

// clientBatch returns a batch as the server makes it for client id's
// batch n: one put and the client's batch record, at the version after
// the store's.
func clientBatch(s synkfs.Store, id string, n uint64, k synkfs.Key, value string) synkfs.Batch {
	v := s.Version() + 1
	return synkfs.Batch{
		Version: v,
		Puts:    []synkfs.Record{{Key: k, Version: v, Body: []byte(fmt.Sprintf(`{"v":%q}`, value))}},
		Meta:    map[string][]byte{"client/" + id + "/batch": fmt.Appendf(nil, `{"batch":%d,"version":%d,"applied":1}`, n, v)},
	}
}

// TestReopenedAfterCrashBetweenTwoFailedCommits crashes the store of a
// --data server at every file operation of one client's batch, then
// offers the next client's batch as the server does (at the version
// after the store's), and checks the reopened store with History.
//
// When the crash hits after the first batch is in the journal, the store
// refuses the second at the same version; the reopened store holds the
// first. The history must credit that one, not the last that failed (it
// did, and then reported the first client's batch record as lost and the
// second's as acknowledged).
func TestReopenedAfterCrashBetweenTwoFailedCommits(t *testing.T) {
	ka, kb, kc := synkfs.Key{Type: "note", ID: "a"}, synkfs.Key{Type: "note", ID: "b"}, synkfs.Key{Type: "note", ID: "c"}
	ctx := context.Background()
	durableFirst := 0
	for n := 1; ; n++ {
		dir := t.TempDir()
		f := vfs.NewFault(vfs.OS)
		s, err := fsstore.Open(dir, &fsstore.Options{FS: f, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		h := NewHistory()
		w := h.Wrap(s)
		if err := w.Apply(ctx, clientBatch(w, "A", 1, ka, "a1")); err != nil {
			t.Fatal(err)
		}
		if err := w.Apply(ctx, clientBatch(w, "B", 1, ka, "b1")); err != nil {
			t.Fatal(err)
		}
		f.CrashAfter(n)
		first := clientBatch(w, "B", 2, kb, "b2")
		errFirst := w.Apply(ctx, first)
		second := clientBatch(w, "A", 2, kc, "a2")
		errSecond := w.Apply(ctx, second)
		crashed := f.Crashed()
		_ = s.Close()

		r, err := fsstore.Open(dir, &fsstore.Options{Logger: discard})
		if err != nil {
			t.Fatalf("crash at operation %d: reopen: %v", n, err)
		}
		h.Reopened(r)
		if errFirst != nil && errSecond != nil && r.Version() == first.Version {
			if second.Version != first.Version {
				t.Fatalf("crash at operation %d: the second batch went to version %d, want the first's %d", n, second.Version, first.Version)
			}
			durableFirst++
		}
		_ = r.Close()
		for _, v := range h.Violations() {
			t.Errorf("crash at operation %d (first batch: %v, second: %v): %s", n, errFirst, errSecond, v)
		}
		if !crashed {
			break
		}
		if n > 100 {
			t.Fatal("still crashing after 100 operations")
		}
	}
	if durableFirst == 0 {
		t.Fatal("no crash point left the first failed batch durable: the test no longer covers the case")
	}
}

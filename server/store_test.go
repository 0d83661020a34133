package server_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/wire"
)

// openFS opens a file-backed store in dir that logs nowhere; the test
// closes it unless it closed it itself.
func openFS(t testing.TB, dir string, opts *fsstore.Options) *fsstore.Store {
	t.Helper()
	var o fsstore.Options
	if opts != nil {
		o = *opts
	}
	o.Logger = slog.New(slog.DiscardHandler)
	st, err := fsstore.Open(dir, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRejectsKeysTheStoreCannotHold: over a file-backed store, a record
// whose name does not fit a file name is rejected on its own, with a
// sentence naming it; the rest of the batch applies.
func TestRejectsKeysTheStoreCannotHold(t *testing.T) {
	st := openFS(t, t.TempDir(), nil)
	h := start(t, st, nil)
	e := h.ext(t)
	e.hello("c", st.Epoch(), 0)
	longID := strings.Repeat("x", 300)   // fits the server's bound, not a file name
	longType := strings.Repeat("%", 100) // 300 bytes escaped
	ack := push(e, 0, 1, []synkfs.Record{
		rec("doc", "ok", 0, `{"n":1}`),
		rec("doc", longID, 0, `{"n":2}`),
	}, []synkfs.Tombstone{{Key: synkfs.Key{Type: longType, ID: "1"}}})
	next[*wire.Changes](e)
	if ack.Version != 1 || ack.Duplicate || len(ack.Results) != 2 {
		t.Fatalf("ack = %+v; want version 1 with two rejections", ack)
	}
	for _, r := range ack.Results {
		if r.Status != wire.StatusRejected || r.Code != wire.CodeInvalid {
			t.Errorf("result %s = %+v; want rejected, invalid", r.Key, r)
		}
		if !strings.Contains(r.Message, r.Key.String()) {
			t.Errorf("message %q does not name the record %s", r.Message, r.Key)
		}
	}
	if r, err := st.Get(synkfs.Key{Type: "doc", ID: "ok"}); err != nil || r.Version != 1 {
		t.Fatalf("doc/ok = %+v, %v; want it applied at 1", r, err)
	}
	if st.Version() != 1 || st.Count() != 1 {
		t.Fatalf("store at version %d with %d records; want 1 and 1", st.Version(), st.Count())
	}
}

// conflictBatch sets up a conflict for client "b": "a" creates u/1, then
// b pushes batch 1 creating u/1 (a conflict), u/2 (applied) and an invalid
// record. It returns b's ack.
func conflictBatch(t *testing.T, h *harness) *wire.Ack {
	a, b := h.ext(t), h.ext(t)
	a.hello("a", h.store.Epoch(), 0)
	b.hello("b", h.store.Epoch(), 0)
	if ack := push(a, 0, 1, []synkfs.Record{rec("u", "1", 0, `{"by":"a"}`)}, nil); ack.Version != 1 {
		t.Fatalf("a's create: %+v", ack)
	}
	ack := push(b, 0, 1, []synkfs.Record{rec("u", "1", 0, `{"by":"b"}`), rec("u", "2", 0, `{}`), rec("u", "", 0, `{}`)}, nil)
	if ack.Version != 2 || len(ack.Results) != 2 {
		t.Fatalf("b's batch: %+v", ack)
	}
	return ack
}

// checkDuplicate checks that ack repeats b's batch-1 ack: same version,
// the conflict with the server's current u/1 (at version cur, body body),
// and the rejection.
func checkDuplicate(t *testing.T, ack *wire.Ack, cur uint64, body string) {
	t.Helper()
	if !ack.Duplicate || ack.Batch != 1 || ack.Version != 2 || len(ack.Results) != 2 {
		t.Fatalf("duplicate ack = %+v; want duplicate of batch 1 at version 2 with 2 results", ack)
	}
	byID := map[string]wire.Result{}
	for _, r := range ack.Results {
		byID[r.ID] = r
	}
	if r := byID["1"]; r.Status != wire.StatusConflict || r.Current == nil || r.Current.Version != cur || string(r.Current.Body) != body {
		t.Errorf("u/1 = %+v; want a conflict with the record at %d", r, cur)
	}
	if r := byID[""]; r.Status != wire.StatusRejected || r.Code != wire.CodeInvalid || r.Message == "" {
		t.Errorf("invalid record = %+v", r)
	}
	if _, ok := byID["2"]; ok {
		t.Errorf("u/2 was applied but is listed")
	}
}

// TestDuplicateAckCarriesResults: a client whose ack was lost resends the
// batch and learns its results, also after a server restart over a
// file-backed store; an older batch id gets a bare duplicate.
func TestDuplicateAckCarriesResults(t *testing.T) {
	for _, kind := range []string{"memstore", "fsstore"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			var store synkfs.Store
			if kind == "memstore" {
				store = memstore.New()
			} else {
				store = openFS(t, dir, nil)
			}
			h := start(t, store, nil)
			conflictBatch(t, h) // b's link is left as is: the ack "was lost"

			b := h.ext(t)
			if w := b.hello("b", store.Epoch(), 0); w.LastBatch != 1 {
				t.Fatalf("welcome lastBatch = %d", w.LastBatch)
			}
			checkDuplicate(t, push(b, 0, 1, []synkfs.Record{rec("u", "1", 0, `{"by":"b"}`)}, nil), 1, `{"by":"a"}`)

			// u/1 moves on: a duplicate reports the record as it is now.
			a := h.ext(t)
			a.hello("a", store.Epoch(), 2)
			if ack := push(a, 2, 2, []synkfs.Record{rec("u", "1", 1, `{"by":"a2"}`)}, nil); ack.Version != 3 {
				t.Fatalf("a's update: %+v", ack)
			}
			checkDuplicate(t, push(b, 0, 1, nil, []synkfs.Tombstone{{Key: synkfs.Key{Type: "u", ID: "9"}}}), 3, `{"by":"a2"}`)

			if kind == "fsstore" {
				// Restart: a new server over the store reopened.
				if err := store.Close(); err != nil {
					t.Fatal(err)
				}
				store = openFS(t, dir, nil)
				h = start(t, store, nil)
				b = h.ext(t)
				b.hello("b", store.Epoch(), 3)
				checkDuplicate(t, push(b, 3, 1, []synkfs.Record{rec("u", "1", 0, `{}`)}, nil), 3, `{"by":"a2"}`)
			}

			// Batch 2 applies; batch 1 is then an older id: no results.
			if ack := push(b, 3, 2, []synkfs.Record{rec("u", "3", 0, `{}`)}, nil); ack.Duplicate || ack.Version != 4 || len(ack.Results) != 0 {
				t.Fatalf("batch 2 = %+v", ack)
			}
			next[*wire.Changes](b)
			if ack := push(b, 4, 1, []synkfs.Record{rec("u", "1", 0, `{}`)}, nil); !ack.Duplicate || ack.Version != 4 || len(ack.Results) != 0 {
				t.Fatalf("older batch = %+v; want a bare duplicate at 4", ack)
			}
			if store.Version() != 4 {
				t.Fatalf("store version %d, want 4", store.Version())
			}
		})
	}
}

// TestDuplicateAckResultsBounded: results too big to keep are dropped, and
// the duplicate ack then carries none; a batch that applies nothing keeps
// its results without moving the version.
func TestDuplicateAckResultsBounded(t *testing.T) {
	h := start(t, nil, nil)
	e := h.ext(t)
	e.hello("c", h.store.Epoch(), 0)
	// 300 rejections whose sentences name 1,100-byte ids: over the bound.
	var recs []synkfs.Record
	for i := range 300 {
		recs = append(recs, rec("u", strings.Repeat("y", 1100)+string(rune('a'+i%26))+strings.Repeat("z", i), 0, `{}`))
	}
	ack := push(e, 0, 1, recs, nil)
	next[*wire.Changes](e)
	if ack.Version != 0 || len(ack.Results) != 300 {
		t.Fatalf("ack: version %d, %d results; want 0 and 300", ack.Version, len(ack.Results))
	}
	if h.store.Version() != 0 {
		t.Fatalf("a batch that applied nothing moved the version to %d", h.store.Version())
	}
	if ack := push(e, 0, 1, recs, nil); !ack.Duplicate || len(ack.Results) != 0 {
		t.Fatalf("duplicate: %+v results, duplicate %v; want none", len(ack.Results), ack.Duplicate)
	}
	// A small all-rejected batch keeps its results.
	ack = push(e, 0, 2, []synkfs.Record{rec("u", "", 0, `{}`)}, nil)
	next[*wire.Changes](e)
	if ack.Version != 0 || len(ack.Results) != 1 {
		t.Fatalf("batch 2: %+v", ack)
	}
	if ack := push(e, 0, 2, []synkfs.Record{rec("u", "", 0, `{}`)}, nil); !ack.Duplicate || ack.Version != 0 || len(ack.Results) != 1 || ack.Results[0].Status != wire.StatusRejected {
		t.Fatalf("duplicate of batch 2: %+v", ack)
	}
}

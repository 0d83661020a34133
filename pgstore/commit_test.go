package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/internal/storetest"
	"github.com/synkfs/synkfs/pgstore"
)

func key(typ, id string) synkfs.Key { return synkfs.Key{Type: typ, ID: id} }

func put(k synkfs.Key, v uint64, body string) synkfs.Record {
	return synkfs.Record{Key: k, Version: v, Body: json.RawMessage(body)}
}

// TestContractSmallPages runs the contract with Since reading two rows
// per query, so its paging (and a page boundary inside one version) is
// exercised.
func TestContractSmallPages(t *testing.T) {
	storetest.Run(t, func(t *testing.T) synkfs.Store {
		return open(t, pgtest.URL(t), &pgstore.Options{PageSize: 2})
	})
}

// TestCommitSeesOtherStore: a View reads what another Store value (as
// another instance would) committed, and what it commits is then read by
// the first.
func TestCommitSeesOtherStore(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	a, b := open(t, url, nil), open(t, url, nil)
	if a.Epoch() != b.Epoch() {
		t.Fatalf("two stores on one database have epochs %q and %q", a.Epoch(), b.Epoch())
	}
	k := key("user", "1")
	err := a.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		n := v.Version() + 1
		return synkfs.Batch{Version: n, Puts: []synkfs.Record{put(k, n, `{"name":"Ada"}`)}, Meta: map[string][]byte{"client/x/batch": []byte("1")}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		if v.Version() != 1 {
			t.Errorf("view version = %d, want 1", v.Version())
		}
		if r, err := v.Get(k); err != nil || string(r.Body) != `{"name":"Ada"}` || r.Version != 1 {
			t.Errorf("view Get = %+v, %v", r, err)
		}
		if c, ok := v.Lookup(k); !ok || c.Deleted || c.Version != 1 {
			t.Errorf("view Lookup = %+v, %v", c, ok)
		}
		if _, ok := v.Lookup(key("user", "2")); ok {
			t.Error("view Lookup of an unknown key found it")
		}
		if m, ok := v.Meta("client/x/batch"); !ok || string(m) != "1" {
			t.Errorf("view Meta = %q, %v", m, ok)
		}
		n := v.Version() + 1
		return synkfs.Batch{Version: n, Deletes: []synkfs.Tombstone{{Key: k, Version: n}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version() != 2 || a.Count() != 0 {
		t.Fatalf("store a after b's commit: version %d count %d, want 2 and 0", a.Version(), a.Count())
	}
	if c, ok := a.Lookup(k); !ok || !c.Deleted || c.Version != 2 {
		t.Fatalf("store a Lookup = %+v, %v; want b's tombstone", c, ok)
	}
}

// TestCommitNothing: an error from fn, a stale or skipping version, an
// empty batch, and a write the database refuses all leave the store as it
// was, metadata included.
func TestCommitNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.URL(t), nil)
	if err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		return synkfs.Batch{Version: 1, Puts: []synkfs.Record{put(key("a", "1"), 1, `{}`)}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	meta := map[string][]byte{"m": []byte("x")}
	boom := errors.New("boom")
	huge := make([]byte, 8000) // an index entry this big is refused
	_, _ = rand.Read(huge)
	cases := []struct {
		name  string
		batch func(cur uint64) synkfs.Batch
		err   error
		want  error
	}{
		{"fn error", func(cur uint64) synkfs.Batch {
			return synkfs.Batch{Version: cur + 1, Puts: []synkfs.Record{put(key("a", "2"), cur+1, `{}`)}, Meta: meta}
		}, boom, boom},
		{"version skips", func(cur uint64) synkfs.Batch {
			return synkfs.Batch{Version: cur + 2, Puts: []synkfs.Record{put(key("a", "2"), cur+2, `{}`)}, Meta: meta}
		}, nil, synkfs.ErrStaleVersion},
		{"version behind", func(cur uint64) synkfs.Batch {
			return synkfs.Batch{Version: cur - 1, Meta: meta}
		}, nil, synkfs.ErrStaleVersion},
		{"records at the current version", func(cur uint64) synkfs.Batch {
			return synkfs.Batch{Version: cur, Puts: []synkfs.Record{put(key("a", "2"), cur, `{}`)}, Meta: meta}
		}, nil, synkfs.ErrStaleVersion},
		{"record version differs", func(cur uint64) synkfs.Batch {
			return synkfs.Batch{Version: cur + 1, Puts: []synkfs.Record{put(key("a", "2"), cur, `{}`)}, Meta: meta}
		}, nil, synkfs.ErrStaleVersion},
		{"database refuses a record", func(cur uint64) synkfs.Batch {
			return synkfs.Batch{Version: cur + 1, Puts: []synkfs.Record{put(key("a", "2"), cur+1, `{}`), put(key("a", hex.EncodeToString(huge)), cur+1, `{}`)}, Meta: meta}
		}, nil, nil},
	}
	for _, tc := range cases {
		err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) { return tc.batch(v.Version()), tc.err })
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Commit = %v, want %v", tc.name, err, tc.want)
		}
		if s.Version() != 1 || s.Count() != 1 {
			t.Errorf("%s: version %d count %d after a failed commit, want 1 and 1", tc.name, s.Version(), s.Count())
		}
		if _, ok := s.Meta("m"); ok {
			t.Errorf("%s: a failed commit set metadata", tc.name)
		}
		if _, ok := s.Lookup(key("a", "2")); ok {
			t.Errorf("%s: a failed commit wrote a record", tc.name)
		}
	}
	// An empty batch commits nothing and is no error.
	if err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) { return synkfs.Batch{Version: 7}, nil }); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	// Metadata alone at the current version: the version stays.
	if err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		return synkfs.Batch{Version: v.Version(), Meta: meta}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Meta("m"); !ok || string(m) != "x" || s.Version() != 1 {
		t.Errorf("metadata-only commit: meta %q %v, version %d; want x and 1", m, ok, s.Version())
	}
}

// TestExactlyOnce: the way a server keeps client batch ids. Many
// committers over two stores push the same client batch at once; each
// checks the batch table in the View and writes it in the same Commit as
// the records. The batch is applied once.
func TestExactlyOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	stores := []*pgstore.Store{open(t, url, nil), open(t, url, nil)}
	const metaKey = "client/c1/batch"
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := 0
	for i := range 8 {
		wg.Go(func() {
			s := stores[i%2]
			for batch := uint64(1); batch <= 3; batch++ {
				did := false
				err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
					did = false
					if raw, ok := v.Meta(metaKey); ok {
						var last uint64
						if err := json.Unmarshal(raw, &last); err != nil {
							return synkfs.Batch{}, err
						}
						if batch <= last {
							return synkfs.Batch{}, nil // a duplicate: nothing to do
						}
					}
					did = true
					n := v.Version() + 1
					return synkfs.Batch{
						Version: n,
						Puts:    []synkfs.Record{put(key("log", fmt.Sprint(n)), n, fmt.Sprintf(`{"batch":%d}`, batch))},
						Meta:    map[string][]byte{metaKey: []byte(fmt.Sprint(batch))},
					}, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if did {
					mu.Lock()
					applied++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if applied != 3 || stores[0].Version() != 3 || stores[0].Count() != 3 {
		t.Fatalf("3 batches pushed by 8 committers: applied %d times, version %d, count %d; want 3, 3, 3", applied, stores[0].Version(), stores[0].Count())
	}
	for v := uint64(1); v <= 3; v++ {
		r, err := stores[1].Get(key("log", fmt.Sprint(v)))
		if err != nil || string(r.Body) != fmt.Sprintf(`{"batch":%d}`, v) {
			t.Errorf("record of version %d = %s, %v", v, r.Body, err)
		}
	}
}

// TestNeverMisses is the test of the version order: writers on three
// Stores (three pools, as three instances would have) commit at once,
// each commit a new key, while readers poll each Store the way a server
// catches up: read Version, then Since(mark), then move the mark to the
// highest version seen. No reader may ever be handed a change at or
// below its mark, and in the end each reader must have seen every
// version exactly once: 1..N, no gap, no duplicate.
//
// With versions taken from a sequence outside the head lock, a reader
// sees 12 committed while 11 is not yet, moves its mark to 12, and never
// sees 11: this test then fails.
func TestNeverMisses(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	var stores []*pgstore.Store
	for range 3 {
		stores = append(stores, open(t, url, &pgstore.Options{MaxConns: 6}))
	}
	const writersPerStore, commitsEach = 2, 40
	const total = 3 * writersPerStore * commitsEach

	done := make(chan struct{})
	var readers sync.WaitGroup
	seen := make([][]uint64, len(stores))
	for i, s := range stores {
		readers.Go(func() {
			var mark uint64
			read := func() error {
				v := s.Version()
				if v < mark {
					return fmt.Errorf("reader %d: Version %d below the mark %d", i, v, mark)
				}
				return s.Since(mark, func(c synkfs.Change) error {
					if c.Version <= mark {
						return fmt.Errorf("reader %d: change at %d, at or below the mark %d", i, c.Version, mark)
					}
					seen[i] = append(seen[i], c.Version)
					mark = c.Version
					return nil
				})
			}
			for {
				select {
				case <-done:
					if err := read(); err != nil { // catch up once more after the writers
						t.Error(err)
					}
					return
				default:
				}
				if err := read(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}

	var writers sync.WaitGroup
	var mu sync.Mutex
	var committed []uint64
	for i, s := range stores {
		for w := range writersPerStore {
			writers.Go(func() {
				var last uint64
				for j := range commitsEach {
					var got uint64
					err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
						n := v.Version() + 1
						k := key("w", fmt.Sprintf("%d-%d-%d", i, w, j))
						if _, ok := v.Lookup(k); ok { // a read inside the lock, as a server does
							return synkfs.Batch{}, fmt.Errorf("key %s written twice", k)
						}
						got = n
						return synkfs.Batch{Version: n, Puts: []synkfs.Record{put(k, n, `{}`)}}, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					if got <= last {
						t.Errorf("writer %d/%d: committed %d after %d", i, w, got, last)
					}
					last = got
					mu.Lock()
					committed = append(committed, got)
					mu.Unlock()
				}
			})
		}
	}
	writers.Wait()
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}
	want := make([]uint64, total)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	slices.Sort(committed)
	if !slices.Equal(committed, want) {
		t.Fatalf("committed versions are not 1..%d without gaps or duplicates: %v", total, committed)
	}
	for i := range seen {
		if !slices.Equal(seen[i], want) {
			missing := []uint64{}
			for _, v := range want {
				if !slices.Contains(seen[i], v) {
					missing = append(missing, v)
				}
			}
			t.Errorf("reader %d saw %d changes, missing %v", i, len(seen[i]), missing)
		}
	}
}

// TestBodies: Get returns a body's exact bytes; the body column holds
// it as JSONB for applications, or NULL when JSONB cannot hold it.
func TestBodies(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.URL(t), nil)
	bodies := map[string]string{
		"plain":    `{"b": 1,  "a":[1, 2.50, 1e3], "s":"\u00e9"}`,
		"nul":      `{"s":"a\u0000b"}`,
		"huge":     `{"n":1e999999}`,
		"nil":      ``,
		"dupkeys":  `{"a":1,"a":2}`,
		"escapedu": `{"s":"\\u0000"}`,
	}
	b := synkfs.Batch{Version: 1}
	for id, body := range bodies {
		b.Puts = append(b.Puts, put(key("t", id), 1, body))
	}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	for id, body := range bodies {
		r, err := s.Get(key("t", id))
		if body == "" {
			body = "{}"
		}
		if err != nil || string(r.Body) != body {
			t.Errorf("Get(t/%s) = %s, %v; want the bytes written, %s", id, r.Body, err, body)
		}
	}
	want := map[string]string{
		"plain":    `{"a": [1, 2.50, 1e3], "b": 1, "s": "é"}`,
		"nul":      "<nil>",
		"huge":     "<nil>",
		"nil":      `{}`,
		"dupkeys":  `{"a": 2}`,
		"escapedu": `{"s": "\\u0000"}`,
	}
	for id, w := range want {
		var got *string
		if err := s.Pool().QueryRow(ctx, `SELECT body::text FROM synkfs_records WHERE type = 't' AND id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		g := "<nil>"
		if got != nil {
			g = *got
		}
		// PostgreSQL prints 1e3 in jsonb as 1000 and keeps 2.50.
		if id == "plain" {
			w = `{"a": [1, 2.50, 1000], "b": 1, "s": "é"}`
		}
		if g != w {
			t.Errorf("body column of t/%s = %s, want %s", id, g, w)
		}
	}
	// Keys PostgreSQL text cannot hold are refused by ValidateKey.
	for _, k := range []synkfs.Key{key("t", "a\x00b"), key("t\xff", "a")} {
		if s.ValidateKey(k) == nil {
			t.Errorf("ValidateKey(%q) accepted it", k.String())
		}
	}
	if s.ValidateKey(key("t", "ü/x y")) != nil {
		t.Error("ValidateKey refused a plain UTF-8 key")
	}
}

// TestOpenTogether: instances that start at once on a new database both
// migrate it safely and share one epoch.
func TestOpenTogether(t *testing.T) {
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	stores := make([]*pgstore.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = pgstore.Open(context.Background(), url, nil) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer s.Close()
		if s.Epoch() != stores[0].Epoch() {
			t.Errorf("store %d has epoch %q, store 0 %q", i, s.Epoch(), stores[0].Epoch())
		}
	}
	var n int
	if err := stores[0].Pool().QueryRow(context.Background(), `SELECT count(*) FROM synkfs_head`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("head rows = %d (%v), want 1", n, err)
	}
}

// TestPreload: Lookups after Preload answer as the database does, for
// live, deleted and unknown keys.
func TestPreload(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.URL(t), nil)
	if err := s.Apply(ctx, synkfs.Batch{Version: 3, Puts: []synkfs.Record{put(key("a", "1"), 2, `{}`)}, Deletes: []synkfs.Tombstone{{Key: key("a", "2"), Version: 3}}}); err != nil {
		t.Fatal(err)
	}
	keys := []synkfs.Key{key("a", "1"), key("a", "2"), key("a", "3")}
	err := s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
		want := map[synkfs.Key][2]any{}
		for _, k := range keys {
			c, ok := v.Lookup(k)
			want[k] = [2]any{c, ok}
		}
		if err := v.(pgstore.Preloader).Preload(keys); err != nil {
			return synkfs.Batch{}, err
		}
		for _, k := range keys {
			c, ok := v.Lookup(k)
			if w := want[k]; w[1] != ok || w[0].(synkfs.Change).Version != c.Version || w[0].(synkfs.Change).Deleted != c.Deleted || !w[0].(synkfs.Change).Time.Equal(c.Time) {
				t.Errorf("Lookup(%s) after Preload = %+v %v, before %+v", k, c, ok, w)
			}
		}
		return synkfs.Batch{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClosedWatch: Watch on a closed store fails at once, and Close ends
// a running Watch.
func TestClosedWatch(t *testing.T) {
	s, err := pgstore.Open(context.Background(), pgtest.URL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	ret := make(chan error, 1)
	go func() {
		ret <- s.Watch(context.Background(), func(uint64) {
			select {
			case started <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not start")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ret:
		if !errors.Is(err, synkfs.ErrClosed) {
			t.Errorf("Watch after Close returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end Watch")
	}
	if err := s.Watch(context.Background(), func(uint64) {}); !errors.Is(err, synkfs.ErrClosed) {
		t.Errorf("Watch on a closed store = %v", err)
	}
}

// TestCommitRetriesDeadlock: a transaction outside synkfs locks a
// metadata row, the Commit waits for it while holding the head lock,
// and the outsider then waits for the head: PostgreSQL breaks the
// deadlock by failing the Commit's transaction (the first to wait, so
// the first to check), and Commit runs it again, fn included.
func TestCommitRetriesDeadlock(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s := open(t, url, nil)
	if err := s.Apply(ctx, synkfs.Batch{Meta: map[string][]byte{"x": []byte("0")}}); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "BEGIN; UPDATE synkfs_meta SET value = 'o' WHERE key = 'x'"); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Commit(ctx, func(v synkfs.View) (synkfs.Batch, error) {
			if calls.Add(1) == 1 {
				close(started)
			}
			return synkfs.Batch{Version: v.Version(), Meta: map[string][]byte{"x": []byte("c")}}, nil
		})
	}()
	<-started
	time.Sleep(300 * time.Millisecond) // the Commit now waits for the row
	if _, err := other.Exec(ctx, "SELECT version FROM synkfs_head FOR UPDATE"); err != nil {
		t.Fatalf("the outside transaction lost the deadlock instead of the Commit: %v", err)
	}
	if _, err := other.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Commit = %v, want success on a second run", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Commit did not finish")
	}
	if calls.Load() != 2 {
		t.Errorf("fn ran %d times, want 2", calls.Load())
	}
	if v, ok := s.Meta("x"); !ok || string(v) != "c" {
		t.Errorf("Meta(x) = %q, %v; want the Commit's value", v, ok)
	}
}

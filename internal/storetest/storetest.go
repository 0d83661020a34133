// Package storetest is the contract suite that every synkfs.Store keeps.
//
// A store package calls Run from its tests with a function that opens a
// fresh, empty store; durable stores also call RunReopen, which checks that
// state survives a close and a reopen of the same directory. Both run their
// checks as subtests, so a failure names the broken part of the contract.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

// Run checks the synkfs.Store contract. open must return a new, empty
// store on every call; Run closes each store when its subtest ends (a
// second Close must not panic; its error is ignored).
func Run(t *testing.T, open func(t *testing.T) synkfs.Store) {
	t.Helper()
	fresh := func(t *testing.T) synkfs.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s synkfs.Store)
	}{
		{"Empty", testEmpty},
		{"ApplyGet", testApplyGet},
		{"StaleVersion", testStaleVersion},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"PutsAndDeletesTogether", testPutsAndDeletes},
		{"SinceOrder", testSinceOrder},
		{"SinceRecordVersions", testSinceRecordVersions},
		{"SinceStops", testSinceStops},
		{"ScanPaging", testScanPaging},
		{"Meta", testMeta},
		{"Copies", testCopies},
		{"Compact", testCompact},
		{"Close", testClose},
		{"ConcurrentReaders", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
	t.Run("EpochsDiffer", func(t *testing.T) {
		a, b := fresh(t), fresh(t)
		if a.Epoch() == b.Epoch() {
			t.Fatalf("two new stores share epoch %q", a.Epoch())
		}
	})
}

// RunReopen checks that a durable store keeps its records, tombstones,
// metadata, version, floor and epoch across Close and a reopen. open opens
// (creating if needed) the store kept in dir.
func RunReopen(t *testing.T, open func(t *testing.T, dir string) synkfs.Store) {
	t.Helper()
	dir := t.TempDir()
	s := open(t, dir)
	epoch := s.Epoch()
	if epoch == "" {
		t.Fatal("new store has an empty epoch")
	}
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("user", "1", 1, `{"name":"Ada"}`), rec("user", "2", 1, `{"name":"Bob"}`), rec("note", "x", 1, `{}`)}})
	apply(t, s, synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: key("user", "2"), Version: 2}}, Meta: map[string][]byte{"client/a/batch": []byte("7")}})
	apply(t, s, synkfs.Batch{Version: 3, Deletes: []synkfs.Tombstone{{Key: key("note", "x"), Version: 3}}})
	apply(t, s, synkfs.Batch{Version: 4, Puts: []synkfs.Record{rec("user", "1", 4, `{"name":"Ada L"}`)}})
	// Drop the older tombstones only: the later one was written after the cut.
	cut := time.Now().Add(time.Hour)
	if err := s.Compact(context.Background(), cut); err != nil {
		t.Fatalf("compact: %v", err)
	}
	floor := s.Floor()
	apply(t, s, synkfs.Batch{Version: 5, Deletes: []synkfs.Tombstone{{Key: key("user", "1"), Version: 5}}, Meta: map[string][]byte{"keep": []byte(`{"a":1}`)}})
	apply(t, s, synkfs.Batch{Version: 6, Puts: []synkfs.Record{rec("user", "3", 6, `{"n":[1,2]}`)}})
	want := dump(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, dir)
	defer s.Close()
	if got := s.Epoch(); got != epoch {
		t.Errorf("epoch after reopen = %q, want %q", got, epoch)
	}
	if got := s.Floor(); got != floor {
		t.Errorf("floor after reopen = %d, want %d", got, floor)
	}
	got := dump(t, s)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("state after reopen:\n got %+v\nwant %+v", got, want)
	}
	if c, ok := s.Lookup(key("user", "1")); !ok || !c.Deleted || c.Version != 5 {
		t.Errorf("Lookup(user/1) after reopen = %+v, %v; want tombstone at 5", c, ok)
	}
	if v, ok := s.Meta("client/a/batch"); !ok || string(v) != "7" {
		t.Errorf("Meta(client/a/batch) after reopen = %q, %v", v, ok)
	}
	// The reopened store keeps going from where it was.
	if err := s.Apply(context.Background(), synkfs.Batch{Version: 5}); !errors.Is(err, synkfs.ErrStaleVersion) {
		t.Errorf("Apply(version 5) after reopen = %v, want ErrStaleVersion", err)
	}
	apply(t, s, synkfs.Batch{Version: 7, Puts: []synkfs.Record{rec("user", "4", 7, `{}`)}})
	if s.Version() != 7 || s.Count() != 2 {
		t.Errorf("after one more batch: version %d count %d, want 7 and 2", s.Version(), s.Count())
	}
}

// state is everything a reader can see of a store, for comparisons.
type state struct {
	Version uint64
	Count   int
	Since   []string
	Scan    []string
	Meta    map[string]string
}

func dump(t *testing.T, s synkfs.Store) state {
	t.Helper()
	st := state{Version: s.Version(), Count: s.Count(), Meta: map[string]string{}}
	for _, c := range since(t, s, 0) {
		st.Since = append(st.Since, describe(t, c))
	}
	slices.Sort(st.Since) // order within one version is free
	recs, err := s.Scan(synkfs.Key{}, 1000)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	for _, r := range recs {
		st.Scan = append(st.Scan, describe(t, synkfs.Change{Record: r}))
	}
	for _, k := range []string{"client/a/batch", "keep", "absent"} {
		if v, ok := s.Meta(k); ok {
			st.Meta[k] = string(v)
		}
	}
	return st
}

// describe renders a change with its body in canonical form, so stores that
// keep bodies formatted differently still compare equal.
func describe(t *testing.T, c synkfs.Change) string {
	t.Helper()
	if c.Deleted {
		return fmt.Sprintf("-%s@%d", c.Key, c.Version)
	}
	return fmt.Sprintf("%s@%d%s", c.Key, c.Version, canon(t, c.Body))
}

func canon(t *testing.T, body json.RawMessage) string {
	t.Helper()
	if len(body) == 0 {
		return "{}"
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	out, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(out)
}

func key(typ, id string) synkfs.Key { return synkfs.Key{Type: typ, ID: id} }

func rec(typ, id string, v uint64, body string) synkfs.Record {
	return synkfs.Record{Key: key(typ, id), Version: v, Body: json.RawMessage(body)}
}

func apply(t *testing.T, s synkfs.Store, b synkfs.Batch) {
	t.Helper()
	if err := s.Apply(context.Background(), b); err != nil {
		t.Fatalf("apply batch %d: %v", b.Version, err)
	}
}

func since(t *testing.T, s synkfs.Store, v uint64) []synkfs.Change {
	t.Helper()
	var out []synkfs.Change
	if err := s.Since(v, func(c synkfs.Change) error { out = append(out, c); return nil }); err != nil {
		t.Fatalf("since %d: %v", v, err)
	}
	return out
}

func describeAll(t *testing.T, cs []synkfs.Change) []string {
	t.Helper()
	out := []string{}
	for _, c := range cs {
		out = append(out, describe(t, c))
	}
	return out
}

func wantGet(t *testing.T, s synkfs.Store, want synkfs.Record) {
	t.Helper()
	got, err := s.Get(want.Key)
	if err != nil {
		t.Fatalf("get %s: %v", want.Key, err)
	}
	if got.Key != want.Key || got.Version != want.Version || canon(t, got.Body) != canon(t, want.Body) {
		t.Fatalf("get %s = %s@%d %s, want @%d %s", want.Key, got.Key, got.Version, got.Body, want.Version, want.Body)
	}
}

func wantNotFound(t *testing.T, s synkfs.Store, k synkfs.Key) {
	t.Helper()
	if r, err := s.Get(k); !errors.Is(err, synkfs.ErrNotFound) {
		t.Fatalf("get %s = %+v, %v; want ErrNotFound", k, r, err)
	}
}

func testEmpty(t *testing.T, s synkfs.Store) {
	if s.Epoch() == "" {
		t.Error("epoch is empty")
	}
	if s.Epoch() != s.Epoch() {
		t.Error("epoch changes between calls")
	}
	if s.Version() != 0 || s.Floor() != 0 || s.Count() != 0 {
		t.Errorf("new store: version %d floor %d count %d, want zeros", s.Version(), s.Floor(), s.Count())
	}
	wantNotFound(t, s, key("user", "1"))
	if c, ok := s.Lookup(key("user", "1")); ok {
		t.Errorf("Lookup on empty store = %+v, true", c)
	}
	if cs := since(t, s, 0); len(cs) != 0 {
		t.Errorf("Since(0) on empty store = %v", cs)
	}
	recs, err := s.Scan(synkfs.Key{}, 10)
	if err != nil || len(recs) != 0 {
		t.Errorf("Scan on empty store = %v, %v", recs, err)
	}
	if _, ok := s.Meta("x"); ok {
		t.Error("Meta on empty store found a value")
	}
}

func testApplyGet(t *testing.T, s synkfs.Store) {
	a := rec("user", "1", 1, `{"name":"Ada","tags":["x","y"],"n":{"deep":true}}`)
	b := rec("user", "2", 1, `{}`)
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{a, b}})
	if s.Version() != 1 || s.Count() != 2 {
		t.Fatalf("version %d count %d, want 1 and 2", s.Version(), s.Count())
	}
	wantGet(t, s, a)
	wantGet(t, s, b)
	c, ok := s.Lookup(a.Key)
	if !ok || c.Deleted || c.Version != 1 || c.Key != a.Key {
		t.Fatalf("Lookup(%s) = %+v, %v", a.Key, c, ok)
	}
	wantNotFound(t, s, key("user", "3"))
	wantNotFound(t, s, key("other", "1"))
	// A batch may skip versions: the store version is the batch's.
	apply(t, s, synkfs.Batch{Version: 10, Puts: []synkfs.Record{rec("user", "3", 10, `{"a":1}`)}})
	if s.Version() != 10 {
		t.Fatalf("version = %d, want 10", s.Version())
	}
	// A metadata-only batch moves the version too.
	apply(t, s, synkfs.Batch{Version: 11, Meta: map[string][]byte{"k": []byte("v")}})
	if s.Version() != 11 || s.Count() != 3 {
		t.Fatalf("version %d count %d, want 11 and 3", s.Version(), s.Count())
	}
}

func testStaleVersion(t *testing.T, s synkfs.Store) {
	apply(t, s, synkfs.Batch{Version: 5, Puts: []synkfs.Record{rec("user", "1", 5, `{"v":1}`)}})
	for _, v := range []uint64{0, 1, 4} {
		err := s.Apply(context.Background(), synkfs.Batch{Version: v, Puts: []synkfs.Record{rec("user", "1", v, `{"v":2}`)}, Meta: map[string][]byte{"m": []byte("x")}})
		if !errors.Is(err, synkfs.ErrStaleVersion) {
			t.Errorf("Apply(version %d) onto version 5 = %v, want ErrStaleVersion", v, err)
		}
	}
	if s.Version() != 5 {
		t.Errorf("version after stale batches = %d, want 5", s.Version())
	}
	wantGet(t, s, rec("user", "1", 5, `{"v":1}`))
	if _, ok := s.Meta("m"); ok {
		t.Error("a stale batch set metadata")
	}
	// A batch at the current version applies without moving it: a
	// replica stages local edits and metadata that way.
	apply(t, s, synkfs.Batch{Version: 5, Puts: []synkfs.Record{rec("user", "2", 3, `{"v":3}`)}, Meta: map[string][]byte{"m": []byte("y")}})
	if s.Version() != 5 {
		t.Errorf("version after a batch at the current version = %d, want 5", s.Version())
	}
	wantGet(t, s, rec("user", "2", 3, `{"v":3}`))
	if v, ok := s.Meta("m"); !ok || string(v) != "y" {
		t.Errorf("Meta(m) = %q, %v; want y", v, ok)
	}
}

func testUpdate(t *testing.T, s synkfs.Store) {
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("user", "1", 1, `{"v":1}`), rec("user", "2", 1, `{"v":1}`)}})
	apply(t, s, synkfs.Batch{Version: 2, Puts: []synkfs.Record{rec("user", "1", 2, `{"v":2}`)}})
	wantGet(t, s, rec("user", "1", 2, `{"v":2}`))
	if s.Count() != 2 {
		t.Errorf("count = %d, want 2", s.Count())
	}
	got := describeAll(t, since(t, s, 1))
	want := []string{`user::1@2{"v":2}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(1) = %v, want %v", got, want)
	}
	got = describeAll(t, since(t, s, 0))
	want = []string{`user::2@1{"v":1}`, `user::1@2{"v":2}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(0) = %v, want %v (each key once, at its latest version)", got, want)
	}
	if cs := since(t, s, 2); len(cs) != 0 {
		t.Errorf("Since(current) = %v, want nothing", describeAll(t, cs))
	}
}

func testDelete(t *testing.T, s synkfs.Store) {
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("user", "1", 1, `{"v":1}`), rec("user", "2", 1, `{}`)}})
	apply(t, s, synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: key("user", "1"), Version: 2}}})
	wantNotFound(t, s, key("user", "1"))
	if s.Count() != 1 {
		t.Errorf("count after delete = %d, want 1", s.Count())
	}
	c, ok := s.Lookup(key("user", "1"))
	if !ok || !c.Deleted || c.Version != 2 {
		t.Fatalf("Lookup(deleted) = %+v, %v; want tombstone at 2", c, ok)
	}
	cs := since(t, s, 1)
	if len(cs) != 1 || !cs[0].Deleted || cs[0].Key != key("user", "1") || cs[0].Version != 2 || cs[0].Body != nil {
		t.Fatalf("Since(1) = %+v, want one tombstone user::1@2 with a nil body", cs)
	}
	if cs[0].Tombstone() != (synkfs.Tombstone{Key: key("user", "1"), Version: 2}) {
		t.Errorf("Tombstone() = %+v", cs[0].Tombstone())
	}
	recs, err := s.Scan(synkfs.Key{}, 10)
	if err != nil || len(recs) != 1 || recs[0].Key != key("user", "2") {
		t.Errorf("Scan after delete = %v, %v; want only user::2", recs, err)
	}
	// A delete of a key never written leaves a tombstone too.
	apply(t, s, synkfs.Batch{Version: 3, Deletes: []synkfs.Tombstone{{Key: key("user", "9"), Version: 3}}})
	if c, ok := s.Lookup(key("user", "9")); !ok || !c.Deleted || c.Version != 3 {
		t.Errorf("Lookup(user/9) = %+v, %v; want tombstone at 3", c, ok)
	}
	// Writing a deleted key brings it back, and its tombstone is gone.
	apply(t, s, synkfs.Batch{Version: 4, Puts: []synkfs.Record{rec("user", "1", 4, `{"v":4}`)}})
	wantGet(t, s, rec("user", "1", 4, `{"v":4}`))
	if c, ok := s.Lookup(key("user", "1")); !ok || c.Deleted || c.Version != 4 {
		t.Errorf("Lookup(recreated) = %+v, %v", c, ok)
	}
	got := describeAll(t, since(t, s, 0))
	want := []string{`user::2@1{}`, `-user::9@3`, `user::1@4{"v":4}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(0) = %v, want %v", got, want)
	}
	if s.Count() != 2 {
		t.Errorf("count = %d, want 2", s.Count())
	}
}

func testPutsAndDeletes(t *testing.T, s synkfs.Store) {
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("a", "1", 1, `{}`), rec("a", "2", 1, `{}`)}})
	apply(t, s, synkfs.Batch{
		Version: 2,
		Puts:    []synkfs.Record{rec("a", "3", 2, `{"x":1}`), rec("a", "1", 2, `{"x":2}`)},
		Deletes: []synkfs.Tombstone{{Key: key("a", "2"), Version: 2}},
		Meta:    map[string][]byte{"client/c/batch": []byte("1")},
	})
	if s.Version() != 2 || s.Count() != 2 {
		t.Fatalf("version %d count %d, want 2 and 2", s.Version(), s.Count())
	}
	got := describeAll(t, since(t, s, 1))
	slices.Sort(got) // one version: order within it is free
	want := []string{`-a::2@2`, `a::1@2{"x":2}`, `a::3@2{"x":1}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(1) = %v, want %v", got, want)
	}
	if v, ok := s.Meta("client/c/batch"); !ok || string(v) != "1" {
		t.Errorf("Meta = %q, %v", v, ok)
	}
}

func testSinceOrder(t *testing.T, s synkfs.Store) {
	rng := rand.New(rand.NewPCG(1, 2))
	const keys, batches = 40, 120
	latest := map[synkfs.Key]synkfs.Change{}
	for v := uint64(1); v <= batches; v++ {
		b := synkfs.Batch{Version: v}
		seen := map[synkfs.Key]bool{}
		for range 1 + rng.IntN(4) {
			k := key("t"+fmt.Sprint(rng.IntN(3)), fmt.Sprint(rng.IntN(keys)))
			if seen[k] {
				continue
			}
			seen[k] = true
			if rng.IntN(4) == 0 {
				b.Deletes = append(b.Deletes, synkfs.Tombstone{Key: k, Version: v})
				latest[k] = synkfs.Change{Record: synkfs.Record{Key: k, Version: v}, Deleted: true}
			} else {
				r := rec(k.Type, k.ID, v, fmt.Sprintf(`{"v":%d}`, v))
				b.Puts = append(b.Puts, r)
				latest[k] = synkfs.Change{Record: r}
			}
		}
		apply(t, s, b)
	}
	for _, from := range []uint64{0, 1, 17, 60, 119, 120} {
		var want []string
		for _, c := range latest {
			if c.Version > from {
				want = append(want, describe(t, c))
			}
		}
		cs := since(t, s, from)
		for i := 1; i < len(cs); i++ {
			if cs[i].Version < cs[i-1].Version {
				t.Fatalf("Since(%d): version %d after %d", from, cs[i].Version, cs[i-1].Version)
			}
		}
		got := describeAll(t, cs)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Since(%d):\n got %v\nwant %v", from, got, want)
		}
	}
	live := 0
	for _, c := range latest {
		if !c.Deleted {
			live++
		}
	}
	if s.Count() != live {
		t.Errorf("count = %d, want %d", s.Count(), live)
	}
}

// testSinceRecordVersions: a replica applies records at the server's
// versions of them, which may be below the batch version; Since orders
// and filters by the records' own versions.
func testSinceRecordVersions(t *testing.T, s synkfs.Store) {
	apply(t, s, synkfs.Batch{Version: 10, Puts: []synkfs.Record{rec("r", "a", 10, `{}`), rec("r", "b", 8, `{}`)}, Deletes: []synkfs.Tombstone{{Key: key("r", "c"), Version: 9}}})
	got := describeAll(t, since(t, s, 0))
	want := []string{`r::b@8{}`, `-r::c@9`, `r::a@10{}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(0) = %v, want %v", got, want)
	}
	got = describeAll(t, since(t, s, 8))
	want = []string{`-r::c@9`, `r::a@10{}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(8) = %v, want %v", got, want)
	}
	if r, err := s.Get(key("r", "b")); err != nil || r.Version != 8 {
		t.Errorf("Get(r/b) = %+v, %v; want version 8", r, err)
	}
}

func testSinceStops(t *testing.T, s synkfs.Store) {
	for v := uint64(1); v <= 5; v++ {
		apply(t, s, synkfs.Batch{Version: v, Puts: []synkfs.Record{rec("x", fmt.Sprint(v), v, `{}`)}})
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.Since(0, func(c synkfs.Change) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Errorf("Since with a failing fn: err %v after %d calls, want the fn's error after 2", err, calls)
	}
}

func testScanPaging(t *testing.T, s synkfs.Store) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all []synkfs.Key
	for _, typ := range []string{"b", "a", "c", "aa"} {
		for i := range 25 {
			all = append(all, key(typ, fmt.Sprintf("%d", i))) // "10" sorts before "2"
		}
	}
	order := slices.Clone(all)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	v := uint64(0)
	for i := 0; i < len(order); i += 7 {
		v++
		b := synkfs.Batch{Version: v}
		for _, k := range order[i:min(i+7, len(order))] {
			b.Puts = append(b.Puts, rec(k.Type, k.ID, v, fmt.Sprintf(`{"k":%q}`, k.String())))
		}
		apply(t, s, b)
	}
	// Delete a few, so Scan must skip tombstones.
	v++
	deleted := map[synkfs.Key]bool{}
	b := synkfs.Batch{Version: v}
	for _, k := range order[:10] {
		deleted[k] = true
		b.Deletes = append(b.Deletes, synkfs.Tombstone{Key: k, Version: v})
	}
	apply(t, s, b)

	var want []synkfs.Key
	for _, k := range all {
		if !deleted[k] {
			want = append(want, k)
		}
	}
	slices.SortFunc(want, synkfs.Key.Compare)
	if s.Count() != len(want) {
		t.Errorf("count = %d, want %d", s.Count(), len(want))
	}
	for _, limit := range []int{1, 3, 7, 1000} {
		var got []synkfs.Key
		after := synkfs.Key{}
		for page := 0; ; page++ {
			if page > len(want)+1 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			recs, err := s.Scan(after, limit)
			if err != nil {
				t.Fatalf("scan after %s: %v", after, err)
			}
			if len(recs) > limit {
				t.Fatalf("scan limit %d returned %d records", limit, len(recs))
			}
			for _, r := range recs {
				if canon(t, r.Body) != fmt.Sprintf(`{"k":%q}`, r.Key.String()) {
					t.Fatalf("scan returned %s with body %s", r.Key, r.Body)
				}
				got = append(got, r.Key)
			}
			if len(recs) < limit {
				break
			}
			after = recs[len(recs)-1].Key
		}
		if !slices.Equal(got, want) {
			t.Fatalf("scan with limit %d:\n got %v\nwant %v", limit, got, want)
		}
	}
	// after need not be a stored key, and is exclusive.
	recs, err := s.Scan(key("a", "10"), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !key("a", "10").Less(r.Key) {
			t.Errorf("Scan(after a/10) returned %s", r.Key)
		}
	}
	recs, err = s.Scan(key("b", "0x"), 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Scan(after b/0x) = %v, %v", recs, err)
	}
	if first := firstAfter(want, key("b", "0x")); recs[0].Key != first {
		t.Errorf("Scan(after b/0x) = %s, want %s", recs[0].Key, first)
	}
	if recs, err := s.Scan(key("zz", "z"), 5); err != nil || len(recs) != 0 {
		t.Errorf("Scan past the end = %v, %v", recs, err)
	}
}

func firstAfter(sorted []synkfs.Key, after synkfs.Key) synkfs.Key {
	for _, k := range sorted {
		if after.Less(k) {
			return k
		}
	}
	return synkfs.Key{}
}

func testMeta(t *testing.T, s synkfs.Store) {
	apply(t, s, synkfs.Batch{Version: 1, Meta: map[string][]byte{"a": []byte("1"), "b": []byte(`{"x":2}`), "empty": {}}})
	for k, want := range map[string]string{"a": "1", "b": `{"x":2}`, "empty": ""} {
		if v, ok := s.Meta(k); !ok || string(v) != want {
			t.Errorf("Meta(%q) = %q, %v; want %q", k, v, ok, want)
		}
	}
	apply(t, s, synkfs.Batch{Version: 2, Meta: map[string][]byte{"a": []byte("2"), "b": nil}})
	if v, ok := s.Meta("a"); !ok || string(v) != "2" {
		t.Errorf("Meta(a) after overwrite = %q, %v", v, ok)
	}
	if v, ok := s.Meta("b"); ok {
		t.Errorf("Meta(b) after delete = %q, true", v)
	}
	if _, ok := s.Meta("never"); ok {
		t.Error("Meta(never) found a value")
	}
	// Metadata is not a record.
	if s.Count() != 0 || len(since(t, s, 0)) != 0 {
		t.Errorf("metadata shows as records: count %d", s.Count())
	}
}

func testCopies(t *testing.T, s synkfs.Store) {
	body := []byte(`{"name":"Ada"}`)
	meta := []byte("meta")
	puts := []synkfs.Record{{Key: key("user", "1"), Version: 1, Body: body}}
	apply(t, s, synkfs.Batch{Version: 1, Puts: puts, Meta: map[string][]byte{"m": meta}})
	copy(body, `{"name":"Eve"}`)
	copy(meta, "XXXX")
	puts[0].Key.ID = "2"
	wantGet(t, s, rec("user", "1", 1, `{"name":"Ada"}`))
	if v, _ := s.Meta("m"); string(v) != "meta" {
		t.Fatalf("Meta changed with the caller's slice: %q", v)
	}

	got, err := s.Get(key("user", "1"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got.Body {
		got.Body[i] = ' '
	}
	v, _ := s.Meta("m")
	for i := range v {
		v[i] = 'Z'
	}
	cs := since(t, s, 0)
	for i := range cs[0].Body {
		cs[0].Body[i] = ' '
	}
	recs, _ := s.Scan(synkfs.Key{}, 1)
	for i := range recs[0].Body {
		recs[0].Body[i] = ' '
	}
	wantGet(t, s, rec("user", "1", 1, `{"name":"Ada"}`))
	if v, _ := s.Meta("m"); string(v) != "meta" {
		t.Fatalf("Meta changed through a returned slice: %q", v)
	}
}

func testCompact(t *testing.T, s synkfs.Store) {
	ctx := context.Background()
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("a", "1", 1, `{}`), rec("a", "2", 1, `{}`), rec("a", "3", 1, `{}`)}})
	apply(t, s, synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: key("a", "1"), Version: 2}}})
	apply(t, s, synkfs.Batch{Version: 3, Deletes: []synkfs.Tombstone{{Key: key("a", "2"), Version: 3}}})
	apply(t, s, synkfs.Batch{Version: 4, Puts: []synkfs.Record{rec("a", "4", 4, `{}`)}})

	// Nothing was deleted before an hour ago: nothing to drop.
	if err := s.Compact(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if s.Floor() != 0 || len(since(t, s, 0)) != 4 {
		t.Fatalf("compact before the tombstones dropped something: floor %d, since %v", s.Floor(), describeAll(t, since(t, s, 0)))
	}
	before := s.Version()
	if err := s.Compact(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if s.Floor() != 3 {
		t.Errorf("floor = %d, want 3 (the newest tombstone dropped)", s.Floor())
	}
	if s.Version() != before {
		t.Errorf("compact changed the version: %d -> %d", before, s.Version())
	}
	for _, k := range []synkfs.Key{key("a", "1"), key("a", "2")} {
		if c, ok := s.Lookup(k); ok {
			t.Errorf("Lookup(%s) after compact = %+v, true", k, c)
		}
	}
	got := describeAll(t, since(t, s, 0))
	want := []string{`a::3@1{}`, `a::4@4{}`}
	if !slices.Equal(got, want) {
		t.Errorf("Since(0) after compact = %v, want %v", got, want)
	}
	if s.Count() != 2 {
		t.Errorf("count after compact = %d", s.Count())
	}
	// The floor never goes down.
	apply(t, s, synkfs.Batch{Version: 5, Puts: []synkfs.Record{rec("a", "5", 5, `{}`)}})
	if err := s.Compact(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if s.Floor() != 3 {
		t.Errorf("floor after a compaction with no tombstones = %d, want 3", s.Floor())
	}
}

func testClose(t *testing.T, s synkfs.Store) {
	ctx := context.Background()
	apply(t, s, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("a", "1", 1, `{}`)}})
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	checks := map[string]error{
		"Apply":   s.Apply(ctx, synkfs.Batch{Version: 2}),
		"Since":   s.Since(0, func(synkfs.Change) error { return nil }),
		"Compact": s.Compact(ctx, time.Now()),
	}
	_, checks["Get"] = s.Get(key("a", "1"))
	_, checks["Scan"] = s.Scan(synkfs.Key{}, 10)
	for name, err := range checks {
		if !errors.Is(err, synkfs.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// testConcurrent runs readers beside a writer; run it with -race. Readers
// check what must hold at any moment: versions never go back, Since is in
// version order, Scan in key order, and every record read is whole.
func testConcurrent(t *testing.T, s synkfs.Store) {
	const batches = 150
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
		cancel()
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for i := 0; ctx.Err() == nil; i++ {
				v := s.Version()
				if v < last {
					fail(fmt.Errorf("reader %d: version went back from %d to %d", r, last, v))
					return
				}
				last = v
				switch i % 4 {
				case 0:
					var prev uint64
					err := s.Since(v/2, func(c synkfs.Change) error {
						if c.Version < prev || c.Version <= v/2 {
							return fmt.Errorf("since %d: version %d after %d", v/2, c.Version, prev)
						}
						prev = c.Version
						return nil
					})
					if err != nil {
						fail(err)
						return
					}
				case 1:
					recs, err := s.Scan(synkfs.Key{}, 50)
					if err != nil {
						fail(err)
						return
					}
					for j := 1; j < len(recs); j++ {
						if !recs[j-1].Key.Less(recs[j].Key) {
							fail(fmt.Errorf("scan: %s before %s", recs[j-1].Key, recs[j].Key))
							return
						}
					}
				case 2:
					k := key("k", fmt.Sprint(i%20))
					if r, err := s.Get(k); err == nil {
						var body struct{ V uint64 }
						if json.Unmarshal(r.Body, &body) != nil || body.V != r.Version {
							fail(fmt.Errorf("get %s: body %s does not match version %d", k, r.Body, r.Version))
							return
						}
					} else if !errors.Is(err, synkfs.ErrNotFound) {
						fail(err)
						return
					}
					s.Lookup(k)
				case 3:
					s.Count()
					s.Meta("w")
					s.Floor()
				}
			}
		}()
	}
	for v := uint64(1); v <= batches && ctx.Err() == nil; v++ {
		b := synkfs.Batch{Version: v, Meta: map[string][]byte{"w": []byte(fmt.Sprint(v))}}
		for j := range 3 {
			k := key("k", fmt.Sprint((int(v)*3+j)%20))
			if v%5 == 0 && j == 0 {
				b.Deletes = append(b.Deletes, synkfs.Tombstone{Key: k, Version: v})
				continue
			}
			b.Puts = append(b.Puts, rec(k.Type, k.ID, v, fmt.Sprintf(`{"V":%d}`, v)))
		}
		if err := s.Apply(ctx, b); err != nil {
			fail(fmt.Errorf("apply %d: %w", v, err))
		}
		if v%50 == 0 {
			if err := s.Compact(ctx, time.Now()); err != nil {
				fail(fmt.Errorf("compact: %w", err))
			}
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if s.Version() != batches {
		t.Errorf("version = %d, want %d", s.Version(), batches)
	}
}

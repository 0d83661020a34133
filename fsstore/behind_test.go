package fsstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/storetest"
	"github.com/synkfs/synkfs/internal/vfs"
)

func TestStoreContractWriteBehind(t *testing.T) {
	storetest.Run(t, func(t *testing.T) synkfs.Store {
		s, err := Open(t.TempDir(), &Options{NoSync: true, WriteBehind: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	storetest.RunReopen(t, func(t *testing.T, dir string) synkfs.Store {
		s, err := Open(dir, &Options{WriteBehind: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// gatedFS holds every record file creation under root/<typ> until the
// gate is opened.
func gatedFS(root, typ string) (*vfs.Fault, func()) {
	f := vfs.NewFault(vfs.OS)
	gate := make(chan struct{})
	dir := filepath.Join(root, typ)
	f.FailWhen(func(op vfs.Op, name string) error {
		if op == vfs.OpCreate && (name == dir || strings.HasPrefix(name, dir+string(filepath.Separator))) {
			<-gate
		}
		return nil
	})
	var once sync.Once
	return f, func() { once.Do(func() { close(gate) }) }
}

func rec(k synkfs.Key, v uint64, b string) synkfs.Record {
	return synkfs.Record{Key: k, Version: v, Body: []byte(b)}
}

// TestWriteBehindReadsFromMemory: Apply returns before the files are
// written; reads see the batch anyway; ScanChanges waits for the writer
// instead of reporting the missing files.
func TestWriteBehindReadsFromMemory(t *testing.T) {
	root := t.TempDir()
	f, open := gatedFS(root, "doc")
	s, err := Open(root, &Options{FS: f, WriteBehind: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer open() // before Close, which waits for the writer
	k := synkfs.Key{Type: "doc", ID: "1"}
	if err := s.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec(k, 1, `{"n":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "doc", "1.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file exists before the writer could write it: %v", err)
	}
	if r, err := s.Get(k); err != nil || r.Version != 1 || string(r.Body) != `{"n":1}` {
		t.Fatalf("get = %+v, %v", r, err)
	}
	var seen []string
	if err := s.Since(0, func(c synkfs.Change) error { seen = append(seen, string(c.Body)); return nil }); err != nil || len(seen) != 1 || seen[0] != `{"n":1}` {
		t.Fatalf("since = %v, %v", seen, err)
	}
	if recs, err := s.Scan(synkfs.Key{}, 10); err != nil || len(recs) != 1 {
		t.Fatalf("scan = %+v, %v", recs, err)
	}

	done := make(chan Report, 1)
	go func() {
		rep, err := s.ScanChanges()
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	select {
	case rep := <-done:
		t.Fatalf("ScanChanges returned %+v before the files were written", rep)
	case <-time.After(50 * time.Millisecond):
	}
	open()
	select {
	case rep := <-done:
		if !rep.Empty() {
			t.Fatalf("scan after the writer = %+v, want nothing", rep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ScanChanges still waiting")
	}
	if data, err := os.ReadFile(filepath.Join(root, "doc", "1.json")); err != nil || !strings.Contains(string(data), `"n": 1`) {
		t.Fatalf("file = %q, %v", data, err)
	}
}

// TestWriteBehindBounded: Apply waits while too many writes are behind.
func TestWriteBehindBounded(t *testing.T) {
	root := t.TempDir()
	f, open := gatedFS(root, "doc")
	s, err := Open(root, &Options{FS: f, WriteBehind: true, MaxBehind: 6, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer open() // before Close, which waits for the writer
	batch := func(v uint64) synkfs.Batch {
		return synkfs.Batch{Version: v, Puts: []synkfs.Record{
			rec(synkfs.Key{Type: "doc", ID: fmt.Sprint(v, "a")}, v, `{}`),
			rec(synkfs.Key{Type: "doc", ID: fmt.Sprint(v, "b")}, v, `{}`),
		}}
	}
	// The writer holds batch 1; with 2 and 3 queued, 6 writes are behind.
	for v := uint64(1); v <= 3; v++ {
		if err := s.Apply(context.Background(), batch(v)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Apply(context.Background(), batch(4)) }()
	select {
	case err := <-done:
		t.Fatalf("Apply over the bound returned (%v) while the writer was stuck", err)
	case <-time.After(50 * time.Millisecond):
	}
	open()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply still waiting after the writer resumed")
	}
	if s.Count() != 8 {
		t.Fatalf("count %d, want 8", s.Count())
	}
}

// TestWriteBehindRandom: random puts and deletes over a few keys, batch
// after batch, checked against a model through reads, then through the
// files (no scan difference) and after a reopen.
func TestWriteBehindRandom(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root, &Options{WriteBehind: true, NoSync: true, CheckpointEvery: 37, MaxBehind: 16})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[synkfs.Key]string{}
	keys := make([]synkfs.Key, 8)
	for i := range keys {
		keys[i] = synkfs.Key{Type: fmt.Sprint("t", i%2), ID: fmt.Sprint(i)}
	}
	check := func(s *Store, when string) {
		t.Helper()
		for _, k := range keys {
			r, err := s.Get(k)
			want, live := model[k]
			switch {
			case live && (err != nil || string(r.Body) != want):
				t.Fatalf("%s: %s = %s, %v; want %s", when, k, r.Body, err, want)
			case !live && !errors.Is(err, synkfs.ErrNotFound):
				t.Fatalf("%s: %s = %s, %v; want not found", when, k, r.Body, err)
			}
		}
	}
	for v := uint64(1); v <= 300; v++ {
		b := synkfs.Batch{Version: v}
		seen := map[synkfs.Key]bool{}
		for range 1 + rng.IntN(4) {
			k := keys[rng.IntN(len(keys))]
			if seen[k] {
				continue
			}
			seen[k] = true
			if rng.IntN(3) == 0 {
				b.Deletes = append(b.Deletes, synkfs.Tombstone{Key: k, Version: v})
				delete(model, k)
			} else {
				body := fmt.Sprintf(`{"v":%d}`, v)
				b.Puts = append(b.Puts, rec(k, v, body))
				model[k] = body
			}
		}
		if err := s.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		check(s, fmt.Sprint("after batch ", v))
	}
	rep, err := s.ScanChanges()
	if err != nil || !rep.Empty() {
		t.Fatalf("scan = %+v, %v; want no difference between files and index", rep, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s, "after reopen")
	if rep, err := s.ScanChanges(); err != nil || !rep.Empty() {
		t.Fatalf("scan after reopen = %+v, %v", rep, err)
	}
}

// TestWriteBehindWriterFails: a file error in the writer breaks the store
// (later Applies fail) without losing the batch: reads still see it, and
// a reopen replays it into the files.
func TestWriteBehindWriterFails(t *testing.T) {
	root := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(root, &Options{FS: f, WriteBehind: true})
	if err != nil {
		t.Fatal(err)
	}
	f.FailWith(vfs.OpRename, syscall.ENOSPC) // the journal never renames
	k := synkfs.Key{Type: "doc", ID: "1"}
	if err := s.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec(k, 1, `{"n":1}`)}}); err != nil {
		t.Fatalf("apply (journaled) = %v", err)
	}
	if _, err := s.ScanChanges(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("scan after the writer failed = %v, want ENOSPC", err)
	}
	if err := s.Apply(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{rec(k, 2, `{}`)}}); err == nil {
		t.Fatal("apply on a broken store succeeded")
	}
	if r, err := s.Get(k); err != nil || string(r.Body) != `{"n":1}` {
		t.Fatalf("get = %+v, %v", r, err)
	}
	_ = s.Close() // cannot checkpoint; the journal keeps the batch
	f.FailWith(vfs.OpRename, nil)

	s, err = Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Get(k); err != nil || r.Version != 1 || string(r.Body) != `{"n":1}` {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(root, "doc", "1.json")); err != nil {
		t.Fatalf("file not replayed: %v", err)
	}
}

// TestIndexSinceOrder: the version log stays in order whatever order keys
// arrive in within and across versions, with keys set again and removed.
func TestIndexSinceOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := newIndex()
	model := map[synkfs.Key]uint64{}
	for v := uint64(1); v <= 200; v++ {
		if rng.IntN(10) == 0 && v > 2 {
			v-- // a replica applies at its current version again
		}
		for range rng.IntN(6) {
			k := synkfs.Key{Type: "t", ID: fmt.Sprint(rng.IntN(40))}
			if rng.IntN(8) == 0 {
				x.remove(k)
				delete(model, k)
				continue
			}
			x.set(k, entry{Version: v})
			model[k] = v
		}
		from := uint64(rng.IntN(int(v) + 1))
		got := x.since(from)
		want := 0
		for _, mv := range model {
			if mv > from {
				want++
			}
		}
		if len(got) != want {
			t.Fatalf("since(%d) at %d: %d positions, want %d", from, v, len(got), want)
		}
		for i := range got {
			if model[got[i].key] != got[i].version {
				t.Fatalf("since(%d): stale position %+v", from, got[i])
			}
			if i > 0 && cmpVerKey(got[i-1], got[i]) >= 0 {
				t.Fatalf("since(%d): %+v before %+v", from, got[i-1], got[i])
			}
		}
	}
}

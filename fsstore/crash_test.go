package fsstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/merge"
)

// view is everything observable of a store: its record files (canonical
// bodies by path) and what it answers.
type view struct {
	Files   map[string]string
	Records map[string]string // Get: "version body"
	Lookups map[string]string
	Version uint64
	Meta    string
}

var crashKeys = []synkfs.Key{
	{Type: "user", ID: "a"}, {Type: "user", ID: "b"}, {Type: "user", ID: "c"},
	{Type: "note", ID: "d/e"}, {Type: "note", ID: ".f"}, {Type: "new", ID: "g"},
}

func observe(t *testing.T, root string) view {
	t.Helper()
	v := view{Files: map[string]string{}, Records: map[string]string{}, Lookups: map[string]string{}}
	s, err := Open(root, nil) // replays what the crash left
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == StateDir {
				return filepath.SkipDir
			}
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c, err := merge.Canonical(data)
		if err != nil {
			c = []byte("INVALID " + string(data))
		}
		v.Files[filepath.ToSlash(rel)] = string(c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range crashKeys {
		if r, err := s.Get(k); err == nil {
			v.Records[k.String()] = fmt.Sprintf("%d %s", r.Version, r.Body)
		} else if !errors.Is(err, synkfs.ErrNotFound) {
			t.Fatalf("get %s: %v", k, err)
		}
		if c, ok := s.Lookup(k); ok {
			v.Lookups[k.String()] = fmt.Sprintf("%d %v", c.Version, c.Deleted)
		}
	}
	v.Version = s.Version()
	m, _ := s.Meta("m")
	v.Meta = string(m)
	return v
}

func (v view) equal(o view) bool {
	return maps.Equal(v.Files, o.Files) && maps.Equal(v.Records, o.Records) &&
		maps.Equal(v.Lookups, o.Lookups) && v.Version == o.Version && v.Meta == o.Meta
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func body(s string) []byte { return []byte(s) }

// crashBatch overwrites two records, creates two, deletes two and sets
// metadata: every kind of step a commit takes.
var crashBatch = synkfs.Batch{
	Version: 2,
	Puts: []synkfs.Record{
		{Key: crashKeys[0], Version: 2, Body: body(`{"name":"A2","n":[1,2]}`)},
		{Key: crashKeys[1], Version: 2, Body: body(`{"name":"B2"}`)},
		{Key: crashKeys[4], Version: 2, Body: body(`{"hidden":true}`)},
		{Key: crashKeys[5], Version: 2, Body: body(`{"fresh":1}`)},
	},
	Deletes: []synkfs.Tombstone{{Key: crashKeys[2], Version: 2}, {Key: crashKeys[3], Version: 2}},
	Meta:    map[string][]byte{"m": []byte("new")},
}

// oldState makes the store before the crash: four records at version 1.
func oldState(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "old")
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := synkfs.Batch{Version: 1, Meta: map[string][]byte{"m": []byte("old")}}
	for i, k := range crashKeys[:4] {
		b.Puts = append(b.Puts, synkfs.Record{Key: k, Version: 1, Body: body(fmt.Sprintf(`{"name":"v1-%d"}`, i))})
	}
	if err := s.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runCrash opens a copy of old over a Fault, arms a crash at op n (0: no
// crash), applies crashBatch and closes. It returns the Apply error and
// the number of mutating operations the workload made.
func runCrash(t *testing.T, old, dir string, n int, opts Options, mode string) (error, int) {
	copyTree(t, old, dir)
	f := vfs.NewFault(vfs.OS)
	f.DropUnsynced(strings.Contains(mode, "power"))
	f.TornWrites(strings.Contains(mode, "torn"))
	opts.FS = f
	s, err := Open(dir, &opts)
	if err != nil {
		t.Fatal(err)
	}
	start := f.Ops()
	f.CrashAfter(n)
	applyErr := s.ApplyWith(context.Background(), crashBatch, ApplyOptions{Guard: strings.Contains(mode, "guard")})
	cerr := s.Close()
	if n == 0 && (applyErr != nil || cerr != nil) {
		t.Fatalf("without a crash: apply %v, close %v", applyErr, cerr)
	}
	return applyErr, f.Ops() - start
}

func TestCrashAtEveryStep(t *testing.T) {
	old := oldState(t)
	before := observe(t, old)
	modes := []struct {
		name string
		opts Options
	}{
		// Process kill, with a checkpoint inside Apply (CheckpointEvery 1)
		// and at Close: crash points cover the record files, the flush,
		// the snapshot and the journal checkpoint.
		{"kill", Options{CheckpointEvery: 1}},
		{"kill+torn", Options{CheckpointEvery: 1}},
		// Power loss (unsynced writes dropped) while the batch is only in
		// the journal.
		{"power+torn", Options{CheckpointEvery: 1000}},
		// Power loss with a checkpoint inside Apply: the record files,
		// written through temporary files and synced by the flush
		// through new handles, must survive once the snapshot covers
		// them.
		{"power+torn+checkpoint", Options{CheckpointEvery: 1}},
		// The same with record files written behind the journal.
		{"kill+behind", Options{CheckpointEvery: 1, WriteBehind: true}},
		{"power+torn+behind", Options{CheckpointEvery: 1000, WriteBehind: true}},
		{"power+torn+behind+checkpoint", Options{CheckpointEvery: 1, WriteBehind: true}},
		// Guarded, as a replica applies what the server sent: puts swap
		// their files in and check what came out, deletes move theirs
		// aside first (swap.go); every one of those steps is a crash
		// point, and the opening store settles what a crash left aside.
		{"kill+guard", Options{CheckpointEvery: 1}},
		{"power+torn+guard", Options{CheckpointEvery: 1000}},
		{"power+torn+guard+checkpoint", Options{CheckpointEvery: 1}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			clean := filepath.Join(t.TempDir(), "clean")
			_, total := runCrash(t, old, clean, 0, mode.opts, mode.name)
			after := observe(t, clean)
			if before.equal(after) {
				t.Fatal("the batch changed nothing")
			}
			if mode.opts.CheckpointEvery == 1000 {
				total = 0 // up to the end of Apply only: count again without Close
				f := vfs.NewFault(vfs.OS)
				dir := filepath.Join(t.TempDir(), "count")
				copyTree(t, old, dir)
				o := mode.opts
				o.FS = f
				s, err := Open(dir, &o)
				if err != nil {
					t.Fatal(err)
				}
				start := f.Ops()
				if err := s.ApplyWith(context.Background(), crashBatch, ApplyOptions{Guard: strings.Contains(mode.name, "guard")}); err != nil {
					t.Fatal(err)
				}
				if err := s.settle(); err != nil { // the files written behind too
					t.Fatal(err)
				}
				total = f.Ops() - start
				f.CrashAfter(1)
				_ = s.Close()
			}
			if total < 10 {
				t.Fatalf("only %d mutating operations: the workload is not what it seems", total)
			}
			sawOld, sawNew := false, false
			for i := 1; i <= total; i++ {
				dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
				applyErr, _ := runCrash(t, old, dir, i, mode.opts, mode.name)
				got := observe(t, dir)
				switch {
				case got.equal(after):
					sawNew = true
				case got.equal(before):
					sawOld = true
					if applyErr == nil {
						t.Fatalf("crash at op %d: Apply returned nil but the batch was lost", i)
					}
				default:
					t.Fatalf("crash at op %d: state is neither old nor new:\n got %+v\n old %+v\n new %+v", i, got, before, after)
				}
			}
			if !sawOld || !sawNew {
				t.Errorf("crash points saw old %v, new %v; want both", sawOld, sawNew)
			}
			t.Logf("%d crash points", total)
		})
	}
}

func TestTornJournalTailRepaired(t *testing.T) {
	dir := t.TempDir()
	f := vfs.NewFault(vfs.OS)
	s, err := Open(dir, &Options{FS: f})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for v := uint64(1); v <= 3; v++ {
		r := synkfs.Record{Key: synkfs.Key{Type: "t", ID: fmt.Sprint(v)}, Version: v, Body: body(fmt.Sprintf(`{"v":%d}`, v))}
		if err := s.Apply(ctx, synkfs.Batch{Version: v, Puts: []synkfs.Record{r}}); err != nil {
			t.Fatal(err)
		}
	}
	// Crash with the next journal write torn in half.
	f.TornWrites(true)
	f.CrashAfter(1)
	err = s.Apply(ctx, synkfs.Batch{Version: 4, Puts: []synkfs.Record{{Key: synkfs.Key{Type: "t", ID: "4"}, Version: 4, Body: body(`{"v":4,"pad":"` + strings.Repeat("x", 200) + `"}`)}}})
	if !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("apply during crash = %v", err)
	}
	_ = s.Close()
	if f.CrashedAt() == "" || !strings.Contains(f.CrashedAt(), "journal") {
		t.Fatalf("crash was not a journal write: %q", f.CrashedAt())
	}

	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("reopen after torn tail: %v", err)
	}
	defer s.Close()
	if s.Version() != 3 || s.Count() != 3 {
		t.Fatalf("after repair: version %d count %d, want 3 and 3", s.Version(), s.Count())
	}
	if _, err := s.Get(synkfs.Key{Type: "t", ID: "4"}); !errors.Is(err, synkfs.ErrNotFound) {
		t.Fatalf("torn batch visible: %v", err)
	}
	// The repaired journal takes new entries.
	if err := s.Apply(ctx, synkfs.Batch{Version: 4, Puts: []synkfs.Record{{Key: synkfs.Key{Type: "t", ID: "4"}, Version: 4, Body: body(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
}

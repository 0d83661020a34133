package fsstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/internal/vfs"
)

// needSwap skips a test where the file system under dir cannot exchange
// two files (a failure under CI, whose machine can).
func needSwap(t *testing.T, dir string) {
	t.Helper()
	a, b := filepath.Join(dir, ".probe-a"), filepath.Join(dir, ".probe-b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := vfs.OS.Exchange(a, b)
	_ = os.Remove(a)
	_ = os.Remove(b)
	if errors.Is(err, errors.ErrUnsupported) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the file system cannot exchange files: %v", err)
		}
		t.Skipf("the file system cannot exchange files: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// swapFixture is a store over a Fault with t/a and t/b at version 1.
type swapFixture struct {
	dir  string
	f    *vfs.Fault
	s    *Store
	a, b string // the record files of t/a and t/b
}

var keyA, keyB = synkfs.Key{Type: "t", ID: "a"}, synkfs.Key{Type: "t", ID: "b"}

func newSwapFixture(t *testing.T) *swapFixture {
	t.Helper()
	dir := t.TempDir()
	needSwap(t, dir)
	x := &swapFixture{dir: dir, f: vfs.NewFault(vfs.OS), a: filepath.Join(dir, "t", "a.json"), b: filepath.Join(dir, "t", "b.json")}
	var err error
	if x.s, err = Open(dir, &Options{FS: x.f}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.s.Close() })
	if err := x.s.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{
		{Key: keyA, Version: 1, Body: []byte(`{"v":0}`)}, {Key: keyB, Version: 1, Body: []byte(`{"v":0}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	return x
}

// compact returns the file's bytes without white space, or "absent".
func compact(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "absent"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(data)), "")
}

// noLeftovers fails if a temporary or swap file is left in dir.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if ok, _ := filepath.Match(tempPattern, e.Name()); ok {
			t.Errorf("left in %s: %s", dir, e.Name())
		}
	}
}

// reported reports whether the scan report lists k, edited or created,
// with body.
func reported(rep Report, k synkfs.Key, body string) bool {
	for _, r := range append(append([]synkfs.Record{}, rep.Edited...), rep.Created...) {
		if r.Key == k && string(r.Body) == body {
			return true
		}
	}
	return false
}

// TestGuardedPutKeepsSaveInLastInstant is the loss the chaos harness's
// long run found (seeds 301 and 302): a user's save (an editor's rename
// over the record file) that lands after the guard's last look at the
// file and before the put replaces it. The hook saves right before the
// store's first rename or exchange of its new file into the folder; the
// rename that followed the look used to replace the save with no copy.
// Now the put swaps its file in, finds the save in what came out, and
// puts it back; the next scan reports it as an edit of the put's version.
func TestGuardedPutKeepsSaveInLastInstant(t *testing.T) {
	x := newSwapFixture(t)
	var once sync.Once
	fired := false
	x.f.FailWhen(func(op vfs.Op, name string) error {
		if (op == vfs.OpRename || op == vfs.OpExchange) && isTempIn(name, filepath.Dir(x.a)) {
			once.Do(func() { fired = true; saveAsEditor(t, x.a, `{"v":"mine"}`) })
		}
		return nil
	})
	err := x.s.ApplyWith(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{{Key: keyA, Version: 2, Body: []byte(`{"v":1}`)}}}, ApplyOptions{Guard: true})
	x.f.FailWhen(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !fired {
		t.Fatal("the put never renamed a file into the folder")
	}
	if got := compact(t, x.a); got != `{"v":"mine"}` {
		t.Fatalf("t/a.json holds %s: the save made in the instant before the put replaced the file is lost", got)
	}
	noLeftovers(t, filepath.Dir(x.a))
	rep, err := x.s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].Key != keyA || rep.Edited[0].Version != 2 || string(rep.Edited[0].Body) != `{"v":"mine"}` {
		t.Fatalf("scan edited = %s, want t/a at version 2 with the save", rep.Edited)
	}
}

// TestGuardedDeleteKeepsSaveInLastInstant: the same for a guarded delete,
// whose remove used to follow its last look: the save lands right before
// the store removes (or moves aside) the file, and must stay, to be
// reported by the next scan as a creation over the tombstone.
func TestGuardedDeleteKeepsSaveInLastInstant(t *testing.T) {
	x := newSwapFixture(t)
	var once sync.Once
	fired := false
	x.f.FailWhen(func(op vfs.Op, name string) error {
		if (op == vfs.OpRemove || op == vfs.OpRename || op == vfs.OpExchange) && name == x.b {
			once.Do(func() { fired = true; saveAsEditor(t, x.b, `{"v":"mine"}`) })
		}
		return nil
	})
	err := x.s.ApplyWith(context.Background(), synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: keyB, Version: 2}}}, ApplyOptions{Guard: true})
	x.f.FailWhen(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !fired {
		t.Fatal("the delete never touched the file")
	}
	if got := compact(t, x.b); got != `{"v":"mine"}` {
		t.Fatalf("t/b.json holds %s: the save made in the instant before the delete is lost", got)
	}
	noLeftovers(t, filepath.Dir(x.b))
	rep, err := x.s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created) != 1 || rep.Created[0].Key != keyB || rep.Created[0].Version != 2 || string(rep.Created[0].Body) != `{"v":"mine"}` {
		t.Fatalf("scan created = %+v, want t/b over the version 2 tombstone with the save", rep.Created)
	}
	if c, ok := x.s.Lookup(keyB); !ok || !c.Deleted || c.Version != 2 {
		t.Fatalf("t/b in the index = %+v, want the version 2 tombstone", c)
	}
}

// TestGuardedPutKeepsFileMadeInLastInstant: a put of a record that has no
// file, while the user makes one (a creation, or a save after a removal).
// The look finds nothing; the file lands before the put's rename, which
// used to replace it. Now the put goes in only if there still is no file.
func TestGuardedPutKeepsFileMadeInLastInstant(t *testing.T) {
	x := newSwapFixture(t)
	k := synkfs.Key{Type: "t", ID: "new"}
	p := filepath.Join(x.dir, "t", "new.json")
	var once sync.Once
	fired := false
	x.f.FailWhen(func(op vfs.Op, name string) error {
		if op == vfs.OpRename && isTempIn(name, filepath.Dir(p)) {
			once.Do(func() { fired = true; saveAsEditor(t, p, `{"v":"mine"}`) })
		}
		return nil
	})
	err := x.s.ApplyWith(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{{Key: k, Version: 2, Body: []byte(`{"v":1}`)}}}, ApplyOptions{Guard: true})
	x.f.FailWhen(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !fired {
		t.Fatal("the put never renamed a file into the folder")
	}
	if got := compact(t, p); got != `{"v":"mine"}` {
		t.Fatalf("t/new.json holds %s: the file made in the instant before the put is lost", got)
	}
	noLeftovers(t, filepath.Dir(p))
	rep, err := x.s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if !reported(rep, k, `{"v":"mine"}`) {
		t.Fatalf("scan = %+v, want t/new reported with the user's body", rep)
	}
}

// TestGuardedPutTwoSavesInLastInstant: a second save lands while the
// first is out of place (between the put's exchange and the one that puts
// the first save back). Neither may be lost: one is in the record file,
// the other in the recovery folder.
func TestGuardedPutTwoSavesInLastInstant(t *testing.T) {
	x := newSwapFixture(t)
	saves := []string{`{"v":"first"}`, `{"v":"second"}`}
	n := 0
	var mu sync.Mutex
	x.f.FailWhen(func(op vfs.Op, name string) error {
		mu.Lock()
		defer mu.Unlock()
		if (op == vfs.OpRename || op == vfs.OpExchange) && isTempIn(name, filepath.Dir(x.a)) && n < len(saves) {
			saveAsEditor(t, x.a, saves[n])
			n++
		}
		return nil
	})
	err := x.s.ApplyWith(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{{Key: keyA, Version: 2, Body: []byte(`{"v":1}`)}}}, ApplyOptions{Guard: true})
	x.f.FailWhen(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := compact(t, x.a)
	for _, save := range saves {
		if got != save && !inRecovery(t, x.dir, []byte(save)) {
			t.Errorf("save %s is lost: t/a.json holds %s and no recovery copy has it", save, got)
		}
	}
	if got != saves[0] && got != saves[1] {
		t.Errorf("t/a.json holds %s, want one of the saves", got)
	}
	noLeftovers(t, filepath.Dir(x.a))
}

// noSwapFS is a file system that can neither exchange nor rename without
// replacing, as some file systems answer renameat2.
type noSwapFS struct{ vfs.FS }

func (noSwapFS) Exchange(o, n string) error {
	return &os.LinkError{Op: "exchange", Old: o, New: n, Err: errors.ErrUnsupported}
}

func (noSwapFS) RenameNoReplace(o, n string) error {
	return &os.LinkError{Op: "rename", Old: o, New: n, Err: errors.ErrUnsupported}
}

// TestGuardedWithoutSwap: where the file system cannot swap, guarded puts
// and deletes fall back to the look and a plain rename or remove: they
// still work, and still keep a save made before the look.
func TestGuardedWithoutSwap(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{FS: noSwapFS{vfs.OS}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rec := func(id string, v uint64, body string) synkfs.Record {
		return synkfs.Record{Key: synkfs.Key{Type: "t", ID: id}, Version: v, Body: []byte(body)}
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("a", 1, `{"v":0}`), rec("b", 1, `{"v":0}`), rec("c", 1, `{"v":0}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyWith(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{rec("a", 2, `{"v":1}`), rec("new", 2, `{"v":1}`)},
		Deletes: []synkfs.Tombstone{{Key: synkfs.Key{Type: "t", ID: "b"}, Version: 2}}}, ApplyOptions{Guard: true}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"a": `{"v":1}`, "new": `{"v":1}`, "b": "absent", "c": `{"v":0}`} {
		if got := compact(t, filepath.Join(dir, "t", id+".json")); got != want {
			t.Errorf("t/%s.json holds %s, want %s", id, got, want)
		}
	}
	noLeftovers(t, filepath.Join(dir, "t"))
}

// TestSaveInLastInstantSurvivesCrashAtEveryStep: saves land in the
// instant before a guarded put and a guarded delete replace their files,
// and the process dies at each file operation of the apply in turn
// (killed, or a power loss). The store that opens next (replaying the
// batch) must have each save either in its record file, reported by the
// next scan against the record, or in the recovery folder; it must leave
// nothing under a temporary name; and every record file the scan does not
// report must hold what the store answers for it.
func TestSaveInLastInstantSurvivesCrashAtEveryStep(t *testing.T) {
	needSwap(t, t.TempDir())
	old := filepath.Join(t.TempDir(), "old")
	s0, err := Open(old, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s0.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{
		{Key: keyA, Version: 1, Body: []byte(`{"v":0}`)}, {Key: keyB, Version: 1, Body: []byte(`{"v":0}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}
	saveA, saveB := `{"v":"mine a"}`, `{"v":"mine b"}`
	batch := synkfs.Batch{Version: 2, Puts: []synkfs.Record{{Key: keyA, Version: 2, Body: []byte(`{"v":1}`)}},
		Deletes: []synkfs.Tombstone{{Key: keyB, Version: 2}}}

	// run applies the batch over a copy of old, crashing at op n (0: no
	// crash), and reports which saves landed.
	run := func(t *testing.T, dir, mode string, n int) (ops int, landedA, landedB bool) {
		copyTree(t, old, dir)
		f := vfs.NewFault(vfs.OS)
		f.DropUnsynced(strings.Contains(mode, "power"))
		f.TornWrites(strings.Contains(mode, "torn"))
		s, err := Open(dir, &Options{FS: f, CheckpointEvery: 1})
		if err != nil {
			t.Fatal(err)
		}
		a, b := filepath.Join(dir, "t", "a.json"), filepath.Join(dir, "t", "b.json")
		f.FailWhen(func(op vfs.Op, name string) error {
			switch {
			case !landedA && op == vfs.OpExchange && isTempIn(name, filepath.Dir(a)):
				landedA = true
				saveAsEditor(t, a, saveA)
			case !landedB && op == vfs.OpRename && name == b:
				landedB = true
				saveAsEditor(t, b, saveB)
			}
			return nil
		})
		start := f.Ops()
		f.CrashAfter(n)
		applyErr := s.ApplyWith(context.Background(), batch, ApplyOptions{Guard: true})
		cerr := s.Close()
		if n == 0 && (applyErr != nil || cerr != nil) {
			t.Fatalf("without a crash: apply %v, close %v", applyErr, cerr)
		}
		return f.Ops() - start, landedA, landedB
	}

	for _, mode := range []string{"kill", "power+torn"} {
		t.Run(mode, func(t *testing.T) {
			total, la, lb := run(t, filepath.Join(t.TempDir(), "count"), mode, 0)
			if !la || !lb || total < 8 {
				t.Fatalf("the workload is not what it seems: %d ops, saves landed %v %v", total, la, lb)
			}
			for i := 1; i <= total; i++ {
				dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
				_, la, lb := run(t, dir, mode, i)
				s, err := Open(dir, nil)
				if err != nil {
					t.Fatalf("crash at op %d: reopen: %v", i, err)
				}
				rep, err := s.ScanChanges()
				if err != nil {
					t.Fatal(err)
				}
				noLeftovers(t, filepath.Join(dir, "t"))
				for _, c := range []struct {
					k      synkfs.Key
					landed bool
					save   string
				}{{keyA, la, saveA}, {keyB, lb, saveB}} {
					p := filepath.Join(dir, "t", c.k.ID+".json")
					got := compact(t, p)
					inFile := got == strings.ReplaceAll(c.save, " ", "")
					if c.landed && !inFile && !inRecovery(t, dir, []byte(c.save)) {
						t.Errorf("crash at op %d: the save of %s is lost (file holds %s)", i, c.k, got)
					}
					if inFile && !reported(rep, c.k, c.save) {
						t.Errorf("crash at op %d: %s holds the save but the scan does not report it: %+v", i, c.k, rep)
					}
					if !reportsKey(rep, c.k) {
						r, err := s.Get(c.k)
						switch {
						case got == "absent" && !errors.Is(err, synkfs.ErrNotFound):
							t.Errorf("crash at op %d: %s has no file and no change is reported, but the store has %s, %v", i, c.k, r.Body, err)
						case got != "absent" && (err != nil || string(r.Body) != got):
							t.Errorf("crash at op %d: %s holds %s, no change is reported, but the store has %s, %v", i, c.k, got, r.Body, err)
						}
					}
				}
				_ = s.Close()
			}
			t.Logf("%d crash points", total)
		})
	}
}

// reportsKey reports whether the scan lists k in any way.
func reportsKey(rep Report, k synkfs.Key) bool {
	for _, r := range append(append([]synkfs.Record{}, rep.Edited...), rep.Created...) {
		if r.Key == k {
			return true
		}
	}
	for _, c := range rep.Deleted {
		if c.Key == k {
			return true
		}
	}
	for _, b := range rep.Bad {
		if b.Key == k {
			return true
		}
	}
	return false
}

package fsstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func put(t *testing.T, s *Store, v uint64, recs ...synkfs.Record) {
	t.Helper()
	if err := s.Apply(context.Background(), synkfs.Batch{Version: v, Puts: recs}); err != nil {
		t.Fatal(err)
	}
}

func r(typ, id string, v uint64, b string) synkfs.Record {
	return synkfs.Record{Key: synkfs.Key{Type: typ, ID: id}, Version: v, Body: []byte(b)}
}

func write(t *testing.T, dir, rel, data string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileFormat(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	put(t, s, 1, r("user", "1", 1, `{"b":2, "a":"x"}`))
	data, err := os.ReadFile(filepath.Join(dir, "user", "1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"a\": \"x\",\n  \"b\": 2\n}\n"; string(data) != want {
		t.Fatalf("file = %q, want %q", data, want)
	}
	// type/id matching the path and a version are accepted and dropped.
	write(t, dir, "user/1.json", `{"type":"user","id":"1","version":99,"b":2,"a":"x"}`)
	got, err := s.Get(synkfs.Key{Type: "user", ID: "1"})
	if err != nil || string(got.Body) != `{"a":"x","b":2}` || got.Version != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if s.Dirty(synkfs.Key{Type: "user", ID: "1"}) {
		t.Error("reformatted file with matching type/id counts as dirty")
	}
	// A put whose body names another id is refused.
	err = s.Apply(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{r("user", "2", 2, `{"id":"3"}`)}})
	if err == nil {
		t.Error("put with a contradicting id accepted")
	}
	// A name too long is refused with the record named.
	err = s.Apply(context.Background(), synkfs.Batch{Version: 2, Puts: []synkfs.Record{r("user", strings.Repeat("z", 300), 2, `{}`)}})
	if !errors.Is(err, ErrNameTooLong) {
		t.Errorf("long id: %v", err)
	}
}

func TestScanChanges(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	put(t, s, 1, r("user", "1", 1, `{"n":1}`), r("user", "2", 1, `{"n":2}`), r("user", "3", 1, `{"n":3}`), r("user", "a/b", 1, `{}`))
	rep, err := s.ScanChanges()
	if err != nil || !rep.Empty() {
		t.Fatalf("scan of an untouched tree = %+v, %v", rep, err)
	}

	future := time.Now().Add(time.Minute)
	write(t, dir, "user/1.json", `{ "n" : 1 }`) // reformatted only
	write(t, dir, "user/2.json", `{"n":20}`)    // edited
	os.Chtimes(filepath.Join(dir, "user/2.json"), future, future)
	os.Remove(filepath.Join(dir, "user/3.json"))     // deleted
	write(t, dir, "user/4.json", `{"new":true}`)     // created
	write(t, dir, "user/5.json", `[1,2]`)            // not an object
	write(t, dir, "user/6.json", `{"n":`)            // invalid
	write(t, dir, "user/7.json", `{"type":"other"}`) // contradicts path
	write(t, dir, "user/%zz.json", `{}`)             // bad name
	write(t, dir, "user/8.json~", `{}`)              // editor backup
	write(t, dir, "user/.8.json.swp", `x`)           // vim swap
	write(t, dir, ".synkignore", "drafts/\n")        // read at open
	write(t, dir, "notes.txt", `hello`)              // not in a type folder
	big := `{"x":"` + strings.Repeat("y", DefaultMaxRecordSize) + `"}`
	write(t, dir, "user/9.json", big)

	rep, err = s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || rep.Edited[0].ID != "2" || string(rep.Edited[0].Body) != `{"n":20}` || rep.Edited[0].Version != 1 {
		t.Errorf("Edited = %+v", rep.Edited)
	}
	if len(rep.Created) != 1 || rep.Created[0].ID != "4" || string(rep.Created[0].Body) != `{"new":true}` {
		t.Errorf("Created = %+v", rep.Created)
	}
	if len(rep.Deleted) != 1 || rep.Deleted[0].ID != "3" || rep.Deleted[0].Version != 1 {
		t.Errorf("Deleted = %+v", rep.Deleted)
	}
	reasons := map[string]string{}
	for _, b := range rep.Bad {
		reasons[b.Path] = b.Reason
	}
	wantBad := map[string]string{
		"user/5.json":   "not a JSON object",
		"user/6.json":   "invalid JSON",
		"user/7.json":   `field "type"`,
		"user/%zz.json": "file name",
		"user/9.json":   "byte limit",
	}
	for p, w := range wantBad {
		if !strings.Contains(reasons[p], w) {
			t.Errorf("bad entry %s: reason %q, want it to mention %q", p, reasons[p], w)
		}
	}
	if len(rep.Bad) != len(wantBad) {
		t.Errorf("Bad = %+v", rep.Bad)
	}
	// The scan changed nothing.
	if got, _ := s.Get(synkfs.Key{Type: "user", ID: "2"}); got.Version != 1 {
		t.Errorf("scan changed the index: %+v", got)
	}

	// Dirty and the guard.
	ctx := context.Background()
	for id, want := range map[string]bool{"1": false, "2": true, "3": true, "4": true, "5": true, "a/b": false} {
		if got := s.Dirty(synkfs.Key{Type: "user", ID: id}); got != want {
			t.Errorf("Dirty(user/%s) = %v, want %v", id, got, want)
		}
	}
	err = s.ApplyWith(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{r("user", "2", 2, `{"n":21}`), r("user", "1", 2, `{"n":11}`)}}, ApplyOptions{Guard: true})
	var de *DirtyError
	if !errors.As(err, &de) || len(de.Keys) != 1 || de.Keys[0].ID != "2" {
		t.Fatalf("guarded put over an edit = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "user/2.json")); string(b) != `{"n":20}` || s.Version() != 1 {
		t.Fatal("a refused batch changed something")
	}
	err = s.ApplyWith(ctx, synkfs.Batch{Version: 2, Deletes: []synkfs.Tombstone{{Key: synkfs.Key{Type: "user", ID: "5"}, Version: 2}}}, ApplyOptions{Guard: true})
	if !errors.Is(err, ErrDirty) {
		t.Fatalf("guarded delete of a bad entry = %v", err)
	}
	// Adopting the edit (same body) is allowed, and makes it clean.
	if err := s.ApplyWith(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{r("user", "2", 2, `{"n":20}`), r("user", "4", 2, `{"new":true}`)}}, ApplyOptions{Guard: true}); err != nil {
		t.Fatalf("adopting edits: %v", err)
	}
	if s.Dirty(synkfs.Key{Type: "user", ID: "2"}) || s.Dirty(synkfs.Key{Type: "user", ID: "4"}) {
		t.Error("adopted edits still dirty")
	}
	// Once the user fixes a bad entry, it shows as created.
	write(t, dir, "user/6.json", `{"n":6}`)
	rep, _ = s.ScanChanges()
	found := false
	for _, c := range rep.Created {
		found = found || c.ID == "6"
	}
	if !found {
		t.Errorf("fixed bad entry not reported as created: %+v", rep)
	}

	// Ignore patterns from .synkignore apply after a reopen.
	s.Close()
	write(t, dir, "drafts/x.json", `{}`)
	s = openTest(t, dir)
	rep, _ = s.ScanChanges()
	for _, c := range rep.Created {
		if c.Type == "drafts" {
			t.Errorf(".synkignore not applied: %+v", c)
		}
	}
}

func TestOpenDoesNotReadRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{NoSync: true, CheckpointEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	for v := uint64(1); v <= 10; v++ {
		put(t, s, v, r("t", "k"+string(rune('a'+v)), v, `{"v":1}`))
	}
	// Leave some entries in the journal tail: do not Close.
	if err := s.j.Close(); err != nil {
		t.Fatal(err)
	}
	// Make every record file unreadable as JSON: Open must not care (nor
	// does the replayed tail rewrite the one it covers: bytes that are no
	// torn write of the store's own may be a save under way, see
	// replayApply).
	ents, _ := os.ReadDir(filepath.Join(dir, "t"))
	for _, e := range ents {
		os.WriteFile(filepath.Join(dir, "t", e.Name()), []byte("garbage"), 0o644)
	}
	s2, err := Open(dir, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Version() != 10 || s2.Count() != 10 {
		t.Fatalf("reopened: version %d count %d", s2.Version(), s2.Count())
	}
	rep, _ := s2.ScanChanges()
	if len(rep.Bad) != 10 {
		t.Errorf("bad entries after reopen = %d, want 10: %+v", len(rep.Bad), rep.Bad)
	}
}

// Conflict copies are skipped without being read; a record whose id holds
// ".conflict-" is a record like any other.
func TestScanSkipsConflictCopies(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	k := synkfs.Key{Type: "user", ID: "1.conflict-host-20260102T030405"}
	put(t, s, 1, synkfs.Record{Key: k, Version: 1, Body: []byte(`{"a":1}`)})
	write(t, dir, "user/1.conflict-host-20260102T030405.json", `not json at all`)
	write(t, dir, "user/2.conflict-host-20260102T030405-3.json", `{"b":2}`)
	rep, err := s.ScanChanges()
	if err != nil || !rep.Empty() {
		t.Fatalf("scan = %+v, %v; want nothing", rep, err)
	}
	if got, err := s.Get(k); err != nil || string(got.Body) != `{"a":1}` {
		t.Fatalf("Get(%s) = %s, %v", k, got.Body, err)
	}
	if _, err := PathKey("user/1.conflict-host-20260102T030405.json"); err == nil {
		t.Error("PathKey accepted a conflict copy's name")
	}
}

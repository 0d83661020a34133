package fsstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/synkfs/synkfs"
)

func TestAdoptKeepsTheUsersFile(t *testing.T) {
	for _, behind := range []bool{false, true} {
		dir := t.TempDir()
		s, err := Open(dir, &Options{NoSync: true, WriteBehind: behind})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		k := synkfs.Key{Type: "user", ID: "1"}
		compact := `{"b":2,"a":[1,2]}`
		write(t, dir, "user/1.json", compact)
		p := filepath.Join(dir, "user", "1.json")
		before, _ := os.Stat(p)
		rec := r("user", "1", 0, `{"a":[1,2],"b":2}`) // same body, other form
		if err := s.ApplyWith(ctx, synkfs.Batch{Puts: []synkfs.Record{rec}}, ApplyOptions{Guard: true, Adopt: true}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		after, _ := os.Stat(p)
		if string(data) != compact || !after.ModTime().Equal(before.ModTime()) {
			t.Fatalf("behind=%v: adopted file was rewritten: %q", behind, data)
		}
		if s.Dirty(k) {
			t.Errorf("behind=%v: adopted file is dirty", behind)
		}
		if rep, err := s.ScanChanges(); err != nil || !rep.Empty() {
			t.Errorf("behind=%v: scan after adopt = %+v, %v", behind, rep, err)
		}
		if got, err := s.Get(k); err != nil || string(got.Body) != `{"a":[1,2],"b":2}` {
			t.Errorf("behind=%v: Get = %s, %v", behind, got.Body, err)
		}
	}
}

// A file saved again (or removed) between the scan and the adopting
// apply is left alone, and the next scan reports what it holds.
func TestAdoptStaleBody(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := context.Background()
	write(t, dir, "user/1.json", `{"a":2}`)
	write(t, dir, "user/2.json", `{"a":1}`)
	os.Remove(filepath.Join(dir, "user", "2.json"))
	puts := []synkfs.Record{r("user", "1", 0, `{"a":1}`), r("user", "2", 0, `{"a":1}`)}
	if err := s.ApplyWith(ctx, synkfs.Batch{Puts: puts}, ApplyOptions{Adopt: true}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "user", "1.json")); string(data) != `{"a":2}` {
		t.Fatalf("newer edit overwritten: %q", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "user", "2.json")); !os.IsNotExist(err) {
		t.Fatalf("removed file came back: %v", err)
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Edited) != 1 || string(rep.Edited[0].Body) != `{"a":2}` || len(rep.Deleted) != 1 || rep.Deleted[0].ID != "2" {
		t.Errorf("scan = %+v, want user/1 edited and user/2 deleted", rep)
	}
	// Without Adopt, the same put writes the file.
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: puts[:1]}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "user", "1.json")); string(data) != "{\n  \"a\": 1\n}\n" {
		t.Errorf("plain put wrote %q", data)
	}
}

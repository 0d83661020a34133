package fsstore

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synkfs/synkfs"
)

// hostileNames are record names a hostile server might send.
var hostileNames = []string{
	"..", ".", "../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "a/b", "x\x00y", "\x00",
	`..\..\x`, `C:\x`, "./x", ".synk", "~", "-rf", strings.Repeat("a", 300), strings.Repeat("../", 100),
}

// TestKeyPathStaysInside: every key, hostile or not, maps to two plain
// components under the root, or is refused.
func TestKeyPathStaysInside(t *testing.T) {
	for _, typ := range append(hostileNames, "note") {
		for _, id := range append(hostileNames, "1") {
			k := synkfs.Key{Type: typ, ID: id}
			rel, err := KeyPath(k)
			if err != nil {
				continue
			}
			if err := checkRel(rel); err != nil {
				t.Errorf("KeyPath(%q) = %q: %v", k, rel, err)
			}
		}
	}
}

func FuzzKeyPathStaysInside(f *testing.F) {
	for _, n := range hostileNames {
		f.Add(n, "1")
		f.Add("note", n)
	}
	f.Fuzz(func(t *testing.T, typ, id string) {
		rel, err := KeyPath(synkfs.Key{Type: typ, ID: id})
		if err != nil {
			return
		}
		if err := checkRel(rel); err != nil {
			t.Fatalf("KeyPath(%q, %q) = %q: %v", typ, id, rel, err)
		}
		if filepath.Dir(filepath.Join("/root", filepath.FromSlash(rel))) == "/root" {
			t.Fatalf("%q is not inside a type folder", rel)
		}
	})
}

func TestCheckRel(t *testing.T) {
	for _, bad := range []string{"", "a", "../a", "a/..", "/a/b", "a/b/c", "a//b", "./a", "a/b\x00"} {
		if checkRel(bad) == nil {
			t.Errorf("checkRel(%q) passed", bad)
		}
	}
	if err := checkRel("note/1.json"); err != nil {
		t.Fatal(err)
	}
}

func rput(k synkfs.Key, v uint64, body string) synkfs.Record {
	return synkfs.Record{Key: k, Version: v, Body: json.RawMessage(body)}
}

// TestSymlinkedTypeFolder: a type folder that is a link out of the tree
// refuses every write and delete through it, leaves the outside untouched
// and leaves the store usable.
func TestSymlinkedTypeFolder(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "1.json")
	if err := os.WriteFile(victim, []byte(`{"precious":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "note")); err != nil {
		t.Fatalf("make a symlink: %v", err)
	}
	s, err := Open(root, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	k := synkfs.Key{Type: "note", ID: "1"}
	err = s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rput(k, 1, `{"x":1}`)}})
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("put through a linked folder: %v", err)
	}
	err = s.Apply(ctx, synkfs.Batch{Version: 1, Deletes: []synkfs.Tombstone{{Key: k, Version: 1}}})
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("delete through a linked folder: %v", err)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != `{"precious":true}` {
		t.Fatalf("the file outside was touched: %q %v", data, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("files were created outside: %v", ents)
	}
	// Other types still work; the store is not broken.
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rput(synkfs.Key{Type: "todo", ID: "1"}, 1, `{}`)}}); err != nil {
		t.Fatalf("a put of another type after the refusal: %v", err)
	}
	if _, err := s.Get(k); err == nil {
		t.Fatal("Get read through the linked folder")
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created) != 0 || len(rep.Edited) != 0 {
		t.Fatalf("scan picked up files behind a link: %+v", rep)
	}
}

// TestSymlinkedRecordFile: a link planted in place of a record file is
// never read (not by Get, not by a scan, which reports it as bad) and a
// put replaces the link instead of writing through it.
func TestSymlinkedRecordFile(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret.json")
	if err := os.WriteFile(secret, []byte(`{"password":"hunter2"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(root, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	k := synkfs.Key{Type: "note", ID: "1"}
	if err := s.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rput(k, 1, `{"x":1}`)}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "note", "1.json")
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, file); err != nil {
		t.Fatalf("make a symlink: %v", err)
	}
	// A new link beside it, for a record the store never wrote.
	if err := os.Symlink(secret, filepath.Join(root, "note", "2.json")); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(k); err == nil {
		t.Fatalf("Get followed the link: %s", r.Body)
	}
	rep, err := s.ScanChanges()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(rep.Created, rep.Edited...) {
		if strings.Contains(string(r.Body), "hunter2") {
			t.Fatalf("scan read through a link: %s %s", r.Key, r.Body)
		}
	}
	if len(rep.Bad) != 2 {
		t.Fatalf("links not reported as bad entries: %+v", rep.Bad)
	}
	if !s.Dirty(k) {
		t.Fatal("a link in place of a record file is not dirty")
	}
	if err := s.Apply(ctx, synkfs.Batch{Version: 2, Puts: []synkfs.Record{rput(k, 2, `{"x":2}`)}}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(secret); string(data) != `{"password":"hunter2"}` {
		t.Fatalf("the put wrote through the link: %s", data)
	}
	fi, err := os.Lstat(file)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the put did not replace the link: %v %v", fi.Mode(), err)
	}
}

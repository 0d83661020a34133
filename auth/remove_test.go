package auth

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRemove: a removed token's secret no longer checks, the others' still
// do; the file is replaced (new inode, mode 0600, no temp files left); an
// unknown name, a missing file and a broken file are errors that change
// nothing; removing the last token leaves a valid empty file.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	now := time.Now()
	a, err := Add(path, "a", ReadWrite, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Add(path, "b", ReadOnly, []string{"note"}, now)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := Remove(path, "a"); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("the file was rewritten in place, not replaced")
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after remove, want 0600", after.Mode().Perm())
	}
	set, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.Check(a); ok {
		t.Fatal("the removed token's secret still checks")
	}
	if tok, ok := set.Check(b); !ok || tok.Name != "b" || set.Len() != 1 {
		t.Fatalf("the remaining token: %+v %v (%d tokens)", tok, ok, set.Len())
	}

	data, _ := os.ReadFile(path)
	if err := Remove(path, "a"); !errors.Is(err, ErrNoToken) {
		t.Fatalf("removing a token twice: %v", err)
	}
	if data2, _ := os.ReadFile(path); string(data2) != string(data) {
		t.Fatal("a refused remove changed the file")
	}
	if err := Remove(filepath.Join(dir, "missing.json"), "b"); err == nil || errors.Is(err, ErrNoToken) {
		t.Fatalf("remove from a missing file: %v", err)
	}
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`{"synkfsTokens":1,"tokens":[`), 0o600)
	if err := Remove(broken, "b"); err == nil {
		t.Fatal("remove from a broken file succeeded")
	}

	if err := Remove(path, "b"); err != nil {
		t.Fatal(err)
	}
	set, err = Load(path)
	if err != nil || set.Len() != 0 {
		t.Fatalf("after removing the last token: %v, %v", set, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestLookupSame(t *testing.T) {
	h := HashSecret("s")
	set, err := NewSet([]Token{
		{Name: "a", Role: ReadWrite, Hash: h},
		{Name: "b", Role: ReadOnly, Types: []string{"x", "y"}, Hash: HashSecret("t")},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, ok := set.Lookup("a")
	if !ok || a.Role != ReadWrite {
		t.Fatalf("lookup a: %+v %v", a, ok)
	}
	if _, ok := set.Lookup("c"); ok {
		t.Fatal("lookup of a missing name found one")
	}
	if _, ok := (*Set)(nil).Lookup("a"); ok {
		t.Fatal("a nil set found a token")
	}
	b, _ := set.Lookup("b")
	b.Types[0] = "changed"
	if b2, _ := set.Lookup("b"); b2.Types[0] != "x" {
		t.Fatal("Lookup shares its types with the set")
	}

	base := Token{Name: "n", Role: ReadOnly, Types: []string{"x", "y"}, Hash: h}
	for _, c := range []struct {
		u    Token
		same bool
	}{
		{Token{Name: "n", Role: ReadOnly, Types: []string{"y", "x"}, Hash: h, Created: time.Now()}, true},
		{Token{Name: "n", Role: ReadOnly, Types: []string{"y", "x", "x"}, Hash: h}, true},
		{Token{Name: "m", Role: ReadOnly, Types: []string{"x", "y"}, Hash: h}, false},
		{Token{Name: "n", Role: ReadWrite, Types: []string{"x", "y"}, Hash: h}, false},
		{Token{Name: "n", Role: ReadOnly, Types: []string{"x"}, Hash: h}, false},
		{Token{Name: "n", Role: ReadOnly, Hash: h}, false},
		{Token{Name: "n", Role: ReadOnly, Types: []string{"x", "y"}, Hash: HashSecret("other")}, false},
	} {
		if got := base.Same(&c.u); got != c.same {
			t.Errorf("Same(%+v) = %v, want %v", c.u, got, c.same)
		}
		if got := c.u.Same(&base); got != c.same {
			t.Errorf("Same is not symmetric for %+v", c.u)
		}
	}
}

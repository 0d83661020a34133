package auth

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAddCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	rw, err := Add(path, "laptop", ReadWrite, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := Add(path, "viewer", ReadOnly, []string{"note", "todo"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rw, SecretPrefix) || len(rw) != len(SecretPrefix)+43 {
		t.Fatalf("secret %q: want %s and 43 base64url characters", rw, SecretPrefix)
	}
	if rw == ro {
		t.Fatal("two tokens got the same secret")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	for _, s := range []string{rw, ro, strings.TrimPrefix(rw, SecretPrefix)} {
		if strings.Contains(string(data), s) {
			t.Fatal("the token file holds a secret")
		}
	}
	set, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 2 {
		t.Fatalf("%d tokens, want 2", set.Len())
	}
	tok, ok := set.Check(rw)
	if !ok || tok.Name != "laptop" || !tok.CanWrite() || tok.Limited() || !tok.MayAccess("anything") {
		t.Fatalf("check of the read-write secret: %+v %v", tok, ok)
	}
	tok, ok = set.Check(ro)
	if !ok || tok.Name != "viewer" || tok.CanWrite() || !tok.Limited() || !tok.MayAccess("todo") || tok.MayAccess("user") {
		t.Fatalf("check of the read-only secret: %+v %v", tok, ok)
	}
	if !tok.Created.Equal(now) {
		t.Fatalf("created %v, want %v", tok.Created, now)
	}
	for _, bad := range []string{"", rw + "x", rw[:len(rw)-1], strings.ToUpper(rw), HashSecret(rw), strings.TrimPrefix(HashSecret(rw), "sha256:")} {
		if _, ok := set.Check(bad); ok {
			t.Fatalf("secret %q was accepted", bad)
		}
	}
	if _, err := Add(path, "laptop", ReadOnly, nil, now); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("a second token named laptop: %v", err)
	}
	if _, err := Add(path, "x", Role("admin"), nil, now); err == nil {
		t.Fatal("a token with role admin was added")
	}
	if set2, _ := Load(path); set2.Len() != 2 {
		t.Fatal("a refused add changed the file")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := HashSecret("s")
	for name, in := range map[string]string{
		"not json":      "tokens",
		"no version":    `{"tokens":[]}`,
		"newer version": `{"synkfsTokens":2,"tokens":[]}`,
		"unknown field": `{"synkfsTokens":1,"tokens":[],"secret":"x"}`,
		"no name":       `{"synkfsTokens":1,"tokens":[{"role":"read-only","hash":"` + good + `"}]}`,
		"bad role":      `{"synkfsTokens":1,"tokens":[{"name":"a","role":"root","hash":"` + good + `"}]}`,
		"bad hash":      `{"synkfsTokens":1,"tokens":[{"name":"a","role":"read-only","hash":"sha256:xyz"}]}`,
		"plain secret":  `{"synkfsTokens":1,"tokens":[{"name":"a","role":"read-only","hash":"synkfs_abc"}]}`,
		"empty type":    `{"synkfsTokens":1,"tokens":[{"name":"a","role":"read-only","types":[""],"hash":"` + good + `"}]}`,
		"duplicate":     `{"synkfsTokens":1,"tokens":[{"name":"a","role":"read-only","hash":"` + good + `"},{"name":"a","role":"read-write","hash":"` + good + `"}]}`,
		"trailing data": `{"synkfsTokens":1,"tokens":[]} {}`,
	} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	s, err := Decode([]byte(`{"synkfsTokens":1,"tokens":[]}`))
	if err != nil || s.Len() != 0 {
		t.Fatalf("empty file: %v", err)
	}
	if _, ok := s.Check("anything"); ok {
		t.Fatal("an empty set accepted a secret")
	}
}

func TestFromRequest(t *testing.T) {
	for _, c := range []struct {
		hdr     map[string][]string
		secret  string
		present bool
	}{
		{nil, "", false},
		{map[string][]string{"Authorization": {"Bearer abc"}}, "abc", true},
		{map[string][]string{"Authorization": {"bearer  abc "}}, "abc", true},
		{map[string][]string{"Authorization": {"Basic abc"}}, "", true},
		{map[string][]string{"Sec-Websocket-Protocol": {"synkfs, synkfs.bearer.xyz"}}, "xyz", true},
		{map[string][]string{"Sec-Websocket-Protocol": {"synkfs", "synkfs.bearer.q"}}, "q", true},
		{map[string][]string{"Sec-Websocket-Protocol": {"synkfs"}}, "", false},
	} {
		r := &http.Request{Header: http.Header(c.hdr)}
		s, p := FromRequest(r)
		if s != c.secret || p != c.present {
			t.Errorf("%v: got %q %v, want %q %v", c.hdr, s, p, c.secret, c.present)
		}
	}
	r := &http.Request{Header: Header("synkfs_x")}
	if s, _ := FromRequest(r); s != "synkfs_x" {
		t.Fatalf("Header round trip: %q", s)
	}
}

func TestClientSecret(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvToken, " from-env\n")
	if s, err := ClientSecret(""); err != nil || s != "from-env" {
		t.Fatalf("env: %q %v", s, err)
	}
	p := filepath.Join(dir, "secret")
	os.WriteFile(p, []byte("synkfs_abc\n"), 0o600)
	if s, err := ClientSecret(p); err != nil || s != "synkfs_abc" {
		t.Fatalf("file: %q %v", s, err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ClientSecret(p); err == nil {
		t.Fatal("an empty token file was taken")
	}
	hashes := filepath.Join(dir, "tokens.json")
	if _, err := Add(hashes, "a", ReadOnly, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientSecret(hashes); err == nil || !strings.Contains(err.Error(), "hashes") {
		t.Fatalf("the server's token file as a client secret: %v", err)
	}
	if _, err := ClientSecret(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing token file was taken")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"synkfsTokens":1,"tokens":[]}`))
	f.Add([]byte(`{"synkfsTokens":1,"tokens":[{"name":"a","role":"read-only","types":["note"],"hash":"` + HashSecret("s") + `"}]}`))
	f.Add([]byte(`{"synkfsTokens":1,"tokens":[{"name":"a","role":"read-write","hash":"sha256:00"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a file that decodes the same.
		out, err := Encode(s.Tokens())
		if err != nil {
			t.Fatal(err)
		}
		s2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v\n%s", err, out)
		}
		if s2.Len() != s.Len() {
			t.Fatalf("%d tokens became %d", s.Len(), s2.Len())
		}
		for i, tok := range s.Tokens() {
			tok2 := s2.Tokens()[i]
			if tok.Name != tok2.Name || tok.Role != tok2.Role || tok.Hash != tok2.Hash || len(tok.Types) != len(tok2.Types) {
				t.Fatalf("token %d changed: %+v -> %+v", i, tok, tok2)
			}
		}
	})
}

package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/internal/syncbuf"
	"github.com/synkfs/synkfs/wire"
)

// TestTokenRemove: remove takes the name as an argument or as --name like
// add; the removed secret no longer checks; an unknown name is an error
// that names the list command; no name is a usage error.
func TestTokenRemove(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	secrets := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		var out, errb bytes.Buffer
		if code := run([]string{"token", "add", "--tokens", file, "--name", name, "--role", "read-write"}, &out, &errb); code != exitOK {
			t.Fatalf("token add %s: exit %d\n%s", name, code, errb.String())
		}
		secrets[name] = strings.TrimSpace(out.String())
	}
	var out, errb bytes.Buffer
	if code := run([]string{"token", "remove", "--tokens", file, "a"}, &out, &errb); code != exitOK || out.Len() != 0 {
		t.Fatalf("token remove a: exit %d, stdout %q\n%s", code, out.String(), errb.String())
	}
	if code := run([]string{"token", "remove", "--tokens", file, "--name", "b"}, &out, &errb); code != exitOK {
		t.Fatalf("token remove --name b: exit %d\n%s", code, errb.String())
	}
	set, err := auth.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"a": false, "b": false, "c": true} {
		if _, ok := set.Check(secrets[name]); ok != want {
			t.Errorf("after removing a and b, %s checks: %v", name, ok)
		}
	}
	errb.Reset()
	if code := run([]string{"token", "remove", "--tokens", file, "a"}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "token list") {
		t.Fatalf("removing a again: exit %d\n%s", code, errb.String())
	}
	if code := run([]string{"token", "remove", "--tokens", file}, &out, &errb); code != exitUsage {
		t.Fatalf("remove without a name: exit %d", code)
	}
	if code := run([]string{"token", "remove", "--tokens", file, "--name", "x", "c"}, &out, &errb); code != exitUsage {
		t.Fatalf("remove with two names: exit %d", code)
	}
	if code := run([]string{"token", "remove", "--tokens", filepath.Join(t.TempDir(), "none.json"), "c"}, &out, &errb); code != exitError {
		t.Fatalf("remove from a missing file: exit %d", code)
	}
	errb.Reset()
	if code := run([]string{"token", "remove", "--tokens", file, "c"}, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "no tokens left") {
		t.Fatalf("removing the last token: exit %d\n%s", code, errb.String())
	}
}

// tokenLink is a WebSocket to a child serve, presenting a secret.
func tokenLink(ctx context.Context, addr, secret string) (*websocket.Conn, *http.Response, error) {
	ws, resp, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{HTTPHeader: auth.Header(secret)})
	if err != nil {
		return nil, resp, err
	}
	c := wire.NewConn(ws, nil)
	if err := c.Write(ctx, &wire.Hello{Protocol: 1, Client: "c", Features: []string{wire.FeatureAck}}); err != nil {
		ws.CloseNow()
		return nil, nil, err
	}
	for {
		m, err := c.Read(ctx)
		if err != nil {
			ws.CloseNow()
			return nil, nil, err
		}
		if _, ok := m.(*wire.Welcome); ok {
			return ws, resp, nil
		}
	}
}

// eventually retries f every 100 ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tokenCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"token"}, args...), &out, &errb); code != exitOK {
		t.Fatalf("token %v: exit %d\n%s", args, code, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// TestServeReloadsTokens drives a real `synkfs serve --tokens` process: a
// token added with `token add` connects within seconds without a restart;
// `token remove` closes the removed token's link with 1008 and refuses it
// from then on, while the other token's link stays; a malformed file keeps
// the tokens in force and is logged (again on SIGHUP); the repaired file
// is taken.
func TestServeReloadsTokens(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.json")
	secretA := tokenCLI(t, "add", "--tokens", file, "--name", "a", "--role", "read-write")

	addrFile := filepath.Join(dir, "addr")
	cmd, stderr := startChild(t, "serve", "--listen", "127.0.0.1:0", "--addr-file", addrFile, "--tokens", file, "--log-level", "info")
	var addr string
	eventually(t, 10*time.Second, "serve ready", func() error {
		b, err := os.ReadFile(addrFile)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return errors.New("no address yet")
		}
		addr = strings.TrimSpace(string(b))
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	wsA, _, err := tokenLink(ctx, addr, secretA)
	if err != nil {
		t.Fatalf("a connects: %v", err)
	}
	defer wsA.CloseNow()
	if _, resp, err := tokenLink(ctx, addr, "synkfs_unknown"); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an unknown secret: %v", err)
	}

	secretB := tokenCLI(t, "add", "--tokens", file, "--name", "b", "--role", "read-only")
	var wsB *websocket.Conn
	eventually(t, 8*time.Second, "b connects after token add", func() error {
		wsB, _, err = tokenLink(ctx, addr, secretB)
		return err
	})
	defer wsB.CloseNow()

	tokenCLI(t, "remove", "--tokens", file, "a")
	removed := time.Now()
	// a's link is closed by the server with 1008; reads before that may
	// bring notifies.
	rctx, rcancel := context.WithTimeout(ctx, 8*time.Second)
	for {
		_, _, err := wsA.Read(rctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token revoked" {
			t.Fatalf("a's link after token remove: %v", err)
		}
		break
	}
	rcancel()
	t.Logf("a's link closed %v after token remove", time.Since(removed).Round(time.Millisecond))
	if _, resp, err := tokenLink(ctx, addr, secretA); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a reconnects after token remove: %v", err)
	}
	// b's link was left alone: it still answers a pull.
	cb := wire.NewConn(wsB, nil)
	if err := cb.Write(ctx, &wire.Changes{Version: 0}); err != nil {
		t.Fatalf("b's link after a was removed: %v", err)
	}
	if _, err := cb.Read(ctx); err != nil {
		t.Fatalf("b's link after a was removed: %v", err)
	}

	// A malformed file: logged, old tokens kept (b in, a out).
	if err := os.WriteFile(file, []byte(`{"synkfsTokens":1,"tokens":[{"name":`), 0o600); err != nil {
		t.Fatal(err)
	}
	const notReloaded = "token file not reloaded"
	eventually(t, 8*time.Second, "the malformed file is reported", func() error {
		if !strings.Contains(stderr.String(), notReloaded) {
			return errors.New("no error logged")
		}
		return nil
	})
	if ws, _, err := tokenLink(ctx, addr, secretB); err != nil {
		t.Fatalf("b after the file broke: %v", err)
	} else {
		ws.CloseNow()
	}
	if _, _, err := tokenLink(ctx, addr, secretA); err == nil {
		t.Fatal("a connected after the file broke")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "SIGHUP reports the broken file again", func() error {
		if n := strings.Count(stderr.String(), notReloaded); n < 2 {
			return errors.New("logged once")
		}
		return nil
	})
	if ws, _, err := tokenLink(ctx, addr, secretB); err != nil {
		t.Fatalf("serve after SIGHUP: %v", err)
	} else {
		ws.CloseNow()
	}

	// Repaired: a token added to a fresh file is taken, b is gone.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	secretC := tokenCLI(t, "add", "--tokens", file, "--name", "c", "--role", "read-write")
	eventually(t, 8*time.Second, "c connects after the file is repaired", func() error {
		ws, _, err := tokenLink(ctx, addr, secretC)
		if err == nil {
			ws.CloseNow()
		}
		return err
	})
	if _, _, err := tokenLink(ctx, addr, secretB); err == nil {
		t.Fatal("b connected after the repaired file left it out")
	}
	if !strings.Contains(stderr.String(), "tokens reloaded") {
		t.Errorf("no 'tokens reloaded' in the logs:\n%s", stderr.String())
	}
	for _, s := range []string{secretA, secretB, secretC} {
		if strings.Contains(stderr.String(), s) {
			t.Fatal("a secret is in serve's logs")
		}
	}
}

// TestTokenReloader checks the reload decisions one poll at a time: an
// unchanged file is not reread; a replaced file is applied; a malformed,
// a zero-byte and a missing file keep the set in force and are logged once
// per change (every time when forced); a valid file without tokens is
// applied.
func TestTokenReloader(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.json")
	secretA := tokenCLI(t, "add", "--tokens", file, "--name", "a", "--role", "read-write")
	fi, _ := os.Stat(file)
	logs := &syncbuf.Buffer{}
	var applied []*auth.Set
	r := &tokenReloader{path: file, log: slog.New(slog.NewTextHandler(logs, nil)), read: fi, count: 1,
		apply: func(s *auth.Set) { applied = append(applied, s) }}
	errors := func() int { return strings.Count(logs.String(), "token file not reloaded") }

	r.check(false)
	if len(applied) != 0 {
		t.Fatal("an unchanged file was applied")
	}
	r.check(true)
	if len(applied) != 1 || applied[0].Len() != 1 {
		t.Fatalf("a forced check: %d sets applied", len(applied))
	}
	secretB := tokenCLI(t, "add", "--tokens", file, "--name", "b", "--role", "read-only")
	r.check(false)
	if len(applied) != 2 || applied[1].Len() != 2 {
		t.Fatalf("after token add: %d sets applied", len(applied))
	}
	if _, ok := applied[1].Check(secretB); !ok {
		t.Fatal("the applied set does not take b")
	}

	for i, bad := range [][]byte{[]byte(`{"synkfsTokens":1,"tokens":[`), nil, []byte(`{"synkfsTokens":9,"tokens":[]}`)} {
		if err := os.WriteFile(file+".new", bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
		r.check(false)
		r.check(false) // unchanged: not logged again
		if len(applied) != 2 || errors() != i+1 {
			t.Fatalf("bad file %d: %d sets applied, %d errors logged\n%s", i, len(applied), errors(), logs.String())
		}
	}
	r.check(true)
	if errors() != 4 {
		t.Fatalf("a forced check of a bad file logged %d errors, want 4", errors())
	}
	if !strings.Contains(logs.String(), "tokens=2") {
		t.Errorf("the error does not say how many tokens are kept:\n%s", logs.String())
	}
	os.Remove(file)
	r.check(false)
	r.check(false)
	if len(applied) != 2 || errors() != 5 {
		t.Fatalf("missing file: %d applied, %d errors", len(applied), errors())
	}

	// Back, then emptied by removing every token: applied, with a warning.
	tokenCLI(t, "add", "--tokens", file, "--name", "a2", "--role", "read-write")
	r.check(false)
	if len(applied) != 3 || applied[2].Len() != 1 {
		t.Fatalf("restored file: %d applied", len(applied))
	}
	if _, ok := applied[2].Check(secretA); ok {
		t.Fatal("the old a is back")
	}
	tokenCLI(t, "remove", "--tokens", file, "a2")
	r.check(false)
	if len(applied) != 4 || applied[3].Len() != 0 || !strings.Contains(logs.String(), "every client is refused") {
		t.Fatalf("file without tokens: %d applied\n%s", len(applied), logs.String())
	}
}

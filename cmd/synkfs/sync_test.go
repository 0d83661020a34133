package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/replica"
	"github.com/synkfs/synkfs/server"
)

// startServer runs a real server over an in-memory store on loopback and
// returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	srv := server.New(memstore.New(), nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	return strings.TrimPrefix(hs.URL, "http://")
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startSync starts `synkfs sync` on dir as a child process (the test binary
// acting as synkfs) and returns it; the test kills it at the latest when it
// ends.
func startSync(t *testing.T, addr, dir string) *exec.Cmd {
	t.Helper()
	cmd, _ := startChild(t, "sync", "--server", addr, dir)
	return cmd
}

func syncOnce(t *testing.T, addr, dir string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run([]string{"--log-level", "warn", "sync", "--once", "--server", addr, dir}, &out, &errb); code != exitOK {
		t.Fatalf("sync --once %s: exit %d\n%s%s", dir, code, out.String(), errb.String())
	}
}

func writeRecord(t *testing.T, dir, rel, body string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 20 ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func staged(dir string) int {
	st, ok, err := replica.ReadStatus(dir)
	if err != nil || !ok {
		return -1
	}
	return len(st.Staged)
}

func checkRecords(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	for rel, body := range want {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if !merge.Equal(data, []byte(body)) {
			t.Fatalf("%s holds %s, want %s", rel, data, body)
		}
	}
}

// TestKill9Offline: changes staged while the server is away survive a
// kill -9 of the running sync and reach the other replica afterwards.
func TestKill9Offline(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	cmd := startSync(t, deadAddr(t), a)
	waitFor(t, 10*time.Second, "the status file", func() bool { return staged(a) == 0 })

	want := map[string]string{}
	for i := range 20 {
		rel := fmt.Sprintf("n/%d.json", i)
		writeRecord(t, a, rel, `{"draft":1}`)
		want[rel] = fmt.Sprintf(`{"final":%d}`, i)
		writeRecord(t, a, rel, want[rel]) // a second edit of the same record
	}
	waitFor(t, 10*time.Second, "20 staged changes", func() bool { return staged(a) == 20 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	addr := startServer(t)
	syncOnce(t, addr, a)
	syncOnce(t, addr, b)
	checkRecords(t, b, want)
}

// TestKill9DuringBurst: kill -9 in the middle of a burst of edits flowing
// to a live server loses none of them, and a resent batch is applied once.
func TestKill9DuringBurst(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	addr := startServer(t)
	cmd := startSync(t, addr, a)
	waitFor(t, 10*time.Second, "the status file", func() bool { return staged(a) == 0 })

	want := map[string]string{}
	for i := range 60 {
		rel := fmt.Sprintf("burst/%d.json", i)
		want[rel] = fmt.Sprintf(`{"i":%d,"text":"some words to make it longer"}`, i)
		writeRecord(t, a, rel, want[rel])
		if i == 30 {
			// Let the running sync take some of them in first.
			waitFor(t, 10*time.Second, "the sync to stage edits", func() bool {
				st, ok, _ := replica.ReadStatus(a)
				return ok && st.Records > 0
			})
		}
		if i == 40 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
		}
	}
	syncOnce(t, addr, a)
	if n := staged(a); n != 0 {
		t.Fatalf("%d changes still staged", n)
	}
	syncOnce(t, addr, b)
	checkRecords(t, b, want)
	ents, _ := os.ReadDir(filepath.Join(b, "burst"))
	if len(ents) != len(want) {
		t.Fatalf("b holds %d records, want %d", len(ents), len(want))
	}
}

// TestOnceNoServerExitCode: --once without a server exits 3 and says so.
func TestOnceNoServerExitCode(t *testing.T) {
	dir := t.TempDir()
	writeRecord(t, dir, "n/1.json", `{"v":1}`)
	var out, errb bytes.Buffer
	code := run([]string{"sync", "--once", "--server", deadAddr(t), dir}, &out, &errb)
	if code != exitNoServer {
		t.Fatalf("exit %d, want %d\n%s", code, exitNoServer, errb.String())
	}
	if !strings.Contains(errb.String(), "cannot reach the server") {
		t.Fatalf("stderr: %s", errb.String())
	}
	if n := staged(dir); n != 1 {
		t.Fatalf("staged %d, want 1", n)
	}
}

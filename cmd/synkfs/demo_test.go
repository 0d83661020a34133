package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs/internal/syncbuf"
)

// TestDemo runs `synkfs demo` as a newcomer would: the sample records
// reach bob, an edit in bob reaches alice, each change is printed, and
// Ctrl-C stops it cleanly.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "demo", dir)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var out, errb syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
	})
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	waitFor(t, 15*time.Second, "the sample records in bob", func() bool {
		_, err := os.Stat(filepath.Join(bob, "notes", "welcome.json"))
		return err == nil
	})
	writeRecord(t, bob, "todo/3.json", `{"task":"from bob"}`)
	waitFor(t, 15*time.Second, "bob's record in alice", func() bool {
		_, err := os.Stat(filepath.Join(alice, "todo", "3.json"))
		return err == nil
	})
	checkRecords(t, alice, map[string]string{"todo/3.json": `{"task":"from bob"}`})
	waitFor(t, 5*time.Second, "the flow to be printed", func() bool {
		s := out.String()
		return strings.Contains(s, "bob    -> server: todo/3.json") && strings.Contains(s, "alice  <- server: todo/3.json")
	})
	if !strings.Contains(out.String(), alice) || !strings.Contains(out.String(), bob) {
		t.Fatalf("the demo does not say where to edit:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("demo exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop on Ctrl-C")
	}
}

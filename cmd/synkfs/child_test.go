package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/synkfs/synkfs/internal/syncbuf"
)

// startChild starts the test binary as `synkfs args...` with warnings-only
// logs and returns it with its standard error, which may be read while it
// runs. The test kills it at the latest when it ends, and shows its
// standard error if the test failed.
func startChild(t *testing.T, args ...string) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "SYNKFS_LOG_LEVEL=warn")
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("synkfs %s stderr:\n%s", args[0], stderr.String())
		}
	})
	return cmd, stderr
}

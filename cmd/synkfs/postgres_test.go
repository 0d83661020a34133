package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/merge"
)

// TestServePostgres: two `synkfs serve --postgres` processes over one
// database, a `synkfs sync` folder on each; edits flow both ways, and an
// edit made while one server is killed with SIGKILL reaches the other
// folder once a server runs again on that address.
func TestServePostgres(t *testing.T) {
	url := pgtest.URL(t)
	s1 := startServe(t, "--postgres", url)
	s2 := startServe(t, "--postgres", url)
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	startSync(t, s1.addr, a)
	startSync(t, s2.addr, b)

	writeRecord(t, a, "task/1.json", `{"title":"from a"}`)
	waitFor(t, 15*time.Second, "task/1 to reach b through the other server", func() bool { return hasRecord(b, "task/1.json", `{"title":"from a"}`) })
	writeRecord(t, b, "task/2.json", `{"title":"from b"}`)
	waitFor(t, 15*time.Second, "task/2 to reach a", func() bool { return hasRecord(a, "task/2.json", `{"title":"from b"}`) })

	s1.kill9(t)
	writeRecord(t, a, "task/3.json", `{"title":"while a's server was down"}`)
	waitFor(t, 15*time.Second, "the offline edit to be staged", func() bool { return staged(a) == 1 })
	startServe(t, "--listen", s1.addr, "--postgres", url)
	waitFor(t, 20*time.Second, "the offline edit to reach b", func() bool { return hasRecord(b, "task/3.json", `{"title":"while a's server was down"}`) })
	checkRecords(t, a, map[string]string{"task/1.json": `{"title":"from a"}`, "task/2.json": `{"title":"from b"}`})
}

// hasRecord reports whether dir holds rel with a body equal to body.
func hasRecord(dir, rel, body string) bool {
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	return err == nil && merge.Equal(data, []byte(body))
}

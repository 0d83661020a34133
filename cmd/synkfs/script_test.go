package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/synkfs/synkfs/internal/pgtest"
	"github.com/synkfs/synkfs/merge"
)

// mainEnv, when set to 1, makes the test binary run as synkfs itself; the
// Go tests that need a real process they can kill -9 start it that way.
const mainEnv = "SYNKFS_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	// pgtest.Run stops the private PostgreSQL cluster, if the tests
	// started one, before testscript.Main exits.
	testscript.Main(pgtestRunner{m}, map[string]func(){
		"synkfs": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

type pgtestRunner struct{ m *testing.M }

func (r pgtestRunner) Run() int { return pgtest.Run(r.m) }

// TestScripts runs the end-to-end scripts in testdata/script at the root of
// the repository: the real binary, real folders and a real server process.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("..", "..", "testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("SYNKFS_LOG_LEVEL", "warn")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile": cmdWaitFile,
			"envfile":  cmdEnvFile,
			"jsoneq":   cmdJSONEq,
			"write":    cmdWrite,
		},
	})
}

// waitfile FILE: wait (at most 10 s) until FILE exists and is not empty.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: waitfile FILE")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(ts.MkAbs(args[0])); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 10s", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// envfile NAME FILE: set NAME to FILE's content, trimmed.
func cmdEnvFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: envfile NAME FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}

// jsoneq FILE JSON: FILE holds the same JSON value as JSON (any format).
// With !, FILE does not hold it (or does not exist).
func cmdJSONEq(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: jsoneq FILE JSON")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	eq := err == nil && merge.Equal(data, []byte(args[1]))
	if eq == neg {
		got := string(data)
		if err != nil {
			got = err.Error()
		}
		ts.Fatalf("%s: got %s, want %s%s", args[0], strings.TrimSpace(got), map[bool]string{true: "not ", false: ""}[neg], args[1])
	}
}

// write FILE CONTENT: write CONTENT to FILE (creating folders), with an
// mtime a little in the future so that the size+mtime check always sees a
// change even within one clock tick.
func cmdWrite(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: write FILE CONTENT")
	}
	p := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Dir(p), 0o755))
	ts.Check(os.WriteFile(p, []byte(args[1]+"\n"), 0o644))
	t := time.Now().Add(time.Duration(len(args[1])%997+1) * time.Millisecond)
	ts.Check(os.Chtimes(p, t, t))
}

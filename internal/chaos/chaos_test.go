package chaos

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs/internal/pgtest"
)

var (
	seedFlag   = flag.Uint64("seed", 0, "run only this chaos seed (TestChaos)")
	longFlag   = flag.Bool("long", false, "run the long chaos schedule (TestChaosLong)")
	opsFlag    = flag.Int("ops", 5000, "steps per schedule in the long run")
	runsFlag   = flag.Int("runs", 1, "schedules (consecutive seeds) in the long run")
	binFlag    = flag.String("bin", "", "synkfs binary for process replicas in the long run (default: build ./cmd/synkfs)")
	reportOut  = flag.String("report", "", "write the long run's report as JSON to this file")
	mountsFlag = flag.Int("mounts", 1, "replicas run as synkfs mount processes in the long run (needs FUSE and the synkfs binary)")
	keepFlag   = flag.Bool("keep", false, "keep the folders of a run (printed) instead of removing them")
	traceFlag  = flag.String("schedule", "", "write a failing schedule's steps to this file")
	pgFlag     = flag.Bool("postgres", false, "run the long run and TestChaosFaults over servers sharing a PostgreSQL database (see -instances)")
	instFlag   = flag.Int("instances", 3, "servers sharing the database with -postgres")
)

func TestMain(m *testing.M) {
	if os.Getenv(ChildEnv) == "1" {
		os.Exit(SyncMain(os.Args[1:], os.Stderr))
	}
	pgtest.Main(m)
}

// selfCommand runs this test binary as a sync process (see SyncMain).
func selfCommand() ([]string, []string) {
	return []string{os.Args[0]}, []string{ChildEnv + "=1"}
}

// regressionSeeds are schedules that once found a bug; each runs in the
// short test. (Add the seed of every failure fixed, with what it found.)
var regressionSeeds = []regression{
	{833845, "a duplicated hello quarantined the batch in flight; the quarantined change was then overwritten; " +
		"and a journal replay after SIGKILL brought back a file removed while down and replaced a save made meanwhile"},
	{369261, "a duplicated hello quarantined the batch in flight"},
}

// shortSteps is the length of each schedule of the short run; with the
// regression seeds and one random seed it takes about 15 s under -race
// on two cores. SYNKFS_CHAOS_STEPS and SYNKFS_CHAOS_SEEDS make it longer
// (more steps per schedule, more random seeds).
const shortSteps = 150

// envInt returns the positive integer in the environment variable name,
// or def.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// regression is a seed that once found a bug, and what it found.
type regression struct {
	seed  uint64
	found string
}

// shortSeeds returns the seeds of a short run: every regression seed,
// then SYNKFS_CHAOS_SEEDS random ones (default randoms); -seed N gives
// only N.
func shortSeeds(t *testing.T, regressions []regression, randoms int) []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	var seeds []uint64
	for _, r := range regressions {
		seeds = append(seeds, r.seed)
	}
	base := uint64(time.Now().UnixNano() % 1_000_000)
	for i := range envInt(t, "SYNKFS_CHAOS_SEEDS", randoms) {
		seeds = append(seeds, base+uint64(i)*7919)
	}
	return seeds
}

// TestChaos is the short run, part of go test ./...: every regression
// seed plus random ones, each a short schedule with every kind of fault.
// -seed N runs only seed N.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes about 15 s; skipped with -short")
	}
	steps := envInt(t, "SYNKFS_CHAOS_STEPS", shortSteps)
	for _, seed := range shortSeeds(t, regressionSeeds, 1) {
		cmd, env := selfCommand()
		runSeed(t, Config{Seed: seed, Ops: steps, Replicas: 3, Procs: 1, Command: cmd, Env: env, FaultRate: 0.12, SlowSaves: true})
	}
}

func runSeed(t *testing.T, cfg Config) *Report {
	t.Helper()
	cfg.Dir = t.TempDir()
	if *keepFlag {
		dir, err := os.MkdirTemp("", "chaos-")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("folders kept in %s", dir)
		cfg.Dir = dir
	}
	cfg.Logf = t.Logf
	cfg.Trace = *traceFlag
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("chaos seed %d: %v", cfg.Seed, err)
	}
	t.Logf("seed %d (%s server):\n%s", cfg.Seed, rep.Server, rep.Summary())
	if err := rep.Err(); err != nil {
		rerun := fmt.Sprintf("go test ./internal/chaos -run 'TestChaos$' -seed %d -v", cfg.Seed)
		switch {
		case strings.HasPrefix(t.Name(), "TestChaosLong"):
			rerun = fmt.Sprintf("go test ./internal/chaos -run TestChaosLong -long -ops %d -runs 1 -seed %d -v", cfg.Ops, cfg.Seed)
			if cfg.Postgres != "" {
				rerun += fmt.Sprintf(" -mounts %d -postgres -instances %d", cfg.Mounts, cfg.Instances)
			}
		case strings.HasPrefix(t.Name(), "TestChaosFaults"):
			rerun = fmt.Sprintf("go test ./internal/chaos -run 'TestChaosFaults/%s$' -seed %d -v", strings.Join(cfg.Faults, ","), cfg.Seed)
			if cfg.Postgres != "" {
				rerun += " -postgres"
			}
		case strings.HasPrefix(t.Name(), "TestChaosPostgres"):
			rerun = fmt.Sprintf("go test ./internal/chaos -run 'TestChaosPostgres$' -seed %d -v", cfg.Seed)
			if cfg.Ops != shortSteps {
				rerun = fmt.Sprintf("SYNKFS_CHAOS_STEPS=%d %s", cfg.Ops, rerun)
			}
		case cfg.Ops != shortSteps:
			rerun = fmt.Sprintf("SYNKFS_CHAOS_STEPS=%d %s", cfg.Ops, rerun)
		}
		t.Errorf("%v\nrerun with: %s\n(add -keep -schedule /tmp/chaos.txt to keep the folders and write the steps and replica logs)", err, rerun)
	}
	return rep
}

// pgSeeds are schedules of the postgres mode that once found a bug; each
// runs in TestChaosPostgres. (Add the seed of every failure fixed, with
// what it found.)
var pgSeeds = []regression{
	{584956, "an instance restarted while LISTEN connections were being killed never heard of other instances' commits again " +
		"(its Watch failed at once and the server gave up)"},
}

// TestChaosPostgres is the short run of the postgres mode, part of go
// test ./...: three servers over one fresh PostgreSQL database, each
// replica's every link going to a live one at random, with instance
// stops and crashes, killed database links and killed LISTEN connections
// among the faults. It runs the regression seeds of pgSeeds plus random
// ones (SYNKFS_CHAOS_SEEDS, default 2) of SYNKFS_CHAOS_STEPS steps; -seed
// N runs only seed N. Without PostgreSQL it skips (fails with CI=true).
func TestChaosPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("the postgres chaos run takes about 20 s under -race; skipped with -short")
	}
	steps := envInt(t, "SYNKFS_CHAOS_STEPS", shortSteps)
	for _, seed := range shortSeeds(t, pgSeeds, 2) {
		cmd, env := selfCommand()
		runSeed(t, Config{Seed: seed, Ops: steps, Replicas: 3, Procs: 1, Command: cmd, Env: env, FaultRate: 0.15, SlowSaves: true,
			Postgres: pgtest.URL(t), Instances: 3})
	}
}

// TestChaosLong is the long run, by hand or nightly:
//
//	go test ./internal/chaos -run TestChaosLong -long -ops 5000 -runs 3 -v -timeout 2h
//
// With -postgres its servers are -instances servers sharing a PostgreSQL
// database (see TestChaosPostgres).
//
// Its process replicas run the real synkfs binary (built from
// ./cmd/synkfs unless -bin names one).
func TestChaosLong(t *testing.T) {
	if !*longFlag {
		t.Skip("the long run needs -long")
	}
	cmd, env := selfCommand()
	mounts := *mountsFlag
	if *binFlag != "" {
		cmd, env = []string{*binFlag}, nil
	} else {
		bin := filepath.Join(t.TempDir(), "synkfs")
		build := exec.Command("go", "build", "-o", bin, "github.com/synkfs/synkfs/cmd/synkfs")
		build.Env = append(os.Environ(), "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("build synkfs: %v\n%s", err, out)
			}
			t.Logf("cannot build synkfs (%v), process replicas run the test binary as a sync process, and no mounts:\n%s", err, out)
			mounts = 0
		} else {
			cmd, env = []string{bin}, nil
		}
	}
	if mounts > 0 {
		if why := fuseMissing(); why != "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("no mount replicas: %s (run with -mounts 0)", why)
			}
			t.Logf("no mount replicas: %s", why)
			mounts = 0
		}
	}
	start := *seedFlag
	if start == 0 {
		start = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	total := &Report{}
	for i := range *runsFlag {
		seed := start + uint64(i)
		cfg := Config{Seed: seed, Ops: *opsFlag, Replicas: 4, Procs: 1, Mounts: mounts, Command: cmd, Env: env,
			FaultRate: 0.08, Quiesce: 2 * time.Minute, Pace: 10 * time.Millisecond, SlowSaves: true}
		if *pgFlag {
			cfg.Postgres, cfg.Instances = pgtest.URL(t), *instFlag
		}
		rep := runSeed(t, cfg)
		total.Add(rep)
	}
	t.Logf("long run total over %d schedules (%s, GOMAXPROCS %d):\n%s", *runsFlag, runtime.Version(), runtime.GOMAXPROCS(0), total.Summary())
	if *reportOut != "" {
		data, _ := json.MarshalIndent(total, "", "  ")
		if err := os.WriteFile(*reportOut, data, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestChaosFaults runs one short schedule per fault kind, that fault only,
// to tell which fault a failure needs.
func TestChaosFaults(t *testing.T) {
	if *seedFlag == 0 {
		t.Skip("needs -seed")
	}
	kinds := FaultKinds()
	if *pgFlag {
		kinds = PostgresFaultKinds()
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cmd, env := selfCommand()
			cfg := Config{Seed: *seedFlag, Ops: 150, Replicas: 3, Procs: 1, Command: cmd, Env: env, FaultRate: 0.3, Faults: []string{kind}, SlowSaves: true}
			if *pgFlag {
				cfg.Postgres, cfg.Instances = pgtest.URL(t), *instFlag
			}
			runSeed(t, cfg)
		})
	}
}

// fuseMissing returns why this machine cannot mount FUSE file systems for
// a mount replica, or "".
func fuseMissing() string {
	if runtime.GOOS != "linux" {
		return "FUSE mounts are only tried on Linux"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "no /dev/fuse"
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return "not root and no fusermount"
			}
		}
	}
	return ""
}

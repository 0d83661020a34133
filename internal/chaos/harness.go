// Package chaos is the randomized convergence harness of synkfs: a real
// server and several real replicas (sync engines over real folders, some
// of them separate processes) go through a random schedule of user
// operations and faults; then every fault heals, the harness waits for
// quiescence and checks that nothing was lost. Everything random comes
// from one seed, printed on failure, so a schedule can be run again.
//
// In the postgres mode (Config.Postgres) the server is several servers
// sharing one PostgreSQL database, and each link of a replica goes to one
// of them at random; see shared.go.
//
// The timing of the engines' goroutines is not under the seed's control:
// a seed replays the same operations and faults in the same order, against
// the same kinds of interleavings, not the same instructions.
//
// See docs/RELIABILITY.md for what is checked and how to run it.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/server"
)

// Config describes one chaos run.
type Config struct {
	// Seed drives every random choice of the schedule.
	Seed uint64
	// Ops is the number of scheduled steps (user operations; faults come
	// on top).
	Ops int
	// Replicas is the number of in-process replicas; Procs the number run
	// as child processes (killed with SIGKILL).
	Replicas, Procs int
	// Mounts is the number of replicas run as `synkfs mount` processes
	// (FUSE): users edit them through the mountpoint, the harness checks
	// them in their state folder and that the mount shows the same
	// records. Command must then be the synkfs binary.
	Mounts int
	// Command starts a process replica: the program and the arguments
	// before "sync ...". Env is added to its environment. Empty Command:
	// no process replicas.
	Command []string
	Env     []string
	// Dir is where the folders go (a fresh temporary directory).
	Dir string
	// FaultRate is the probability that a step also injects a fault.
	FaultRate float64
	// Server forces the server mode ("memory", "data" or "postgres"); ""
	// picks memory or data from the seed, or postgres when Postgres is
	// set.
	Server string
	// Postgres is the URL of an empty PostgreSQL database for the
	// postgres mode: Instances servers (default 3) share it, each over
	// its own pgstore.Store on a port of its own, and every link of a
	// replica goes to a live one chosen at random.
	Postgres  string
	Instances int
	// Faults, if set, limits the faults injected to these kinds (see
	// FaultKinds); nil injects every kind.
	Faults []string
	// SlowSaves lets users save files in two writes with a pause between
	// (a half-written file on disk for a moment).
	SlowSaves bool
	// Quiesce bounds the wait for convergence after healing.
	Quiesce time.Duration
	// Pace is the longest pause between steps.
	Pace time.Duration
	// Trace, if set, is a file that receives the schedule's steps when
	// the run fails.
	Trace string
	// Logf receives progress; nil discards it.
	Logf func(format string, args ...any)
}

// Report is what a run did and found.
type Report struct {
	Seed      uint64
	Server    string // memory, data or postgres
	Instances int    // servers sharing the database (postgres)
	Replicas  int
	Procs     int
	Mounts    int
	Steps     int
	// Ops counts user operations by kind; Faults injected faults by kind.
	Ops    map[string]int
	Faults map[string]int
	Relay  RelayStats
	// Server side.
	Batches, Records, MetaOnly int
	// Values: every field value a user wrote, and where it ended up.
	Written, OnServer, InCopies, Superseded, Lost int
	// Copies kept: conflict copies and recovery files in all folders.
	ConflictCopies, RecoveryFiles int
	// Invariants: checks made by kind.
	Checks map[string]int
	// Failures found (empty when the run passed).
	Failures []string
	Elapsed  time.Duration
	Settle   time.Duration
}

// Err returns the failures as one error, or nil.
func (r *Report) Err() error {
	if len(r.Failures) == 0 {
		return nil
	}
	return fmt.Errorf("chaos seed %d: %d failures:\n  %s", r.Seed, len(r.Failures), strings.Join(r.Failures, "\n  "))
}

// Add sums o into r (for totals over several runs).
func (r *Report) Add(o *Report) {
	if r.Ops == nil {
		r.Ops, r.Faults, r.Checks = map[string]int{}, map[string]int{}, map[string]int{}
	}
	r.Steps += o.Steps
	r.Instances = max(r.Instances, o.Instances)
	for k, v := range o.Ops {
		r.Ops[k] += v
	}
	for k, v := range o.Faults {
		r.Faults[k] += v
	}
	for k, v := range o.Checks {
		r.Checks[k] += v
	}
	r.Relay.Links += o.Relay.Links
	r.Relay.Refused += o.Relay.Refused
	r.Relay.Cuts += o.Relay.Cuts
	r.Relay.Duplicated += o.Relay.Duplicated
	r.Relay.Dropped += o.Relay.Dropped
	r.Batches += o.Batches
	r.Records += o.Records
	r.MetaOnly += o.MetaOnly
	r.Written += o.Written
	r.OnServer += o.OnServer
	r.InCopies += o.InCopies
	r.Superseded += o.Superseded
	r.Lost += o.Lost
	r.ConflictCopies += o.ConflictCopies
	r.RecoveryFiles += o.RecoveryFiles
	r.Failures = append(r.Failures, o.Failures...)
	r.Elapsed += o.Elapsed
	r.Settle = max(r.Settle, o.Settle)
}

// Summary formats r for people.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "steps %d, user operations %d, faults %d, elapsed %s (longest settle %s)\n",
		r.Steps, sum(r.Ops), sum(r.Faults), r.Elapsed.Round(time.Millisecond), r.Settle.Round(time.Millisecond))
	fmt.Fprintf(&b, "operations: %s\n", counts(r.Ops))
	fmt.Fprintf(&b, "faults: %s\n", counts(r.Faults))
	fmt.Fprintf(&b, "relay: %d links, %d cut, %d refused, %d messages duplicated, %d server frames dropped\n",
		r.Relay.Links, r.Relay.Cuts, r.Relay.Refused, r.Relay.Duplicated, r.Relay.Dropped)
	fmt.Fprintf(&b, "server: %d batches (%d records) committed, %d batch records without changes\n", r.Batches, r.Records, r.MetaOnly)
	fmt.Fprintf(&b, "values written %d: on the server %d, only in conflict or recovery copies %d, overwritten by the same user %d, lost %d\n",
		r.Written, r.OnServer, r.InCopies, r.Superseded, r.Lost)
	fmt.Fprintf(&b, "copies kept: %d conflict copies, %d recovery files\n", r.ConflictCopies, r.RecoveryFiles)
	fmt.Fprintf(&b, "invariants checked: %s\n", counts(r.Checks))
	fmt.Fprintf(&b, "failures: %d\n", len(r.Failures))
	return b.String()
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// Run runs one chaos schedule and returns its report; the run passed when
// Report.Failures is empty. An error means the harness itself could not
// run (no loopback, no temp dir).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Ops <= 0 {
		cfg.Ops = 100
	}
	if cfg.Replicas+cfg.Procs < 2 {
		cfg.Replicas = 2 - cfg.Procs
	}
	if len(cfg.Command) == 0 {
		cfg.Procs, cfg.Mounts = 0, 0
	}
	if cfg.Quiesce <= 0 {
		cfg.Quiesce = 60 * time.Second
	}
	if cfg.Pace <= 0 {
		cfg.Pace = 8 * time.Millisecond
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &cluster{
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 1)),
		hist: NewHistory(),
		rep: &Report{Seed: cfg.Seed, Replicas: cfg.Replicas, Procs: cfg.Procs, Mounts: cfg.Mounts,
			Ops: map[string]int{}, Faults: map[string]int{}, Checks: map[string]int{}},
		vals: map[string]*written{},
	}
	c.mode = cfg.Server
	if c.mode == "" && cfg.Postgres != "" {
		c.mode = "postgres"
	}
	if c.mode == "" {
		c.mode = []string{"memory", "data"}[c.rng.IntN(2)]
	}
	if c.mode == "postgres" {
		if cfg.Postgres == "" {
			return nil, errors.New("the postgres mode needs Config.Postgres")
		}
		if c.cfg.Instances <= 0 {
			c.cfg.Instances = 3
		}
		c.rep.Instances = c.cfg.Instances
	}
	c.rep.Server = c.mode
	start := time.Now()
	defer func() { c.rep.Elapsed = time.Since(start) }()
	if err := c.startServer(); err != nil {
		return nil, err
	}
	defer c.stopServer(false)
	for i := range cfg.Replicas + cfg.Procs + cfg.Mounts {
		n, err := c.newNode(i, i >= cfg.Replicas, i >= cfg.Replicas+cfg.Procs)
		if err != nil {
			c.closeNodes()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	defer c.closeNodes()
	if c.mode == "postgres" {
		c.retarget()
	}
	for _, n := range c.nodes {
		c.trace("%s: %s, on conflict %s", n.name, n.kind(), n.strategy)
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	cfg.Logf("chaos seed %d: server %s, %d replicas in process, %d as processes, %d mounts, %d steps", cfg.Seed, c.mode, cfg.Replicas, cfg.Procs, cfg.Mounts, cfg.Ops)
	for step := range cfg.Ops {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.step = step
		c.rep.Steps++
		c.expire()
		if c.rng.Float64() < cfg.FaultRate {
			c.fault()
		}
		c.userOp()
		c.sampleCursors()
		time.Sleep(time.Duration(c.rng.Int64N(int64(cfg.Pace) + 1)))
	}
	c.heal()
	settle := time.Now()
	c.quiesce(ctx)
	c.rep.Settle = time.Since(settle)
	if c.mode == "postgres" && len(c.rep.Failures) == 0 {
		c.checkNotify(ctx)
		c.quiesce(ctx)
	}
	c.check()
	if len(c.rep.Failures) > 0 && c.cfg.Trace != "" {
		for _, n := range c.nodes {
			_ = os.WriteFile(c.cfg.Trace+"."+n.name+".log", []byte(n.logs.String()), 0o644)
		}
		for _, in := range c.insts {
			_ = os.WriteFile(fmt.Sprintf("%s.i%d.log", c.cfg.Trace, in.i), []byte(in.logs.String()), 0o644)
		}
		_ = os.WriteFile(c.cfg.Trace, []byte(strings.Join(c.traces, "\n")+"\n"), 0o644)
	}
	return c.rep, nil
}

// cluster is the state of one run.
type cluster struct {
	cfg  Config
	rng  *rand.Rand
	hist *History
	rep  *Report
	step int
	mode string

	// the server
	srvMu   sync.Mutex
	srv     *server.Server
	hs      *http.Server
	store   synkfs.Store // unwrapped
	sfault  *vfs.Fault   // under the data store
	addr    string
	crashAt int // step at which a crashed server is restarted; 0 none

	// the postgres mode (shared.go)
	insts   []*instance
	pgAdmin *pgxpool.Pool  // kills database connections
	storms  sync.WaitGroup // db-link-kill goroutines
	killed  atomic.Int64   // database connections they killed

	nodes []*node

	// the oracle of user edits
	valMu   sync.Mutex
	vals    map[string]*written
	nextVal int
	moved   int

	traceMu sync.Mutex
	traces  []string
}

// trace notes a step of the schedule, for failure reports.
func (c *cluster) trace(format string, args ...any) {
	c.traceMu.Lock()
	c.traces = append(c.traces, fmt.Sprintf("%4d %s ", c.step, time.Now().Format("15:04:05.000000"))+fmt.Sprintf(format, args...))
	c.traceMu.Unlock()
}

// written is one field value a user wrote.
type written struct {
	node       int
	key        synkfs.Key
	field      string
	superseded bool
}

var discard = slog.New(slog.DiscardHandler)

func (c *cluster) startServer() error {
	if c.mode == "postgres" {
		return c.startInstances()
	}
	if c.mode == "data" {
		c.sfault = vfs.NewFault(vfs.OS)
		// As `synkfs serve --data` opens it: record files written behind
		// the journal.
		s, err := fsstore.Open(filepath.Join(c.cfg.Dir, "server"), &fsstore.Options{FS: c.sfault, Logger: discard, WriteBehind: true})
		if err != nil {
			return fmt.Errorf("open server store: %w", err)
		}
		if c.store != nil {
			c.hist.Reopened(s)
			c.rep.Checks["durability: reopened server store matches every acknowledged commit"]++
		}
		c.store = s
	} else {
		c.store = memstore.New()
	}
	srv := server.New(c.hist.Wrap(c.store), &server.Options{Logger: discard,
		PingInterval: 400 * time.Millisecond, PingTimeout: 800 * time.Millisecond, WriteTimeout: 2 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	c.srvMu.Lock()
	c.srv, c.hs, c.addr = srv, hs, ln.Addr().String()
	c.srvMu.Unlock()
	for _, n := range c.nodes {
		n.relay.SetTarget(c.addr)
		n.relay.Cut()
	}
	return nil
}

// stopServer stops the server; crashed: its store already failed, so
// closing it writes nothing.
func (c *cluster) stopServer(crashed bool) {
	if c.mode == "postgres" {
		c.stopInstances()
		return
	}
	c.srvMu.Lock()
	srv, hs, store := c.srv, c.hs, c.store
	c.srvMu.Unlock()
	if srv == nil {
		return
	}
	if c.sfault != nil && !crashed {
		// Let a graceful stop finish its writes; a crash refuses them.
		c.sfault.FailWith("", nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = hs.Close()
	_ = store.Close()
}

func (c *cluster) restartServer(crashed bool) {
	c.stopServer(crashed)
	if err := c.startServer(); err != nil {
		c.failf("restart the server: %v", err)
	}
}

func (c *cluster) serverState() (epoch string, version uint64, recs map[synkfs.Key]string, err error) {
	c.srvMu.Lock()
	s := c.store
	c.srvMu.Unlock()
	if c.mode == "postgres" {
		ps := c.readStore()
		if ps == nil {
			return "", 0, nil, errors.New("no instance is live")
		}
		s = ps
	}
	recs = map[synkfs.Key]string{}
	epoch, version = s.Epoch(), s.Version()
	var after synkfs.Key
	for {
		page, err := s.Scan(after, 1000)
		if err != nil {
			return "", 0, nil, err
		}
		for _, r := range page {
			recs[r.Key] = canonical(r.Body)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Key
	}
	if s.Epoch() != epoch || s.Version() != version {
		return "", 0, nil, errors.New("server moved during the scan")
	}
	return epoch, version, recs, nil
}

func (c *cluster) failf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(c.rep.Failures) < 60 {
		c.rep.Failures = append(c.rep.Failures, msg)
	}
}

func (c *cluster) closeNodes() {
	for _, n := range c.nodes {
		n.stop(false)
		_ = n.relay.Close()
	}
}

// expire ends the timed faults whose step has come.
func (c *cluster) expire() {
	for _, n := range c.nodes {
		for kind, until := range n.until {
			if c.step < until {
				continue
			}
			delete(n.until, kind)
			n.endFault(kind)
			c.trace("end %s on %s", kind, n.name)
		}
		if n.restartAt > 0 && c.step >= n.restartAt {
			n.restartAt = 0
			c.trace("restart %s", n.name)
			if err := n.start(); err != nil {
				c.failf("restart %s: %v", n.name, err)
			}
		}
	}
	c.expireInstances(false)
	if c.crashAt > 0 && (c.step >= c.crashAt || (c.sfault != nil && c.sfault.Crashed())) {
		c.crashAt = 0
		c.restartServer(true)
	}
}

// faultTable lists the kinds of fault a step may inject, with weights.
type faultTable []struct {
	kind   string
	weight int
}

// kinds returns the table's kinds, in order.
func (t faultTable) kinds() []string {
	out := make([]string, 0, len(t))
	for _, f := range t {
		out = append(out, f.kind)
	}
	return out
}

// pick draws a kind with a probability in proportion to its weight.
func (t faultTable) pick(rng *rand.Rand) string {
	total := 0
	for _, f := range t {
		total += f.weight
	}
	x := rng.IntN(total)
	for _, f := range t {
		if x < f.weight {
			return f.kind
		}
		x -= f.weight
	}
	return ""
}

// faultKinds are the faults a step may inject against one server.
var faultKinds = faultTable{
	{"link-cut", 6},
	{"offline", 5},
	{"half-open", 3},
	{"drop-incoming", 2},
	{"duplicate-messages", 3},
	{"slow-replica", 2},
	{"disk-full", 2},
	{"disk-eio", 2},
	{"replica-crash", 4},
	{"replica-kill-9", 3},
	{"server-restart", 2},
	{"server-crash", 2},
}

// FaultKinds returns the kinds of fault a schedule may inject.
func FaultKinds() []string { return faultKinds.kinds() }

func (c *cluster) fault() {
	kinds := faultKinds
	if c.mode == "postgres" {
		kinds = pgFaultKinds
	}
	kind := kinds.pick(c.rng)
	if c.cfg.Faults != nil && !slices.Contains(c.cfg.Faults, kind) {
		return // the draw is made all the same: the schedule stays the same
	}
	n := c.nodes[c.rng.IntN(len(c.nodes))]
	span := 3 + c.rng.IntN(40) // steps a timed fault lasts
	switch kind {
	case "link-cut":
		n.relay.Cut()
	case "offline":
		n.relay.SetDown(true)
		n.until["offline"] = c.step + span*2
	case "half-open":
		n.relay.SetFrozen(true)
		n.until["half-open"] = c.step + span
	case "drop-incoming":
		n.relay.SetDropIncoming(true)
		n.until["drop-incoming"] = c.step + span
	case "duplicate-messages":
		n.relay.SetDuplicate(0.2 + 0.6*c.rng.Float64())
		n.until["duplicate-messages"] = c.step + span
	case "slow-replica":
		n.relay.SetDelay(time.Duration(5+c.rng.IntN(30)) * time.Millisecond)
		if n.fault != nil {
			n.fault.SetLatency(time.Duration(1+c.rng.IntN(3)) * time.Millisecond)
		}
		n.until["slow-replica"] = c.step + span
	case "disk-full", "disk-eio":
		if n.proc || n.fault == nil {
			kind = "link-cut"
			n.relay.Cut()
			break
		}
		errno := syscall.ENOSPC
		if kind == "disk-eio" {
			errno = syscall.EIO
		}
		op := []vfs.Op{vfs.OpWrite, vfs.OpSync, vfs.OpCreate, vfs.OpRename, ""}[c.rng.IntN(5)]
		n.fault.FailWith(op, errno)
		n.until[kind] = c.step + 2 + c.rng.IntN(15)
	case "replica-crash", "replica-kill-9":
		if n.proc != (kind == "replica-kill-9") {
			// The other kind of node: pick one of the right kind, if any.
			var pick []*node
			for _, m := range c.nodes {
				if m.proc == (kind == "replica-kill-9") {
					pick = append(pick, m)
				}
			}
			if len(pick) == 0 {
				kind = "replica-crash"
				pick = c.nodes[:c.cfg.Replicas]
			}
			n = pick[c.rng.IntN(len(pick))]
		}
		if !n.running {
			kind = "link-cut"
			n.relay.Cut()
			break
		}
		torn := c.rng.IntN(2) == 0
		after := 1 + c.rng.IntN(40)
		if torn && !n.proc {
			c.rep.Faults["torn-write-armed"]++
		}
		n.kill(after, torn)
		n.restartAt = c.step + c.rng.IntN(25) + 1
	case "instance-stop", "instance-crash", "db-link-kill", "listen-kill":
		kind = c.instanceFault(kind, n)
	case "server-restart":
		c.restartServer(false)
		if c.mode == "memory" {
			kind = "server-restart-new-epoch"
		} else {
			kind = "server-restart-resume"
		}
	case "server-crash":
		if c.mode != "data" || c.crashAt > 0 {
			kind = "server-restart"
			c.restartServer(false)
			break
		}
		c.sfault.TornWrites(c.rng.IntN(2) == 0)
		// A power loss, not only the process: what was written and not
		// synced is gone too.
		c.sfault.DropUnsynced(true)
		c.sfault.CrashAfter(1 + c.rng.IntN(30))
		c.crashAt = c.step + 1 + c.rng.IntN(20)
	}
	c.rep.Faults[kind]++
	c.trace("fault %s on %s", kind, n.name)
}

// keepDamagedLinks reports whether SYNKFS_CHAOS_KEEP_DAMAGED=1 asks the
// postgres mode to keep, through the healing, links that lost or repeated
// messages (by default they are cut: no TCP link does either). It tests
// the client over such links.
func keepDamagedLinks() bool { return os.Getenv("SYNKFS_CHAOS_KEEP_DAMAGED") == "1" }

// heal ends every fault and restarts what is down.
func (c *cluster) heal() {
	if c.crashAt > 0 {
		c.crashAt = 0
		c.restartServer(true)
	}
	for _, in := range c.insts {
		if in.db != nil {
			in.db.Arm(0)
		}
	}
	c.expireInstances(true)
	for _, n := range c.nodes {
		faulty := len(n.until) > 0 || !n.running || (n.relay.Damaged() && !keepDamagedLinks())
		for kind := range n.until {
			n.endFault(kind)
		}
		clear(n.until)
		n.relay.Heal()
		if !n.running {
			n.restartAt = 0
			if err := n.start(); err != nil {
				c.failf("restart %s: %v", n.name, err)
			}
		}
		// A frozen link may linger: start afresh. With servers sharing a
		// database, a replica without a fault keeps its link, so that
		// what it lacks must reach it through the notifications of its
		// instance (a reconnect would catch it up and hide a lost one).
		if c.mode != "postgres" || faulty {
			n.relay.Cut()
		} else {
			c.rep.Checks["catch-up over a link kept through the healing"]++
		}
	}
}

// quiesce waits until every replica holds exactly the server's records,
// has nothing staged and has applied the server's version.
func (c *cluster) quiesce(ctx context.Context) {
	deadline := time.Now().Add(c.cfg.Quiesce)
	var why string
	for i := 0; ; i++ {
		why = c.settled()
		if why == "" {
			c.rep.Checks["convergence: every replica's records equal the server's"] += len(c.nodes)
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if i%20 == 19 {
			for _, n := range c.nodes {
				n.kickScan()
			}
		}
		if i%50 == 49 {
			c.cfg.Logf("seed %d: not settled after %s:\n  %s", c.cfg.Seed, time.Since(deadline.Add(-c.cfg.Quiesce)).Round(time.Second), why)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c.mode == "postgres" {
		why += "\n  the last commits: " + strings.Join(c.hist.Recent(), "; ")
	}
	c.failf("no convergence within %s:\n  %s", c.cfg.Quiesce, why)

}

// settled returns "" when the cluster is quiet, or why it is not.
func (c *cluster) settled() string {
	epoch, version, recs, err := c.serverState()
	if err != nil {
		return err.Error()
	}
	var why []string
	for _, n := range c.nodes {
		st, err := n.status()
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", n.name, err))
			continue
		}
		if st.Epoch != epoch || st.Version != version {
			why = append(why, fmt.Sprintf("%s at %s/%d, server at %s/%d%s", n.name, st.Epoch, st.Version, epoch, version, c.linkedTo(n)))
		}
		if st.Staged > 0 {
			why = append(why, fmt.Sprintf("%s has %d staged", n.name, st.Staged))
		}
		mine, err := readRecords(n.dir)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", n.name, err))
			continue
		}
		if d := diff(recs, mine); d != "" {
			why = append(why, fmt.Sprintf("%s differs from the server: %s", n.name, d))
		}
		if n.mount {
			shown, err := readRecords(n.mnt)
			if err != nil {
				why = append(why, fmt.Sprintf("%s's mount: %v", n.name, err))
			} else if d := diff(mine, shown); d != "" {
				why = append(why, fmt.Sprintf("%s's mount differs from its folder: %s", n.name, d))
			}
		}
	}
	return strings.Join(why, "\n  ")
}

func diff(want, got map[synkfs.Key]string) string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			out = append(out, k.Path()+" missing")
		} else if g != v {
			out = append(out, fmt.Sprintf("%s is %s, server has %s", k.Path(), g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, k.Path()+" not on the server")
		}
	}
	sort.Strings(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return strings.Join(out, "; ")
}

// check runs the end-of-run invariants.
func (c *cluster) check() {
	if c.mode == "postgres" {
		c.storms.Wait()
		c.rep.Faults["db-connections-killed"] += int(c.killed.Load())
		for _, in := range c.insts {
			if in.db != nil {
				c.rep.Faults["db-answers-lost"] += in.db.Cuts()
			}
			// The server logs this when its store's Watch failed and it
			// tries again.
			c.rep.Faults["watch-failed-and-retried"] += strings.Count(in.logs.String(), "cannot hear of other servers' commits")
		}
		if s := c.readStore(); s != nil {
			c.hist.CheckShared(s)
			c.rep.Checks["durability: the database holds exactly the acknowledged commits"]++
		}
	}
	for _, n := range c.nodes {
		// A replica's client logs this when an answer it waited for (an
		// ack, a changes reply) did not come and it reconnects: a lost
		// message on a link that stayed up (the log is a ring: a count at
		// least).
		if k := strings.Count(n.logs.String(), "no answer from the server"); k > 0 {
			c.rep.Faults["client-answer-timeouts"] += k
		}
	}
	for _, v := range c.hist.Violations() {
		c.failf("%s", v)
	}
	c.rep.Batches, c.rep.Records, c.rep.MetaOnly = c.hist.Batches, c.hist.Records, c.hist.MetaOnly
	if c.hist.Unknown > 0 {
		c.rep.Faults["commit-failed"] += c.hist.Unknown
		c.rep.Faults["commit-failed-but-landed"] += c.hist.UnknownLanded
	}
	c.rep.Checks["exactly once: batch ids per client strictly increase"] += c.hist.Batches + c.hist.MetaOnly
	c.rep.Checks["exactly once: no put repeats the body a record holds"] += c.hist.Records
	c.rep.Checks["versions strictly increase"] += c.hist.Batches
	c.rep.Checks["no resurrection after an acknowledged delete"] += c.hist.Records

	_, _, final, err := c.serverState()
	if err == nil && c.mode != "postgres" {
		c.hist.CheckCarried(final)
		c.rep.Checks["durability: records live at an in-memory restart are back or superseded"]++
		for _, v := range c.hist.Violations() {
			if !slices.Contains(c.rep.Failures, v) {
				c.failf("%s", v)
			}
		}
	}

	// Nothing lost: every value a user wrote is on the server, in a
	// conflict or recovery copy, or was overwritten by that same user.
	copies := map[string]bool{}
	for _, n := range c.nodes {
		cc, rf := n.copyValues(copies)
		c.rep.ConflictCopies += cc
		c.rep.RecoveryFiles += rf
		st, err := n.status()
		if err == nil && st.Quarantined > 0 {
			c.failf("%s: %d changes quarantined (the server refused records it should take)", n.name, st.Quarantined)
		}
		if err == nil && st.Bad > 0 {
			c.failf("%s: %d bad entries at the end", n.name, st.Bad)
		}
	}
	c.valMu.Lock()
	defer c.valMu.Unlock()
	for v, w := range c.vals {
		c.rep.Written++
		switch {
		case c.hist.HasValue(v):
			c.rep.OnServer++
		case copies[v]:
			c.rep.InCopies++
		case w.superseded:
			c.rep.Superseded++
		default:
			c.rep.Lost++
			c.failf("lost: %s wrote %s=%q into %s; it is on no server, in no copy, and was not overwritten by its author (the server holds %s)", c.nodes[w.node].name, w.field, v, w.key.Path(), final[w.key])
		}
	}
	c.rep.Checks["nothing lost: every value written is on the server, in a copy, or overwritten by its author"] += c.rep.Written
	for _, n := range c.nodes {
		c.rep.Relay.Links += n.relay.Stats().Links
		c.rep.Relay.Cuts += n.relay.Stats().Cuts
		c.rep.Relay.Refused += n.relay.Stats().Refused
		c.rep.Relay.Duplicated += n.relay.Stats().Duplicated
		c.rep.Relay.Dropped += n.relay.Stats().Dropped
	}
}

// sampleCursors checks that no in-process replica's cursor moves back
// within an epoch, across crashes included.
func (c *cluster) sampleCursors() {
	for _, n := range c.nodes {
		if !n.running || n.proc {
			continue
		}
		e, v := n.r.Cursor()
		if e == n.cursorEpoch && v < n.cursorVersion {
			c.failf("%s: cursor went back from %d to %d in epoch %s", n.name, n.cursorVersion, v, e)
		}
		n.cursorEpoch, n.cursorVersion = e, v
		c.rep.Checks["replica cursors never move back"]++
	}
}

// readRecords reads the records of a synced folder: <type>/<id>.json files,
// without conflict copies and the state folder, as canonical JSON.
func readRecords(dir string) (map[synkfs.Key]string, error) {
	out := map[synkfs.Key]string{}
	types, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, t := range types {
		if !t.IsDir() || strings.HasPrefix(t.Name(), ".") {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, t.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			rel := t.Name() + "/" + f.Name()
			if f.IsDir() || !strings.HasSuffix(f.Name(), fsstore.Ext) || strings.HasPrefix(f.Name(), ".") || isCopy(rel) {
				continue
			}
			k, err := fsstore.PathKey(rel)
			if err != nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, t.Name(), f.Name()))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return nil, err
			}
			out[k] = canonical(data)
		}
	}
	return out, nil
}

// logRing keeps the last lines a replica logged, for a failure report.
type logRing struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRing) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		l.lines = append(l.lines, string(line))
	}
	if len(l.lines) > 4000 {
		l.lines = l.lines[len(l.lines)-2000:]
	}
	return len(p), nil
}

func (l *logRing) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

var _ io.Writer = (*logRing)(nil)

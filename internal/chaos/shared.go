package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/pgstore"
	"github.com/synkfs/synkfs/server"
)

// The "postgres" server mode: Config.Instances servers, each over its own
// pgstore.Store (its own pool and listener, as separate `synkfs serve
// --postgres` processes have) on one database, on loopback ports of
// their own. Each replica's relay sends every new link to a live instance
// chosen at random, like a load balancer; the instance faults stop or
// crash one instance (its clients reconnect elsewhere; it comes back
// later on a new port), kill the database links of one, or kill a
// LISTEN connection so that its Watch must reconnect.

// notifyKey is the record of the notify check (its ID followed by a
// number), outside the key space of user operations.
var notifyKey = synkfs.Key{Type: "note", ID: "notify"}

// instance is one server of the postgres mode.
type instance struct {
	i         int
	app       string // application_name of its pool's connections
	store     *pgstore.Store
	srv       *server.Server
	hs        *http.Server
	addr      string
	live      bool
	restartAt int      // step to restart it; 0 none
	logs      *logRing // its server's warnings and errors, for a failure report
	db        *dbRelay // its link to the database; nil when not on loopback TCP
	wrapped   *sharedStore
}

// pgFaultKinds are the faults of the postgres mode, with weights: the
// replica and link faults of faultKinds, and faults of instances and of
// their database links in place of the single server's.
var pgFaultKinds = faultTable{
	{"link-cut", 6},
	{"offline", 4},
	{"half-open", 3},
	{"drop-incoming", 2},
	{"duplicate-messages", 3},
	{"slow-replica", 2},
	{"disk-full", 2},
	{"disk-eio", 2},
	{"replica-crash", 4},
	{"replica-kill-9", 3},
	{"instance-stop", 3},
	{"instance-crash", 3},
	{"db-link-kill", 4},
	{"listen-kill", 4},
}

// PostgresFaultKinds returns the kinds of fault a schedule of the
// postgres mode may inject.
func PostgresFaultKinds() []string { return pgFaultKinds.kinds() }

// startInstances opens the admin connection and starts every instance.
func (c *cluster) startInstances() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgxpool.New(ctx, c.cfg.Postgres)
	if err != nil {
		return fmt.Errorf("connect to the database: %w", err)
	}
	c.pgAdmin = admin
	for i := range c.cfg.Instances {
		in := &instance{i: i, app: fmt.Sprintf("synkfs-chaos-i%d", i), logs: &logRing{}}
		c.insts = append(c.insts, in)
		if err := c.startInstance(in); err != nil {
			c.stopInstances()
			return err
		}
	}
	return nil
}

// startInstance opens in's store and serves it on a new loopback port.
func (c *cluster) startInstance(in *instance) error {
	u, err := url.Parse(c.cfg.Postgres)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	q := u.Query()
	q.Set("application_name", in.app)
	if host, port, _ := net.SplitHostPort(u.Host); in.db == nil && port != "" && net.ParseIP(host).IsLoopback() {
		if in.db, err = newDBRelay(u.Host); err != nil {
			return err
		}
	}
	if in.db != nil {
		u.Host = in.db.Addr()
		q.Set("sslmode", "disable") // the relay reads the messages
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pgstore.Open(ctx, u.String(), &pgstore.Options{MaxConns: 4})
	if err != nil {
		return fmt.Errorf("instance %d: %w", in.i, err)
	}
	log := slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("instance", in.i)
	wrapped := c.hist.Wrap(st)
	ws, _ := wrapped.(*sharedStore)
	if ws != nil {
		ws.label = fmt.Sprintf("instance %d", in.i)
	}
	srv := server.New(wrapped, &server.Options{Logger: log,
		PingInterval: 400 * time.Millisecond, PingTimeout: 800 * time.Millisecond, WriteTimeout: 2 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	c.srvMu.Lock()
	in.store, in.srv, in.hs, in.addr, in.live, in.restartAt, in.wrapped = st, srv, hs, ln.Addr().String(), true, 0, ws

	c.srvMu.Unlock()
	c.trace("instance %d serves on %s", in.i, in.addr)
	c.retarget()
	return nil
}

// liveAddrs returns the addresses of the live instances.
func (c *cluster) liveAddrs() []string {
	var out []string
	for _, in := range c.insts {
		if in.live {
			out = append(out, in.addr)
		}
	}
	return out
}

// retarget points every replica's relay at the live instances.
func (c *cluster) retarget() {
	addrs := c.liveAddrs()
	for _, n := range c.nodes {
		n.relay.SetTargets(addrs)
	}
}

// stopInstance stops in. Gracefully: the server shuts down, closing its
// clients' links, and its store waits for the commits in progress. As a
// crash: its clients' links break at once, its database connections are
// killed (a commit in progress fails or rolls back, as when a process
// dies), then it is torn down.
func (c *cluster) stopInstance(in *instance, crash bool) {
	if !in.live {
		return
	}
	c.srvMu.Lock()
	in.live = false
	c.srvMu.Unlock()
	c.retarget()
	if crash {
		for _, n := range c.nodes {
			n.relay.CutTarget(in.addr)
		}
		c.terminate("application_name = $1", in.app)
		_ = in.hs.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = in.srv.Shutdown(ctx)
	_ = in.hs.Close()
	_ = in.store.Close()
	c.trace("instance %d stopped (crash %v)", in.i, crash)
}

// terminate kills the database connections that match where (a
// condition on pg_stat_activity, with args) in the run's database and
// returns how many it killed.
func (c *cluster) terminate(where string, args ...any) int {
	n, err := c.kill(where, args...)
	if err != nil {
		c.failf("kill database connections (%s): %v", where, err)
	}
	return n
}

// kill is terminate for any goroutine: it returns the error.
func (c *cluster) kill(where string, args ...any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	err := c.pgAdmin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND `+where, args...).Scan(&n)
	c.killed.Add(int64(n))
	return n, err
}

// storm kills the database connections that match where (with arg)
// again and again for d, from a goroutine of its own (waited for by
// check). On an instance's pool: commits in progress lose their link,
// before their transaction began, during it, or with COMMIT sent and its
// answer lost.
func (c *cluster) storm(where string, arg any, d time.Duration) {
	c.storms.Add(1)
	go func() {
		defer c.storms.Done()
		for end := time.Now().Add(d); time.Now().Before(end); {
			_, _ = c.kill(where, arg)
			time.Sleep(7 * time.Millisecond)
		}
	}()
}

// listeners returns the process ids of the Watch connections, in order.
func (c *cluster) listeners() []int32 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.pgAdmin.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1 ORDER BY pid`, pgstore.WatchApplicationName)
	if err != nil {
		c.failf("list the LISTEN connections: %v", err)
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		c.failf("list the LISTEN connections: %v", err)
	}
	return pids
}

// instanceFault injects an instance fault of the postgres mode; it
// returns the kind injected (link-cut when the fault cannot apply).
func (c *cluster) instanceFault(kind string, n *node) string {
	var live []*instance
	for _, in := range c.insts {
		if in.live {
			live = append(live, in)
		}
	}
	in := live[c.rng.IntN(len(live))]
	switch kind {
	case "instance-stop", "instance-crash":
		if len(live) < 2 {
			n.relay.Cut() // the others keep serving: one stays up
			return "link-cut"
		}
		c.stopInstance(in, kind == "instance-crash")
		in.restartAt = c.step + 5 + c.rng.IntN(30)
	case "db-link-kill":
		d := time.Duration(50+c.rng.IntN(250)) * time.Millisecond
		// Half of them lose the answer to a request instead. Drawn from a
		// second source, so that the schedules of seeds found before
		// this variant came stay the same.
		alt := rand.New(rand.NewPCG(c.cfg.Seed, uint64(c.step)))
		if in.db != nil && alt.IntN(2) == 0 {
			in.db.Arm(1 + alt.IntN(6))
			return "db-answer-lost"
		}
		c.storm("application_name = $1", in.app, d)
	case "listen-kill":
		// The draw is made whatever the database shows, so that the
		// schedule stays the same.
		x := c.rng.IntN(1 << 20)
		pids := c.listeners()
		if len(pids) == 0 {
			c.rep.Faults["listen-kill-none-up"]++
			break
		}
		pid := pids[x%len(pids)]
		c.terminate("pid = $1", pid)
		c.trace("killed LISTEN connection %d", pid)
	}
	return kind
}

// expireInstances restarts the instances whose time has come (all of
// them when healing). One restart in three (not when healing) comes
// while the LISTEN connections of every instance are being killed for a
// moment: the new instance's Watch may fail to make its first one.
func (c *cluster) expireInstances(all bool) {
	for _, in := range c.insts {
		if in.live || (!all && (in.restartAt == 0 || c.step < in.restartAt)) {
			continue
		}
		if !all && c.rng.IntN(3) == 0 {
			c.rep.Faults["instance-restart-listen-storm"]++
			c.storm("application_name = $1", pgstore.WatchApplicationName, time.Duration(100+c.rng.IntN(200))*time.Millisecond)
		}
		err := c.startInstance(in)
		for try := 1; err != nil && all && try < 5; try++ {
			time.Sleep(100 * time.Millisecond)
			err = c.startInstance(in)
		}
		switch {
		case err != nil && all:
			c.failf("restart instance %d: %v", in.i, err)
		case err != nil:
			// Its link to the database failed while it opened (a lost
			// answer): as a supervisor would, start it again soon.
			c.rep.Faults["instance-start-failed"]++
			c.trace("instance %d failed to start: %v", in.i, err)
			in.restartAt = c.step + 1
		}
	}
}

// stopInstances stops every instance and closes the admin connection.
func (c *cluster) stopInstances() {
	for _, in := range c.insts {
		c.stopInstance(in, false)
	}
	c.storms.Wait()
	for _, in := range c.insts {
		if in.db != nil {
			_ = in.db.Close()
		}
	}
	if c.pgAdmin != nil {
		c.pgAdmin.Close()
		c.pgAdmin = nil
	}
}

// readStore returns the store of a live instance, to read the
// database's state from.
func (c *cluster) readStore() *pgstore.Store {
	c.srvMu.Lock()
	defer c.srvMu.Unlock()
	i := slices.IndexFunc(c.insts, func(in *instance) bool { return in.live })
	if i < 0 {
		return nil
	}
	return c.insts[i].store
}

// checkNotify checks that a change reaches the replicas of every other
// instance over live links, through the instances' Watch (LISTEN/NOTIFY)
// and nothing else: for each instance that replicas are linked to, one
// of them writes a record, and every replica must get it without its
// link being made anew. A replica whose link was made anew meanwhile
// proves nothing either way and is not counted.
func (c *cluster) checkNotify(ctx context.Context) {
	seen := map[string]bool{}
	for _, w := range c.nodes {
		from := w.relay.LinkTargets()
		if len(from) != 1 || seen[from[0]] {
			continue
		}
		seen[from[0]] = true
		c.notifyFrom(ctx, w, from[0], synkfs.Key{Type: notifyKey.Type, ID: fmt.Sprintf("%s%d", notifyKey.ID, len(seen))})
	}
}

// notifyFrom has w, linked to the instance at from, write k, and checks
// that every other replica gets it.
func (c *cluster) notifyFrom(ctx context.Context, w *node, from string, k synkfs.Key) {
	links := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		links[i] = n.relay.Stats().Links
	}
	c.write(w, k, []string{"a"}, 0)
	want, _ := readBody(w.path(k))["a"].(string)
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range c.nodes {
		if n == w {
			continue
		}
		for {
			got := readBody(n.path(k))
			if got != nil && got["a"] == want {
				to := n.relay.LinkTargets()
				if n.relay.Stats().Links == links[n.i] && len(to) == 1 && to[0] != from {
					c.rep.Checks["notify: a change through one instance reaches the replicas of the others over live links"]++
				}
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				if n.relay.Stats().Links == links[n.i] {
					c.failf("notify: %s did not get %s=%q from %s within 15s over its live link", n.name, k.Path(), want, w.name)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// linkedTo names the instances n's links go to now, for failure reports
// ("" outside the postgres mode).
func (c *cluster) linkedTo(n *node) string {
	if c.mode != "postgres" {
		return ""
	}
	var names []string
	for _, t := range n.relay.LinkTargets() {
		name := "a stopped instance at " + t
		for _, in := range c.insts {
			if in.live && in.addr == t && in.wrapped != nil {
				calls, last := in.wrapped.Announced()
				name = fmt.Sprintf("instance %d, whose Watch announced %d versions, the last %d", in.i, calls, last)
			}
		}
		names = append(names, name)
	}
	return fmt.Sprintf(" (linked to %s)", strings.Join(names, ", "))
}

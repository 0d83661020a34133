package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/replica"
)

// node is one replica: a folder, its relay to the server, and either an
// in-process engine over a fault-injecting file layer or a child process.
type node struct {
	c        *cluster
	i        int
	name     string
	dir      string // the folder: the replica's root (a mount's state folder)
	proc     bool
	mount    bool   // a `synkfs mount` process (proc is set too)
	mnt      string // its mountpoint
	strategy replica.Strategy
	relay    *Relay
	logs     *logRing

	running   bool
	until     map[string]int // timed faults: kind -> step they end
	restartAt int            // step to restart a killed node; 0 none

	// in process
	fault  *vfs.Fault
	r      *replica.Replica
	cancel context.CancelFunc
	done   chan error

	// as a process
	cmd      *exec.Cmd
	procDone chan struct{}

	cursorEpoch   string
	cursorVersion uint64
}

var strategies = []replica.Strategy{replica.Merge, replica.KeepBoth, replica.ServerWins, replica.ClientWins}

func (c *cluster) newNode(i int, proc, mount bool) (*node, error) {
	n := &node{c: c, i: i, proc: proc || mount, mount: mount, logs: &logRing{}, until: map[string]int{}}
	n.name = fmt.Sprintf("r%d", i)
	switch {
	case mount:
		n.name = fmt.Sprintf("m%d", i)
	case proc:
		n.name = fmt.Sprintf("p%d", i)
	}
	n.dir = filepath.Join(c.cfg.Dir, n.name)
	n.strategy = strategies[c.rng.IntN(len(strategies))]
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	if mount {
		n.mnt = filepath.Join(c.cfg.Dir, n.name+"-mnt")
		if err := os.MkdirAll(n.mnt, 0o755); err != nil {
			return nil, err
		}
	}
	rl, err := NewRelay(c.addr, c.cfg.Seed*31+uint64(i))
	if err != nil {
		return nil, err
	}
	n.relay = rl
	return n, nil
}

func (n *node) start() error {
	if n.running {
		return nil
	}
	if n.proc {
		return n.startProc()
	}
	n.fault = vfs.NewFault(vfs.OS)
	log := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := replica.Open(n.dir, &replica.Options{
		OnConflict:     n.strategy,
		ConfirmDeletes: true,
		Logger:         log,
		VerifyEvery:    400 * time.Millisecond,
		Host:           n.name,
		Store:          &fsstore.Options{FS: n.fault, Logger: log},
	})
	if err != nil {
		return fmt.Errorf("reopen the folder: %w", err)
	}
	cl := client.New(client.Options{URL: n.relay.URL(), ClientID: r.ClientID(), Logger: log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond,
		PingInterval: 300 * time.Millisecond, PingTimeout: 700 * time.Millisecond}, r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, cl) }()
	n.r, n.cancel, n.done, n.running = r, cancel, done, true
	return nil
}

// kind names what n runs, for traces.
func (n *node) kind() string {
	switch {
	case n.mount:
		return "mount process"
	case n.proc:
		return "process"
	}
	return "in process"
}

func (n *node) startProc() error {
	cfg := n.c.cfg
	args := append(append([]string{}, cfg.Command[1:]...), "sync", "--server", n.relay.URL(),
		"--on-conflict", string(n.strategy), "--confirm-deletes", n.dir)
	if n.mount {
		args = append(append([]string{}, cfg.Command[1:]...), "mount", "--server", n.relay.URL(),
			"--on-conflict", string(n.strategy), "--state", n.dir, n.mnt)
	}
	cmd := exec.Command(cfg.Command[0], args...)
	cmd.Env = append(append(os.Environ(), cfg.Env...), "SYNKFS_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cfg.Command[0], err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.cmd, n.procDone, n.running = cmd, done, true
	if n.mount {
		return n.waitMounted()
	}
	return nil
}

// waitMounted waits (bounded) until n's mountpoint is a mount: the user
// edits through it only then.
func (n *node) waitMounted() error {
	parent, err := os.Stat(filepath.Dir(n.mnt))
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if fi, err := os.Stat(n.mnt); err == nil && devOf(fi) != devOf(parent) {
			return nil
		}
		select {
		case <-n.procDone:
			n.running = false
			return fmt.Errorf("%s: synkfs mount exited before mounting:\n%s", n.name, n.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: not mounted within 15s:\n%s", n.name, n.logs.String())
}

func devOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

// unmountDead detaches the mount of a mount replica whose process is
// gone (killed: its mountpoint answers "transport endpoint is not
// connected" until detached). Nothing to do for other nodes.
func (n *node) unmountDead() {
	if n.mount {
		_ = syscall.Unmount(n.mnt, syscall.MNT_DETACH)
	}
}

// kill stops the node abruptly. In process: the file layer crashes at its
// after-th mutating operation from now (torn: a crashing write keeps half
// its bytes), or right away if the engine stays idle, and nothing is
// written after that; the engine is then abandoned. As a process: SIGKILL.
func (n *node) kill(after int, torn bool) {
	if !n.running {
		return
	}
	n.running = false
	if n.proc {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.procDone
		n.unmountDead()
		return
	}
	n.fault.TornWrites(torn)
	n.fault.CrashAfter(after)
	for deadline := time.Now().Add(150 * time.Millisecond); !n.fault.Crashed() && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	if !n.fault.Crashed() {
		n.fault.CrashAfter(1) // idle: the next write is the crash point
	} else if at := n.fault.CrashedAt(); true {
		n.c.trace("%s crashed at %s (torn %v)", n.name, at, torn)
	}
	if at := n.fault.CrashedAt(); torn && strings.HasPrefix(at, "write ") && strings.Contains(at, "journal") {
		n.c.rep.Faults["torn-journal-tail"]++
	}
	n.abandon()
}

// abandon stops the engine's goroutines and releases the folder without
// letting it write anything more (its file layer has crashed).
func (n *node) abandon() {
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.c.failf("%s: Run did not return within 15s of its context's end", n.name)
	}
	_ = n.r.Close()
}

// stop ends the node at the end of a run.
func (n *node) stop(bool) {
	if !n.running {
		return
	}
	n.running = false
	if n.proc {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.procDone:
		case <-time.After(5 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.procDone
		}
		n.unmountDead()
		return
	}
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(15 * time.Second):
		n.c.failf("%s: Run did not return within 15s of its context's end", n.name)
	}
	_ = n.r.Close()
}

func (n *node) endFault(kind string) {
	switch kind {
	case "offline":
		n.relay.SetDown(false)
	case "half-open":
		n.relay.SetFrozen(false)
	case "drop-incoming":
		n.relay.SetDropIncoming(false)
	case "duplicate-messages":
		n.relay.SetDuplicate(0)
	case "slow-replica":
		n.relay.SetDelay(0)
		if n.fault != nil {
			n.fault.SetLatency(0)
		}
	case "disk-full", "disk-eio":
		if n.fault != nil {
			for _, op := range []vfs.Op{vfs.OpWrite, vfs.OpSync, vfs.OpCreate, vfs.OpRename, ""} {
				n.fault.FailWith(op, nil)
			}
		}
	}
}

func (n *node) kickScan() {
	if n.running && !n.proc {
		go func() { _ = n.r.Scan() }()
	}
}

// nodeStatus is what quiescence looks at.
type nodeStatus struct {
	Epoch                    string
	Version                  uint64
	Staged, Quarantined, Bad int
}

func (n *node) status() (nodeStatus, error) {
	if !n.running {
		return nodeStatus{}, fmt.Errorf("not running")
	}
	var st *replica.Status
	if n.proc {
		data, err := os.ReadFile(filepath.Join(n.dir, replica.StateDir, "status.json"))
		if err != nil {
			return nodeStatus{}, err
		}
		st = &replica.Status{}
		if err := json.Unmarshal(data, st); err != nil {
			return nodeStatus{}, fmt.Errorf("status file: %w", err)
		}
	} else {
		st = n.r.Status()
	}
	return nodeStatus{Epoch: st.Epoch, Version: st.LocalVersion, Staged: len(st.Staged),
		Quarantined: len(st.Quarantined), Bad: len(st.Bad)}, nil
}

// copyValues adds to set the string values of the node's conflict copies
// and recovery files, and returns how many of each it read.
func (n *node) copyValues(set map[string]bool) (conflicts, recovery int) {
	recDir := filepath.Join(n.dir, replica.StateDir, "recovery")
	_ = filepath.WalkDir(n.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if err == nil && d.IsDir() && d.Name() == replica.StateDir && p != n.dir {
				if _, err := os.Stat(recDir); err == nil {
					_ = filepath.WalkDir(recDir, func(q string, e fs.DirEntry, err error) error {
						if err == nil && !e.IsDir() && strings.HasSuffix(q, fsstore.Ext) {
							recovery++
							addValues(set, q)
						}
						return nil
					})
				}
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(n.dir, p)
		if isCopy(filepath.ToSlash(rel)) {
			conflicts++
			addValues(set, p)
		}
		return nil
	})
	return conflicts, recovery
}

func addValues(set map[string]bool, p string) {
	data, err := os.ReadFile(p)
	if err != nil {
		return
	}
	for _, v := range stringValues(data) {
		set[v] = true
	}
}

func isCopy(rel string) bool { return replica.IsConflictCopy(rel) }

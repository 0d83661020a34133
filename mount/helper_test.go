package mount_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/mount"
)

// The tests never touch a mount from the process that serves it (go-fuse
// can deadlock then): TestMain re-executes the test binary as the mount
// process when childEnv is set, and the tests drive it over stdin/stdout.
const (
	childEnv      = "SYNKFS_MOUNT_CHILD" // "store" or "loopback"
	childStateEnv = "SYNKFS_MOUNT_STATE"
	childMountEnv = "SYNKFS_MOUNT_POINT"
	childGraceEnv = "SYNKFS_MOUNT_GRACE"
	childSyncEnv  = "SYNKFS_MOUNT_SYNC"
	childSaveEnv  = "SYNKFS_MOUNT_SAVE_DELAY" // Options.SaveDelay; tests default to testSaveDelay
)

// testSaveDelay keeps the tests quick; the default is longer.
const testSaveDelay = 100 * time.Millisecond

func TestMain(m *testing.M) {
	switch kind := os.Getenv(childEnv); kind {
	case "":
	case "replica":
		os.Exit(runReplicaChild())
	default:
		os.Exit(runChild(kind))
	}
	code := m.Run()
	if bench != nil {
		bench.close()
	}
	os.Exit(code)
}

// dump is the child's answer to "dump": the store's content.
type dump struct {
	Version uint64                `json:"version"`
	Records map[string]dumpRecord `json:"records"` // by "type/id"
	Bad     []mount.Problem       `json:"bad"`
	// Puts and Deletes count the mount's calls of the Backend.
	Puts    int `json:"puts"`
	Deletes int `json:"deletes"`
	// Unsaved is the mount's list of files written and not saved yet.
	Unsaved []string `json:"unsaved"`
}

// counting passes every call to the real StoreBackend and counts the
// saves and deletes the mount asks for: one save must be one Put, even
// where the store would absorb a repeated one.
type counting struct {
	*mount.StoreBackend
	mu            sync.Mutex
	puts, deletes int
}

func (c *counting) Put(ctx context.Context, k synkfs.Key, content []byte) error {
	c.mu.Lock()
	c.puts++
	c.mu.Unlock()
	return c.StoreBackend.Put(ctx, k, content)
}

func (c *counting) Delete(ctx context.Context, k synkfs.Key) error {
	c.mu.Lock()
	c.deletes++
	c.mu.Unlock()
	return c.StoreBackend.Delete(ctx, k)
}

type dumpRecord struct {
	Version uint64 `json:"version"`
	Body    string `json:"body"`
}

// runChild serves a mount until stdin says "quit" or closes, or a signal
// comes. It prints "ready" once mounted, then one JSON line per command.
func runChild(kind string) int {
	state, mnt := os.Getenv(childStateEnv), os.Getenv(childMountEnv)
	if kind == "loopback" {
		root, err := fs.NewLoopbackRoot(state)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		srv, err := fs.Mount(mnt, root, &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true}})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("ready")
		waitQuit()
		_ = srv.Unmount()
		return 0
	}
	// Tests skip fsync; benchmarks ask for the real thing.
	st, err := fsstore.Open(state, &fsstore.Options{NoSync: os.Getenv(childSyncEnv) == ""})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer st.Close()
	sb, err := mount.NewStoreBackend(st, 0)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	b := &counting{StoreBackend: sb}
	var grace time.Duration
	if g := os.Getenv(childGraceEnv); g != "" {
		grace, _ = time.ParseDuration(g)
	}
	delay := testSaveDelay
	if d := os.Getenv(childSaveEnv); d != "" {
		delay, _ = time.ParseDuration(d)
	}
	srv, err := mount.Mount(mnt, b, &mount.Options{DeleteGrace: grace, SaveDelay: delay, Matcher: st.Matcher(), Debug: os.Getenv("SYNKFS_MOUNT_DEBUG") != ""})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer srv.Unmount()
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	enc := json.NewEncoder(os.Stdout)
	for {
		var line string
		var ok bool
		select {
		case <-sig:
			return 0
		case line, ok = <-lines:
		}
		if !ok || line == "quit" {
			return 0
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "dump", "dumpnow":
			// dump first waits (up to 5s) for the saves the mount
			// holds: a test's writes are saved once they are quiet.
			for end := time.Now().Add(5 * time.Second); cmd == "dump" && len(srv.Unsaved()) > 0 && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			d := dump{Version: st.Version(), Records: map[string]dumpRecord{}, Unsaved: srv.Unsaved()}
			recs, err := st.Scan(synkfs.Key{}, 0)
			if err != nil {
				// A bad entry makes Scan fail; list record by record.
				recs = nil
				for _, t := range mustTypes(sb) {
					ents, _ := b.List(t)
					for _, e := range ents {
						if r, err := st.Get(synkfs.Key{Type: t, ID: e.ID}); err == nil {
							recs = append(recs, r)
						}
					}
				}
			}
			for _, r := range recs {
				d.Records[r.Key.Path()] = dumpRecord{Version: r.Version, Body: string(r.Body)}
			}
			d.Bad, _ = b.BadEntries()
			b.mu.Lock()
			d.Puts, d.Deletes = b.puts, b.deletes
			b.mu.Unlock()
			_ = enc.Encode(d)
		case "put", "delete":
			var r synkfs.Record
			if err := json.Unmarshal([]byte(arg), &r); err != nil {
				_ = enc.Encode(err.Error())
				continue
			}
			batch := synkfs.Batch{}
			if cmd == "put" {
				batch.Puts = []synkfs.Record{{Key: r.Key, Body: r.Body}}
			} else {
				batch.Deletes = []synkfs.Tombstone{{Key: r.Key}}
			}
			if err := b.ApplyRemote(context.Background(), batch); err != nil {
				_ = enc.Encode(err.Error())
				continue
			}
			_ = enc.Encode("ok")
		default:
			_ = enc.Encode("unknown command")
		}
	}
}

func mustTypes(b *mount.StoreBackend) []string {
	t, _ := b.Types()
	return t
}

func waitQuit() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-sig:
	case <-done:
	}
}

// child is a mount served by another process.
type child struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	state string
	mnt   string
}

// needFUSE skips where FUSE cannot be had, failing instead under CI.
func needFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE is needed for this test (dev/fuse: %v, euid %d)", err, os.Geteuid())
		}
		t.Skip("no /dev/fuse or not root")
	}
}

// startChild mounts state at mnt in a new process and waits until it is
// ready. Cleanup unmounts it.
func startChild(t testing.TB, kind, state, mnt string, env ...string) *child {
	t.Helper()
	needFUSE(t)
	c, err := spawnChild(kind, state, mnt, env...)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// spawnChild starts the mount process and waits for its readiness line.
func spawnChild(kind, state, mnt string, env ...string) (*child, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+kind, childStateEnv+"="+state, childMountEnv+"="+mnt)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReaderSize(outp, 1<<20), state: state, mnt: mnt}
	ready := make(chan string, 1)
	go func() {
		line, _ := c.out.ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("mount process: %q", line)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, errors.New("mount process not ready after 20s")
	}
	return c, nil
}

// stop unmounts and waits for the process; it is idempotent.
func (c *child) stop() error {
	if c.cmd.ProcessState != nil {
		return nil
	}
	_, _ = io.WriteString(c.in, "quit\n")
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		_ = syscall.Unmount(c.mnt, syscall.MNT_DETACH)
		return errors.New("mount process did not stop in time")
	}
	return nil
}

// kill ends the process with SIGKILL, leaving its mount stale.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// call sends one command and decodes the reply into v.
func (c *child) call(line string, v any) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
	reply, err := c.out.ReadString('\n')
	if err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	if err := json.Unmarshal([]byte(reply), v); err != nil {
		c.t.Fatalf("%s: reply %q: %v", line, reply, err)
	}
}

// dump returns the store's content once the mount saved what it holds
// (failing if it holds some still after 5s).
func (c *child) dump() dump {
	c.t.Helper()
	var d dump
	c.call("dump", &d)
	if len(d.Unsaved) > 0 {
		c.t.Fatalf("the mount still holds unsaved writes to %v", d.Unsaved)
	}
	return d
}

// dumpNow returns the store's content at once, saved or not.
func (c *child) dumpNow() dump {
	c.t.Helper()
	var d dump
	c.call("dumpnow", &d)
	return d
}

// remote applies a change as if it came from the server: body "" deletes.
func (c *child) remote(typ, id, body string) {
	c.t.Helper()
	cmd := "delete"
	r := map[string]any{"type": typ, "id": id}
	if body != "" {
		cmd = "put"
		var fields map[string]any
		if err := json.Unmarshal([]byte(body), &fields); err != nil {
			c.t.Fatal(err)
		}
		for k, v := range fields {
			r[k] = v
		}
	}
	data, _ := json.Marshal(r)
	var reply string
	c.call(cmd+" "+string(data), &reply)
	if reply != "ok" {
		c.t.Fatalf("remote %s %s/%s: %s", cmd, typ, id, reply)
	}
}

// newMount starts a StoreBackend mount over a fresh state folder.
func newMount(t testing.TB, env ...string) *child {
	t.Helper()
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return startChild(t, "store", state, mnt, env...)
}

package mount_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/mount"
	"github.com/synkfs/synkfs/replica"
	"github.com/synkfs/synkfs/server"
)

const childServerEnv = "SYNKFS_MOUNT_SERVER"

// mountReplica is how a synced mount is wired: the replica owns the state
// folder and syncs it; the mount saves into the folder through
// mount.NewEngineBackend and hears of remote changes through OnEvent.
func mountReplica(ctx context.Context, state, mnt, url string) (stop func(), err error) {
	var b *mount.StoreBackend
	r, err := replica.Open(state, &replica.Options{
		OnEvent:     func(ev replica.Event) { b.ReplicaEvent(ev) },
		VerifyEvery: time.Second,
	})
	if err != nil {
		return nil, err
	}
	b, err = mount.NewEngineBackend(r.Store(), mount.ReplicaEngine(r), 0)
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	srv, err := mount.Mount(mnt, b, &mount.Options{Matcher: r.Store().Matcher()})
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	cl := client.New(client.Options{URL: url, ClientID: r.ClientID(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, r)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, cl)
	}()
	return func() {
		_ = srv.Unmount()
		cancel()
		<-done
		_ = r.Close()
	}, nil
}

// runReplicaChild serves a synced mount until a signal or stdin closes.
func runReplicaChild() int {
	stop, err := mountReplica(context.Background(), os.Getenv(childStateEnv), os.Getenv(childMountEnv), os.Getenv(childServerEnv))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer stop()
	fmt.Println("ready")
	waitQuit()
	return 0
}

// A mount on one side and a synced folder on the other: edits flow both
// ways, and edits made through the mount while the server is away
// survive kill -9 of the mount process.
func TestSyncedMountEndToEnd(t *testing.T) {
	needFUSE(t)
	srv := server.New(memstore.New(), nil)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/"

	// Bob: a plain synced folder, in this process.
	bob := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	bobStop, err := runFolder(ctx, bob, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); bobStop() })

	// Alice: a mount, in another process.
	dir := t.TempDir()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	mustOK(t, "mkdir", os.MkdirAll(mnt, 0o755))
	alice := startChild(t, "replica", state, mnt, childServerEnv+"="+url)

	// Mount -> folder.
	mustOK(t, "mkdir", syscall.Mkdir(filepath.Join(mnt, "notes"), 0o755))
	save(t, filepath.Join(mnt, "notes", "a.json"), `{"from": "alice"}`)
	eventually(t, "alice's save in bob's folder", func() bool { return canonical(filepath.Join(bob, "notes", "a.json")) == `{"from":"alice"}` })

	// Folder -> mount, at once although the kernel caches the file.
	if got := readFile(t, filepath.Join(mnt, "notes", "a.json")); !strings.Contains(got, "alice") {
		t.Fatalf("mount reads %q", got)
	}
	writeSettled(t, filepath.Join(bob, "notes", "a.json"), `{"from": "bob"}`)
	writeSettled(t, filepath.Join(bob, "notes", "b.json"), `{"new": "from bob"}`)
	eventually(t, "bob's edit in the mount", func() bool { return canonical(filepath.Join(mnt, "notes", "a.json")) == `{"from":"bob"}` })
	eventually(t, "bob's new record in the mount", func() bool { return canonical(filepath.Join(mnt, "notes", "b.json")) == `{"new":"from bob"}` })

	// A delete through the mount.
	mustOK(t, "unlink", syscall.Unlink(filepath.Join(mnt, "notes", "b.json")))
	eventually(t, "the delete in bob's folder", func() bool {
		_, err := os.Stat(filepath.Join(bob, "notes", "b.json"))
		return os.IsNotExist(err)
	})

	// Offline: alice's mount points at a dead server, saves, and is killed.
	alice.stop()
	dead := httptest.NewServer(nil)
	deadURL := "ws" + strings.TrimPrefix(dead.URL, "http") + "/"
	dead.Close()
	alice = startChild(t, "replica", state, mnt, childServerEnv+"="+deadURL)
	save(t, filepath.Join(mnt, "notes", "offline.json"), `{"written": "offline"}`)
	saveSynced(t, filepath.Join(mnt, "notes", "fsynced.json"), `{"written": "offline", "fsync": true}`)
	settle(t, mnt)
	alice.kill()
	// Back online: the staged save goes out.
	alice = startChild(t, "replica", state, mnt, childServerEnv+"="+url)
	eventually(t, "the offline save in bob's folder", func() bool {
		return canonical(filepath.Join(bob, "notes", "offline.json")) == `{"written":"offline"}`
	})
	eventually(t, "the fsync'ed offline save in bob's folder", func() bool {
		return canonical(filepath.Join(bob, "notes", "fsynced.json")) == `{"fsync":true,"written":"offline"}`
	})
}

// runFolder keeps dir in sync with the server at url, in this process.
func runFolder(ctx context.Context, dir, url string) (func(), error) {
	r, err := replica.Open(dir, &replica.Options{VerifyEvery: time.Second})
	if err != nil {
		return nil, err
	}
	cl := client.New(client.Options{URL: url, ClientID: r.ClientID(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, r)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, cl)
	}()
	return func() {
		cancel()
		<-done
		_ = r.Close()
	}, nil
}

// writeSettled writes a file in a synced folder the way an editor does.
func writeSettled(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	mustOK(t, "write", os.WriteFile(tmp, []byte(body), 0o644))
	mustOK(t, "rename", os.Rename(tmp, path))
}

// canonical returns the canonical form of the JSON file at path, "" if it
// cannot be read or parsed.
func canonical(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	c, err := merge.Canonical(data)
	if err != nil {
		return ""
	}
	return string(c)
}

// eventually waits up to 10s for cond: sync takes a round trip or two.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

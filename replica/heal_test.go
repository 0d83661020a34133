package replica

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/internal/vfs"
)

// TestDiskFullWhileApplyingRemote: the disk fills up while a replica
// writes the server's changes, after the batch is in its journal but
// before its files are. While the disk stays full the replica says so in
// its status; the user keeps editing. Once space is back the replica
// recovers by itself: the interrupted batch's files are finished, the edit
// made meanwhile is staged and pushed, and both sides converge with
// nothing lost.
func TestDiskFullWhileApplyingRemote(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	f := vfs.NewFault(vfs.OS)
	b := newSide(t, srv.url, &Options{Store: &fsstore.Options{FS: f}})
	a.write("n/1.json", `{"v":"a1"}`)
	a.write("n/2.json", `{"v":"a2"}`)
	a.sync()
	b.sync()

	a.write("n/1.json", `{"v":"a1 again"}`)
	a.write("n/3.json", `{"v":"a3"}`)
	a.sync()
	// The journal never renames: the batch is journaled, its files fail.
	f.FailWith(vfs.OpRename, syscall.ENOSPC)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.r.SyncOnce(ctx, b.c); err == nil {
		t.Fatal("sync onto a full disk succeeded")
	}
	b.write("n/2.json", `{"v":"b2, saved while the disk was full"}`)
	if err := b.r.SyncOnce(ctx, b.c); err == nil {
		t.Fatal("sync onto a full disk succeeded")
	}
	st := b.r.Status()
	if !strings.HasPrefix(st.Disk, "disk full: free space") || !strings.Contains(st.Disk, b.dir) {
		t.Fatalf("status while the disk is full: Disk = %q", st.Disk)
	}

	f.FailWith(vfs.OpRename, nil)
	b.sync()
	a.sync()
	if got := b.r.Status().Disk; got != "" {
		t.Fatalf("status after recovery: Disk = %q", got)
	}
	for _, s := range []*side{a, b} {
		if got := s.read("n/1.json"); got != canon(t, `{"v":"a1 again"}`) {
			t.Fatalf("%s: n/1 = %q", s.dir, got)
		}
		if got := s.read("n/2.json"); got != canon(t, `{"v":"b2, saved while the disk was full"}`) {
			t.Fatalf("%s: n/2 = %q: the edit made while the disk was full was lost", s.dir, got)
		}
		if got := s.read("n/3.json"); got != canon(t, `{"v":"a3"}`) {
			t.Fatalf("%s: n/3 = %q", s.dir, got)
		}
		if n := s.r.Pending(); n != 0 {
			t.Fatalf("%s: %d staged after sync", s.dir, n)
		}
	}
	sameRecords(t, a, b)
}

// TestDiskFullWhileRunning: the same with Run: the replica notices the
// broken store, retries with backoff, and once the disk takes writes
// again it recovers and wakes its client, which would otherwise wait out
// its reconnection backoff (a minute here) after the failed apply.
func TestDiskFullWhileRunning(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	f := vfs.NewFault(vfs.OS)
	b := newSide(t, srv.url, &Options{Store: &fsstore.Options{FS: f}, Debounce: 5 * time.Millisecond})
	b.c = client.New(client.Options{URL: b.url, ClientID: b.r.ClientID(), MinBackoff: time.Minute, MaxBackoff: time.Minute}, b.r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.r.Run(ctx, b.c) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "b connected", func() bool { return b.c.State().Connected })

	f.FailWith(vfs.OpRename, syscall.ENOSPC)
	a.write("n/1.json", `{"v":"a1"}`)
	a.sync()
	waitFor(t, "b to report the full disk", func() bool { return strings.HasPrefix(b.r.Status().Disk, "disk full") })
	b.write("n/2.json", `{"v":"b2, saved while the disk was full"}`)
	time.Sleep(50 * time.Millisecond) // the watcher sees it; staging fails
	f.FailWith(vfs.OpRename, nil)
	waitFor(t, "b to recover and sync", func() bool {
		return b.r.Status().Disk == "" && b.r.Pending() == 0 && b.read("n/1.json") == canon(t, `{"v":"a1"}`) &&
			b.c.State().Connected
	})
	a.sync()
	if got := a.read("n/2.json"); got != canon(t, `{"v":"b2, saved while the disk was full"}`) {
		t.Fatalf("a: n/2 = %q: the edit made while the disk was full did not arrive", got)
	}
}

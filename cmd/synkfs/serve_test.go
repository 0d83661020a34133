package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/client/memreplica"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/wire"
)

// serveProc is a `synkfs serve` child process (the test binary acting as
// synkfs) and the address it listens on.
type serveProc struct {
	cmd  *exec.Cmd
	addr string
}

// startServe starts `synkfs serve args...` (on a free loopback port
// unless args give --listen) and waits (at most 10 s) until it is ready.
// The test kills it at the latest when it ends.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	cmd, stderr := startChild(t, append([]string{"serve", "--listen", "127.0.0.1:0", "--addr-file", addrFile}, args...)...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return &serveProc{cmd: cmd, addr: strings.TrimSpace(string(b))}
		}
		if time.Now().After(deadline) {
			t.Fatalf("synkfs serve not ready within 10s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill9 kills the server with SIGKILL and waits for it to be gone.
func (p *serveProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL on Unix
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// dialWire opens an extended-protocol link to the server as client id and
// returns it with the welcome.
func dialWire(t *testing.T, ctx context.Context, addr, id, epoch string, version uint64) (*wire.Conn, *wire.Welcome) {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	c := wire.NewConn(ws, nil)
	if err := c.Write(ctx, &wire.Hello{Protocol: 1, Client: id, Epoch: epoch, Version: version, Features: []string{wire.FeatureAck, wire.FeatureConflict}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := m.(*wire.Welcome); ok {
			return c, w
		}
	}
}

// readAck reads until an ack, skipping notifies and changes.
func readAck(t *testing.T, ctx context.Context, c *wire.Conn) *wire.Ack {
	t.Helper()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := m.(*wire.Ack); ok {
			return a
		}
	}
}

// TestServeKill9KeepsAcknowledged: batches acknowledged by a `synkfs serve
// --data` process survive its kill -9: records, versions, tombstones, the
// files in the data folder, and the exactly-once batch ids.
func TestServeKill9KeepsAcknowledged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, "--data", data)

	// Acknowledged batches through the client package: creates, updates,
	// deletes.
	r := memreplica.New()
	c := client.New(client.Options{URL: "ws://" + srv.addr + "/", ClientID: "e2e"}, r)
	note := func(id string) synkfs.Key { return synkfs.Key{Type: "note", ID: id} }
	steps := []func(){
		func() { r.Put(note("1"), `{"n":1}`); r.Put(note("2"), `{"n":2}`); r.Put(note("3"), `{"n":3}`) },
		func() { r.Put(note("1"), `{"n":10}`) },
		func() { r.Delete(note("2")) },
		func() { r.Put(note("4/with slash"), `{"n":4}`); r.Delete(note("3")) },
		func() { r.Put(note("5"), `{"big":"`+strings.Repeat("x", 2000)+`"}`) },
	}
	for i, step := range steps {
		step()
		if err := c.SyncOnce(ctx); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if n := r.Pending(); n != 0 {
			t.Fatalf("after sync %d, %d edits not acknowledged", i, n)
		}
	}
	epoch, version := r.Cursor()
	want := map[synkfs.Key]synkfs.Record{}
	for _, rec := range r.Records() {
		want[rec.Key] = rec
	}
	if len(want) != 3 || version == 0 {
		t.Fatalf("replica holds %d records at version %d; want 3 at a version above 0", len(want), version)
	}
	_, w := dialWire(t, ctx, srv.addr, "e2e", epoch, version)
	lastBatch := w.LastBatch
	if lastBatch == 0 || w.Version != version {
		t.Fatalf("welcome before the kill = %+v; want a last batch and version %d", w, version)
	}

	srv.kill9(t)
	srv = startServe(t, "--data", data)

	// Same history: epoch, version, last batch.
	conn, w := dialWire(t, ctx, srv.addr, "e2e", epoch, version)
	if w.Epoch != epoch || w.Version != version || w.LastBatch != lastBatch || w.Resync {
		t.Fatalf("welcome after restart = %+v; want epoch %s, version %d, last batch %d, no resync", w, epoch, version, lastBatch)
	}
	// Exactly once: the last batch resent is a duplicate, applied at the
	// version it was applied at before the kill.
	if err := conn.Write(ctx, &wire.Changes{Version: version, Batch: lastBatch, Update: []synkfs.Record{{Key: note("5"), Version: 0, Body: []byte(`{"again":true}`)}}}); err != nil {
		t.Fatal(err)
	}
	if ack := readAck(t, ctx, conn); !ack.Duplicate || ack.Batch != lastBatch || ack.Version != want[note("5")].Version {
		t.Fatalf("resent batch %d: ack %+v; want a duplicate at version %d", lastBatch, ack, want[note("5")].Version)
	}

	// Every record and tombstone, with its version: the original flow's
	// pull from version 0.
	if err := conn.Write(ctx, &wire.Changes{Version: 0}); err != nil {
		t.Fatal(err)
	}
	var all *wire.Changes
	for all == nil {
		m, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, _ = m.(*wire.Changes)
	}
	if all.Version != version || len(all.Update) != len(want) {
		t.Fatalf("pull after restart: version %d with %d records; want %d with %d", all.Version, len(all.Update), version, len(want))
	}
	for _, got := range all.Update {
		w, ok := want[got.Key]
		if !ok || got.Version != w.Version || !bytes.Equal(got.Body, w.Body) {
			t.Errorf("after restart %s = v%d %s; want v%d %s", got.Key, got.Version, got.Body, w.Version, w.Body)
		}
	}
	dels := map[synkfs.Key]uint64{}
	for _, d := range all.Delete {
		dels[d.Key] = d.Version
	}
	if len(dels) != 2 || dels[note("2")] == 0 || dels[note("3")] == 0 {
		t.Errorf("tombstones after restart = %v; want note/2 and note/3", dels)
	}

	// The data folder is the browsable tree of the records.
	for k, rec := range want {
		path := filepath.Join(data, "note", strings.ReplaceAll(k.ID, "/", "%2F")+".json")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("file of %s: %v", k, err)
			continue
		}
		if c, err := merge.Canonical(b); err != nil || !bytes.Equal(c, rec.Body) {
			t.Errorf("file of %s holds %s; want %s", k, b, rec.Body)
		}
	}
	for _, id := range []string{"2", "3"} {
		if _, err := os.Stat(filepath.Join(data, "note", id+".json")); !os.IsNotExist(err) {
			t.Errorf("deleted note/%s still has a file (%v)", id, err)
		}
	}
}

package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/replica"
	"github.com/synkfs/synkfs/wire"
)

// TestServerRecordTooLongSkipped: a record whose name the folder cannot
// hold (a 256-byte type), sent by a broken or hostile server, is skipped
// and listed in the status; the rest of its batch is applied and the
// cursor moves past it, so the server cannot stall the replica with it.
func TestServerRecordTooLongSkipped(t *testing.T) {
	long := strings.Repeat("t", 256)
	script := func(ctx context.Context, c *wire.Conn) {
		c.Read(ctx) // the pull
		c.Write(ctx, &wire.Changes{Version: 7,
			Update: []synkfs.Record{
				{Key: synkfs.Key{Type: long, ID: "1"}, Version: 6, Body: []byte(`{"a":1}`)},
				{Key: synkfs.Key{Type: "note", ID: "ok"}, Version: 7, Body: []byte(`{"b":2}`)},
			},
			Delete: []synkfs.Tombstone{{Key: synkfs.Key{Type: "note", ID: strings.Repeat("i", 300)}, Version: 5}},
		})
		c.Read(ctx)
	}
	dir := filepath.Join(t.TempDir(), "synced")
	r, err := replica.Open(dir, &replica.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cl := client.New(client.Options{URL: hostilePeer(t, script), ClientID: r.ClientID(), PingTimeout: 3 * time.Second}, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.SyncOnce(ctx, cl); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "note", "ok.json")); err != nil || !strings.Contains(string(data), `"b"`) {
		t.Fatalf("the holdable record of the batch was not applied: %q %v", data, err)
	}
	if _, v := r.Cursor(); v != 7 {
		t.Fatalf("cursor at %d, want 7 (past the skipped records)", v)
	}
	st := r.Status()
	if len(st.Refused) != 2 {
		t.Fatalf("refused %+v, want the two records", st.Refused)
	}
	for _, rr := range st.Refused {
		if rr.Reason == "" || (rr.Key.Type != long && !rr.Deleted) {
			t.Errorf("refused entry %+v", rr)
		}
	}
}

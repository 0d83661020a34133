package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/fsstore"
	"github.com/synkfs/synkfs/internal/vfs"
	"github.com/synkfs/synkfs/wire"
)

// fullDisk returns a Fault over the real file system that fails syncs,
// renames and creations with ENOSPC while *full is set (writes go through,
// so a journal entry whose fsync fails may still be on disk).
func fullDisk() (*vfs.Fault, *atomic.Bool) {
	f := vfs.NewFault(vfs.OS)
	full := &atomic.Bool{}
	f.FailWhen(func(op vfs.Op, name string) error {
		if full.Load() && (op == vfs.OpSync || op == vfs.OpSyncDir || op == vfs.OpRename || op == vfs.OpCreate) {
			return syscall.ENOSPC
		}
		return nil
	})
	return f, full
}

func health(t *testing.T, h *harness) (int, string) {
	t.Helper()
	resp, err := http.Get(h.hs.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDiskFullRecovers: a server over a write-behind fsstore whose disk
// fills up answers pushes busy, with a sentence saying so, and reports
// the failure on /healthz; once the disk takes writes again it recovers
// the store by itself, the client's resent batch applies exactly once,
// commits resume, and the store reopened from disk holds every
// acknowledged batch.
func TestDiskFullRecovers(t *testing.T) {
	dir := t.TempDir()
	f, full := fullDisk()
	store := openFS(t, dir, &fsstore.Options{FS: f, WriteBehind: true})
	h := start(t, store, nil)
	e := h.ext(t)
	e.hello("c1", store.Epoch(), 0)
	if ack := pushed(e, 0, 1, []synkfs.Record{rec("doc", "1", 0, `{"n":1}`)}, nil); ack.Version != 1 {
		t.Fatalf("batch 1 = %+v", ack)
	}

	full.Store(true)
	batch2 := &wire.Changes{Version: 1, Batch: 2, Update: []synkfs.Record{rec("doc", "2", 0, `{"n":2}`)}}
	for range 2 { // the first fails in the store, the second on a broken one
		e.send(batch2)
		er := next[*wire.Error](e)
		if er.Code != wire.CodeBusy || er.Batch != 2 || !strings.Contains(er.Message, "disk is full") {
			t.Fatalf("push on a full disk = %+v, want busy for batch 2 saying the disk is full", er)
		}
	}
	if code, body := health(t, h); code != http.StatusServiceUnavailable || !strings.Contains(body, "disk is full") {
		t.Fatalf("healthz on a full disk = %d %q", code, body)
	}
	time.Sleep(300 * time.Millisecond) // a few failed recoveries
	if code, _ := health(t, h); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz while the disk is still full = %d", code)
	}

	full.Store(false)
	deadline := time.Now().Add(testTimeout)
	var ack *wire.Ack
	for ack == nil {
		if time.Now().After(deadline) {
			t.Fatal("the server did not recover")
		}
		e.send(batch2)
		m := e.recv()
		for {
			if _, ok := m.(*wire.Notify); !ok {
				break
			}
			m = e.recv() // the recovery tells every client the version
		}
		switch m := m.(type) {
		case *wire.Ack:
			ack = m
			if !ack.Duplicate {
				next[*wire.Changes](e)
			}
		case *wire.Error:
			if m.Code != wire.CodeBusy {
				t.Fatalf("resent batch = %+v", m)
			}
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("resent batch: got %s", m.Type())
		}
	}
	if ack.Batch != 2 || ack.Version != 2 {
		t.Fatalf("resent batch 2 = %+v, want it at version 2", ack)
	}
	// Duplicate when the journal kept the entry whose fsync failed (the
	// batch committed with its batch record); either way it applies once.
	t.Logf("resent batch acknowledged, duplicate=%v", ack.Duplicate)
	if code, body := health(t, h); code != http.StatusOK {
		t.Fatalf("healthz after recovery = %d %q", code, body)
	}
	var got []string
	err := store.Since(0, func(c synkfs.Change) error {
		got = append(got, fmt.Sprintf("%s/%s@%d", c.Key.Type, c.Key.ID, c.Version))
		return nil
	})
	if err != nil || strings.Join(got, " ") != "doc/1@1 doc/2@2" || store.Version() != 2 {
		t.Fatalf("store after recovery: %v at version %d (%v), want doc/1@1 doc/2@2 at 2", got, store.Version(), err)
	}

	// Commits resume, and everything acknowledged survives a reopen.
	e2 := h.ext(t)
	e2.hello("c2", store.Epoch(), 2)
	if ack := pushed(e2, 2, 1, []synkfs.Record{rec("doc", "3", 0, `{"n":3}`)}, []synkfs.Tombstone{{Key: synkfs.Key{Type: "doc", ID: "1"}, Version: 1}}); ack.Version != 3 || ack.Duplicate {
		t.Fatalf("push after recovery = %+v", ack)
	}
	e.conn.WS().CloseNow()
	e2.conn.WS().CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	re := openFS(t, dir, nil)
	if re.Version() != 3 {
		t.Fatalf("reopened at version %d, want 3", re.Version())
	}
	for k, body := range map[string]string{"2": `{"n":2}`, "3": `{"n":3}`} {
		if r, err := re.Get(synkfs.Key{Type: "doc", ID: k}); err != nil || string(r.Body) != body {
			t.Fatalf("doc/%s after reopen = %+v, %v", k, r, err)
		}
	}
	if _, err := re.Get(synkfs.Key{Type: "doc", ID: "1"}); !errors.Is(err, synkfs.ErrNotFound) {
		t.Fatalf("deleted doc/1 after reopen: %v", err)
	}
	if rep, err := re.ScanChanges(); err != nil || len(rep.Edited)+len(rep.Created)+len(rep.Deleted)+len(rep.Bad) != 0 {
		t.Fatalf("files after reopen differ from the index: %+v, %v", rep, err)
	}
}

// TestShutdownStopsHealer: Shutdown returns promptly while the store is
// still broken and the healer is retrying.
func TestShutdownStopsHealer(t *testing.T) {
	f, full := fullDisk()
	store := openFS(t, t.TempDir(), &fsstore.Options{FS: f, WriteBehind: true})
	h := start(t, store, nil)
	e := h.ext(t)
	e.hello("c1", store.Epoch(), 0)
	full.Store(true)
	e.send(&wire.Changes{Batch: 1, Update: []synkfs.Record{rec("doc", "1", 0, `{}`)}})
	if er := next[*wire.Error](e); er.Code != wire.CodeBusy {
		t.Fatalf("push on a full disk = %+v", er)
	}
	if code, _ := health(t, h); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz on a full disk = %d", code)
	}
	e.conn.WS().CloseNow() // so that Shutdown waits for nothing but the healer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a broken store = %v", err)
	}
}

package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/server"
)

// TestLegacyFlow replays the original examples with clients that speak
// only synk's messages: a producer putting a record every 100 ms, a
// watcher that pulls on each notify, then a delete that reaches the
// watcher. It checks what an original client would see, shapes included.
func TestLegacyFlow(t *testing.T) {
	h := start(t, nil, nil)
	producer, watcher := h.raw(t), h.raw(t)

	// Initial sync: both are new.
	for _, c := range []*raw{producer, watcher} {
		c.send(`{"type":"changes","version":0}`)
		m := c.recvType("changes")
		if num(t, m["version"]) != 0 || len(entries(m, "update")) != 0 || len(entries(m, "delete")) != 0 {
			t.Fatalf("initial sync = %v, want version 0 and nothing", m)
		}
		if _, ok := m["update"].([]any); !ok {
			t.Fatalf("update is not an array: %v", m)
		}
		if _, ok := m["delete"].([]any); !ok {
			t.Fatalf("delete is not an array: %v", m)
		}
	}

	const puts = 8
	seen := map[string]uint64{} // watcher's view: id -> version
	watcherVersion := uint64(0)
	pv := uint64(0)
	watch := func(want uint64) {
		t.Helper()
		for watcherVersion < want {
			m := watcher.recv()
			switch m["type"] {
			case "notify":
				if v := num(t, m["version"]); v != watcherVersion {
					watcher.send(fmt.Sprintf(`{"type":"changes","version":%d}`, watcherVersion))
				}
			case "changes":
				for _, u := range entries(m, "update") {
					seen[u["id"].(string)] = num(t, u["version"])
				}
				for _, d := range entries(m, "delete") {
					if _, ok := seen[d["id"].(string)]; !ok {
						t.Errorf("delete of %v the watcher never had", d["id"])
					}
					delete(seen, d["id"].(string))
				}
				watcherVersion = num(t, m["version"])
			}
		}
	}
	for i := 1; i <= puts; i++ {
		producer.send(fmt.Sprintf(`{"type":"changes","version":%d,"update":[{"type":"todo","id":"%d","version":%d,"title":"task %d","done":false}]}`, pv, i, pv, i))
		m := producer.recvType("changes")
		v := num(t, m["version"])
		if v != pv+1 {
			t.Fatalf("put %d: reply version %d, want %d (one version per message)", i, v, pv+1)
		}
		ups := entries(m, "update")
		if len(ups) != 1 || ups[0]["id"] != fmt.Sprint(i) || num(t, ups[0]["version"]) != v || ups[0]["title"] != fmt.Sprintf("task %d", i) || ups[0]["done"] != false {
			t.Fatalf("put %d: reply %v, want the record at version %d with its fields", i, m, v)
		}
		pv = v
		watch(pv)
		time.Sleep(100 * time.Millisecond)
	}
	if len(seen) != puts {
		t.Fatalf("watcher has %d records, want %d", len(seen), puts)
	}
	for id, v := range seen {
		var i uint64
		fmt.Sscan(id, &i)
		if v != i {
			t.Errorf("watcher has %s at version %d, want %d", id, v, i)
		}
	}

	// A delete, with an update in the same message: one version.
	producer.send(fmt.Sprintf(`{"type":"changes","version":%d,"update":[{"type":"todo","id":"1","version":%d,"title":"task 1","done":true}],"delete":[{"type":"todo","id":"2","version":%d}]}`, pv, pv, pv))
	m := producer.recvType("changes")
	if num(t, m["version"]) != pv+1 {
		t.Fatalf("update+delete: version %d, want %d", num(t, m["version"]), pv+1)
	}
	dels := entries(m, "delete")
	if len(dels) != 1 || dels[0]["id"] != "2" || num(t, dels[0]["version"]) != pv+1 || len(entries(m, "update")) != 1 {
		t.Fatalf("update+delete reply = %v", m)
	}
	pv++
	watch(pv)
	if _, ok := seen["2"]; ok || len(seen) != puts-1 || seen["1"] != pv {
		t.Fatalf("watcher after delete: %v", seen)
	}

	// A latecomer at version 0 gets every live record (and the tombstone).
	late := h.raw(t)
	late.send(`{"type":"changes","version":0}`)
	m = late.recvType("changes")
	if num(t, m["version"]) != pv || len(entries(m, "update")) != puts-1 || len(entries(m, "delete")) != 1 {
		t.Fatalf("latecomer got %v", m)
	}
}

// TestLegacyResetServer: a legacy client holding a version above the
// server's (the server was reset) gets every live record and the current
// version instead of stalling.
func TestLegacyResetServer(t *testing.T) {
	h := start(t, nil, nil)
	ctx := context.Background()
	if err := h.store.Apply(ctx, synkfs.Batch{Version: 1, Puts: []synkfs.Record{rec("a", "1", 1, `{"x":1}`), rec("a", "2", 1, `{}`)}}); err != nil {
		t.Fatal(err)
	}
	c := h.raw(t)
	c.send(`{"type":"changes","version":500}`)
	m := c.recvType("changes")
	if num(t, m["version"]) != 1 || len(entries(m, "update")) != 2 {
		t.Fatalf("reset server reply = %v", m)
	}
}

// TestStrict: a legacy write whose base is older than the record is
// applied last writer wins by default, and dropped with Strict.
func TestStrict(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprint("strict=", strict), func(t *testing.T) {
			h := start(t, nil, &server.Options{Strict: strict})
			a, b := h.raw(t), h.raw(t)
			a.send(`{"type":"changes","version":0,"update":[{"type":"n","id":"1","version":0,"by":"a"}]}`)
			a.recvType("changes")
			// b never pulled: its base is 0, the record is at 1.
			b.send(`{"type":"changes","version":0,"update":[{"type":"n","id":"1","version":0,"by":"b"},{"type":"n","id":"2","version":0,"by":"b"}]}`)
			m := b.recvType("changes")
			r, err := h.store.Get(synkfs.Key{Type: "n", ID: "1"})
			if err != nil {
				t.Fatal(err)
			}
			want := `{"by":"b"}`
			if strict {
				want = `{"by":"a"}`
			}
			if string(r.Body) != want {
				t.Errorf("record body %s, want %s", r.Body, want)
			}
			// The new record applies either way, at one version.
			if _, err := h.store.Get(synkfs.Key{Type: "n", ID: "2"}); err != nil {
				t.Errorf("fresh record not applied: %v", err)
			}
			if num(t, m["version"]) != 2 {
				t.Errorf("reply version %d, want 2", num(t, m["version"]))
			}
		})
	}
}

// TestLegacyGarbage: a legacy client's bad messages get no reply (an
// original client would throw on an error message), and the tenth in a
// row closes it with 1008. Another client is not disturbed.
func TestLegacyGarbage(t *testing.T) {
	h := start(t, nil, nil)
	other := h.raw(t)
	other.send(`{"type":"changes","version":0}`)
	other.recvType("changes")

	bad := h.raw(t)
	garbage := []string{`nope`, `[]`, `{"type":"changes"}`, `{"type":"changes","version":0,"update":null}`,
		`{"type":"changes","version":-1}`, `{"type":"who"}`, `{"type":"changes","version":0,"update":[{"id":"x","version":0}]}`,
		strings.Repeat("[", 100), `{"type":"notify","version":1}`, `"str"`}
	for _, g := range garbage {
		bad.send(g)
	}
	if code := closeStatus(t, bad.ws); code != 1008 {
		t.Fatalf("close code %d, want 1008", code)
	}
	w := h.raw(t)
	w.send(`{"type":"changes","version":0,"update":[{"type":"a","id":"1","version":0}]}`)
	w.recvType("changes")
	if m := other.recv(); m["type"] != "notify" || num(t, m["version"]) != 1 {
		t.Fatalf("other client got %v, want notify 1", m)
	}
}

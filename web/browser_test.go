package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/replica"
	"github.com/synkfs/synkfs/server"
)

// chromiumPath returns the browser to drive: Debian's chromium (installed
// by .ci/run), or another Chromium found on PATH. Without one the test is
// skipped, except on CI where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed; apt-get install chromium to run the browser tests")
	return ""
}

// browser starts a headless Chromium with a fresh profile and returns a
// tab's context, bounded by d.
func browser(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 820),
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancel()
	})
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return tctx
}

// hub is a real server on a fixed loopback address that can be stopped
// and started again on it, over the same store (as `synkfs serve --data`).
type hub struct {
	t     *testing.T
	store synkfs.Store
	addr  string
	srv   *server.Server
	hs    *http.Server
}

func startHub(t *testing.T, store synkfs.Store, addr string) *hub {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old listener's port may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	h := &hub{t: t, store: store, addr: ln.Addr().String(), srv: server.New(store, nil)}
	h.hs = &http.Server{Handler: h.srv}
	go func() { _ = h.hs.Serve(ln) }()
	t.Cleanup(h.stop)
	return h
}

func (h *hub) stop() {
	if h.hs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	_ = h.hs.Close()
	h.hs = nil
}

func (h *hub) url() string { return "http://" + h.addr + "/" }

// syncFolder runs the sync engine of `synkfs sync` (default strategy:
// merge) on a new folder until the test ends.
func syncFolder(t *testing.T, addr string) (string, *replica.Replica) {
	t.Helper()
	dir := t.TempDir()
	r, err := replica.Open(dir, &replica.Options{Host: "folder", VerifyEvery: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(client.Options{URL: "ws://" + addr + "/", ClientID: r.ClientID(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}, r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sync run: %v", err)
		}
		_ = r.Close()
	})
	return dir, r
}

// eventually polls cond every 50ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jsTrue polls a JavaScript expression in the page until it is true.
func jsTrue(t *testing.T, ctx context.Context, d time.Duration, expr string) {
	t.Helper()
	eventually(t, d, expr, func() error {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("false")
		}
		return nil
	})
}

// js evaluates expr in the page (awaiting a promise) into out.
func js(t *testing.T, ctx context.Context, expr string, out any) {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
}

// fileField reads the record file <dir>/<type>/<id>.json and returns
// its field, or an error when it is missing or different.
func fileField(dir, typ, id, field string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, typ, id+".json"))
	if err != nil {
		return "", err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return "", err
	}
	s, _ := m[field].(string)
	return s, nil
}

func wantField(dir, typ, id, field, want string) func() error {
	return func() error {
		got, err := fileField(dir, typ, id, field)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s/%s %s = %q, want %q", typ, id, field, got, want)
		}
		return nil
	}
}

func writeRecord(t *testing.T, dir, typ, id, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, typ), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, typ, id+".json"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fill puts a record through the page's form, as a person would, and
// waits until the page has saved it (it then clears the form).
func fill(typ, id, body string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SetValue(chromedp.ID("type"), typ),
		chromedp.SetValue(chromedp.ID("id"), id),
		chromedp.SetValue(chromedp.ID("body"), body),
		chromedp.Click(chromedp.ID("save")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#id").value === "" && document.querySelector("#form-error").textContent === ""`, chromedp.WithPollingTimeout(10*time.Second)),
	)
}

const (
	online = `document.querySelector("#status").textContent === "Online"`
	ready  = `document.body.dataset.ready === "true"`
)

func row(key string) string { return fmt.Sprintf(`tr[data-key=%q]`, key) }

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func hasRow(key, text string) string {
	return fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? "").includes(%q)`, row(key), text)
}

// The demo page in a real browser against a real server and a folder
// synced by the engine of `synkfs sync`: records flow both ways, edits
// made while the server is down survive a reload and sync once it is
// back, and a record changed on both sides is settled like `synkfs sync`
// settles it (merged fields; one conflict copy for a clash).
func TestBrowserDemo(t *testing.T) {
	ctx := browser(t, 2*time.Minute)
	store := memstore.New()
	h := startHub(t, store, "127.0.0.1:0")
	addr := h.addr
	dir, folder := syncFolder(t, addr)

	// The page loads and connects.
	do(t, ctx, chromedp.Navigate(h.url()))
	jsTrue(t, ctx, 10*time.Second, ready)
	jsTrue(t, ctx, 10*time.Second, online)

	// Page -> folder.
	do(t, ctx, fill("note", "from-page", `{"text": "typed in the browser"}`))
	eventually(t, 10*time.Second, "record added in the page appears in the folder",
		wantField(dir, "note", "from-page", "text", "typed in the browser"))
	do(t, ctx, fill("task", "buy-milk", `{"title": "Buy milk", "done": false}`))
	eventually(t, 10*time.Second, "a second type", wantField(dir, "task", "buy-milk", "title", "Buy milk"))

	// Folder -> page, within a moment.
	writeRecord(t, dir, "note", "from-folder", `{"text": "saved in an editor"}`)
	jsTrue(t, ctx, 10*time.Second, hasRow("note/from-folder", "saved in an editor"))
	writeRecord(t, dir, "note", "from-page", `{"text": "edited in the folder"}`)
	jsTrue(t, ctx, 10*time.Second, hasRow("note/from-page", "edited in the folder"))

	// Delete in the page -> the file goes.
	writeRecord(t, dir, "note", "doomed", `{"text": "to be deleted"}`)
	jsTrue(t, ctx, 10*time.Second, hasRow("note/doomed", "to be deleted"))
	do(t, ctx, chromedp.Click(chromedp.CSS(row("note/doomed")+" button.danger")))
	eventually(t, 10*time.Second, "deleted in the page, gone from the folder", func() error {
		if _, err := os.Stat(filepath.Join(dir, "note", "doomed.json")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	writeRecord(t, dir, "task", "both", `{"title": "Plan", "owner": "ann"}`)
	jsTrue(t, ctx, 10*time.Second, hasRow("task/both", "Plan"))
	jsTrue(t, ctx, 10*time.Second, `synkReplica.status.staged === 0`)
	jsTrue(t, ctx, 10*time.Second, `document.body.dataset.offlineReady === "true"`)

	// The server goes away.
	h.stop()
	jsTrue(t, ctx, 10*time.Second, `document.querySelector("#status").textContent === "Offline"`)

	// Offline edits in the page: a new record, a field of task/both, the
	// text of note/from-page. The folder changes other fields of
	// task/both, and note/from-page's text differently.
	do(t, ctx,
		fill("note", "offline", `{"text": "written while the server was down"}`),
		fill("task", "both", `{"title": "Plan the trip", "owner": "ann"}`),
		fill("note", "from-page", `{"text": "the page's words"}`),
	)
	jsTrue(t, ctx, 5*time.Second, `synkReplica.status.staged === 3`)
	writeRecord(t, dir, "task", "both", `{"title": "Plan", "owner": "bob", "due": "friday"}`)
	writeRecord(t, dir, "note", "from-page", `{"text": "the folder's words"}`)
	eventually(t, 10*time.Second, "the folder stages its edits", func() error {
		if n := folder.Pending(); n != 2 {
			return fmt.Errorf("%d staged", n)
		}
		return nil
	})

	// A reload (or a closed tab) loses none of them.
	do(t, ctx, chromedp.Reload())
	jsTrue(t, ctx, 10*time.Second, ready)
	jsTrue(t, ctx, 5*time.Second, hasRow("note/offline", "written while the server was down"))
	jsTrue(t, ctx, 5*time.Second, hasRow("task/both", "Plan the trip"))
	jsTrue(t, ctx, 5*time.Second, `synkReplica.status.staged === 3 && !synkReplica.status.online`)
	staged, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("staged")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(staged, "3 changes waiting") {
		t.Fatalf("staged line after reload: %q", staged)
	}

	// The server comes back on the same address: everything syncs.
	h = startHub(t, store, addr)
	jsTrue(t, ctx, 30*time.Second, online+` && synkReplica.status.staged === 0`)
	eventually(t, 15*time.Second, "the offline record reaches the folder",
		wantField(dir, "note", "offline", "text", "written while the server was down"))
	// task/both: fields changed on one side each merge, on both sides.
	eventually(t, 15*time.Second, "merged fields in the folder", func() error {
		for field, want := range map[string]string{"title": "Plan the trip", "owner": "bob", "due": "friday"} {
			if err := wantField(dir, "task", "both", field, want)(); err != nil {
				return err
			}
		}
		return nil
	})
	jsTrue(t, ctx, 15*time.Second, hasRow("task/both", `"due":"friday"`)+" && "+hasRow("task/both", `"owner":"bob"`)+
		" && "+hasRow("task/both", `"title":"Plan the trip"`))
	// note/from-page: one text won everywhere; the other is one conflict
	// copy, in the page or in the folder, whichever pushed second.
	var pageText string
	eventually(t, 15*time.Second, "note/from-page converges", func() error {
		rec, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`synkReplica.get("note", "from-page")`))
		if err != nil {
			return err
		}
		pageText, _ = rec["text"].(string)
		return wantField(dir, "note", "from-page", "text", pageText)()
	})
	if pageText != "the page's words" && pageText != "the folder's words" {
		t.Fatalf("note/from-page text %q", pageText)
	}
	var pageConflicts []map[string]any
	js(t, ctx, `synkReplica.conflicts()`, &pageConflicts)
	copies, _ := filepath.Glob(filepath.Join(dir, "note", "from-page.conflict-*.json"))
	if len(pageConflicts)+len(copies) != 1 {
		t.Fatalf("conflict copies: %d in the page, %v in the folder; want one in all", len(pageConflicts), copies)
	}
	if len(pageConflicts) == 1 {
		ours, _ := pageConflicts[0]["ours"].(map[string]any)
		if pageText != "the folder's words" || ours["text"] != "the page's words" {
			t.Fatalf("page conflict %v with record text %q", pageConflicts[0], pageText)
		}
		jsTrue(t, ctx, 5*time.Second, `document.querySelector('[data-conflict="note/from-page"]') !== null`)
	} else if pageText != "the page's words" {
		t.Fatalf("folder conflict copy %v but the record says %q", copies, pageText)
	}

	// A picture of the page in use, for the docs.
	if os.Getenv("SYNKFS_UPDATE_SCREENSHOT") == "1" {
		do(t, ctx,
			chromedp.Click(chromedp.CSS(row("task/buy-milk")+" button")),
			chromedp.SetValue(chromedp.ID("body"), "{\n  \"title\": \"Buy milk\",\n  \"done\": true\n}"),
			chromedp.Sleep(300*time.Millisecond),
		)
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "browser-demo.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The browser's three-way merge agrees with package merge, which
// `synkfs sync` uses, on random record bodies.
func TestBrowserMergeAgreesWithGo(t *testing.T) {
	ctx := browser(t, time.Minute)
	h := startHub(t, memstore.New(), "127.0.0.1:0")
	do(t, ctx, chromedp.Navigate(h.url()+"synk.js"))
	rng := rand.New(rand.NewPCG(8, 1))
	type tcase struct{ Base, Ours, Theirs json.RawMessage }
	var cases []tcase
	for range 300 {
		base := randObject(rng, 2)
		cases = append(cases, tcase{mustJSON(base), mustJSON(mutate(rng, base, 2)), mustJSON(mutate(rng, base, 2))})
	}
	in := mustJSON(cases)
	var out []struct {
		Merged    json.RawMessage `json:"merged"`
		Conflicts [][]string      `json:"conflicts"`
	}
	js(t, ctx, `import("/synk.js").then(m => `+string(in)+`.map(c => {
		const r = m.merge3(c.Base, c.Ours, c.Theirs);
		return {merged: r.merged, conflicts: r.conflicts.map(x => x.path)};
	}))`, &out)
	if len(out) != len(cases) {
		t.Fatalf("%d results for %d cases", len(out), len(cases))
	}
	for i, c := range cases {
		merged, conflicts, err := merge.Merge(c.Base, c.Ours, c.Theirs)
		if err != nil {
			t.Fatal(err)
		}
		var paths [][]string
		for _, cf := range conflicts {
			paths = append(paths, cf.Path)
		}
		if !merge.Equal(merged, out[i].Merged) || !slices.EqualFunc(paths, out[i].Conflicts, slices.Equal) {
			t.Fatalf("case %d: base %s ours %s theirs %s:\ngo merged %s conflicts %v\njs merged %s conflicts %v",
				i, c.Base, c.Ours, c.Theirs, merged, paths, out[i].Merged, out[i].Conflicts)
		}
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var fieldNames = []string{"a", "b", "c", "Z", "é"}

func randValue(rng *rand.Rand, depth int) any {
	switch rng.IntN(6) {
	case 0:
		return nil
	case 1:
		return rng.IntN(3)
	case 2:
		return []string{"x", "y"}[rng.IntN(2)]
	case 3:
		return []any{rng.IntN(2)}
	default:
		if depth > 0 {
			return randObject(rng, depth-1)
		}
		return true
	}
}

func randObject(rng *rand.Rand, depth int) map[string]any {
	m := map[string]any{}
	for _, k := range fieldNames {
		if rng.IntN(2) == 0 {
			m[k] = randValue(rng, depth)
		}
	}
	return m
}

// mutate returns a copy of m with some fields changed, added or removed.
func mutate(rng *rand.Rand, m map[string]any, depth int) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for _, k := range fieldNames {
		switch rng.IntN(5) {
		case 0:
			delete(out, k)
		case 1:
			out[k] = randValue(rng, depth)
		case 2:
			if sub, ok := out[k].(map[string]any); ok && depth > 0 {
				out[k] = mutate(rng, sub, depth-1)
			}
		}
	}
	return out
}

// A server that comes back with a new history (an in-memory server
// restarted: a new epoch, none of the old records) gets a snapshot walk
// from the page, which keeps its offline edits and sends back what the
// server lost.
func TestBrowserNewEpoch(t *testing.T) {
	ctx := browser(t, time.Minute)
	h := startHub(t, memstore.New(), "127.0.0.1:0")
	addr := h.addr
	do(t, ctx, chromedp.Navigate(h.url()))
	jsTrue(t, ctx, 10*time.Second, ready+" && "+online)
	jsTrue(t, ctx, 10*time.Second, `document.body.dataset.offlineReady === "true"`)
	do(t, ctx, fill("note", "kept", `{"text": "synced before the reset"}`))
	jsTrue(t, ctx, 10*time.Second, `synkReplica.status.staged === 0 && synkReplica.get("note", "kept")?.version > 0`)

	h.stop()
	jsTrue(t, ctx, 10*time.Second, `!synkReplica.status.online`)
	do(t, ctx, fill("note", "offline", `{"text": "written while it was down"}`))
	jsTrue(t, ctx, 5*time.Second, `synkReplica.status.staged === 1`)

	fresh := memstore.New()
	if err := fresh.Apply(context.Background(), synkfs.Batch{Version: 1, Puts: []synkfs.Record{
		{Key: synkfs.Key{Type: "note", ID: "new"}, Version: 1, Body: json.RawMessage(`{"text":"only on the new server"}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	startHub(t, fresh, addr)
	jsTrue(t, ctx, 20*time.Second, online+` && synkReplica.status.staged === 0`)
	jsTrue(t, ctx, 5*time.Second, hasRow("note/new", "only on the new server"))
	jsTrue(t, ctx, 5*time.Second, fmt.Sprintf(`synkReplica.status.epoch === %q`, fresh.Epoch()))
	for id, want := range map[string]string{"kept": "synced before the reset", "offline": "written while it was down"} {
		eventually(t, 5*time.Second, "note/"+id+" on the new server", func() error {
			rec, err := fresh.Get(synkfs.Key{Type: "note", ID: id})
			if err != nil {
				return err
			}
			var m map[string]string
			if err := json.Unmarshal(rec.Body, &m); err != nil {
				return err
			}
			if m["text"] != want {
				return fmt.Errorf("text %q", m["text"])
			}
			return nil
		})
	}
}

// A batch whose link drops as it is sent is applied once: if the server
// got it, the welcome after reconnecting reports it as applied; if not,
// the page resends it under the same id.
func TestBrowserBatchExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		deliver bool // the first send goes out before the link drops
		minSent int  // times the first batch is sent, at least
	}{{"cut after sending", true, 1}, {"lost before the server", false, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := browser(t, time.Minute)
			store := memstore.New()
			h := startHub(t, store, "127.0.0.1:0")
			do(t, ctx, chromedp.Navigate(h.url()))
			jsTrue(t, ctx, 10*time.Second, ready+" && "+online)
			before := store.Version()
			var sent []int
			js(t, ctx, fmt.Sprintf(`(() => {
				const send = WebSocket.prototype.send;
				window.batchesSent = [];
				WebSocket.prototype.send = function (data) {
					const m = JSON.parse(data);
					const first = m.type === "changes" && m.batch && window.batchesSent.length === 0;
					if (m.type === "changes" && m.batch) window.batchesSent.push(m.batch);
					if (!first || %t) send.call(this, data);
					if (first) this.close();
				};
				return [];
			})()`, tc.deliver), &sent)
			do(t, ctx, fill("note", "once", `{"text": "sent, cut, sent again"}`))
			jsTrue(t, ctx, 20*time.Second, online+` && synkReplica.status.staged === 0`)
			var batches []int
			js(t, ctx, `window.batchesSent`, &batches)
			if v := store.Version(); v != before+1 {
				t.Fatalf("server version %d -> %d after one batch (sent as %v)", before, v, batches)
			}
			if _, err := store.Get(synkfs.Key{Type: "note", ID: "once"}); err != nil {
				t.Fatal(err)
			}
			// Sent after the cut too when the server had not committed it.
			if len(batches) < tc.minSent || len(batches) > 2 || batches[0] != batches[len(batches)-1] {
				t.Fatalf("batches sent: %v, want batch %d sent %d or 2 times", batches, batches[0], tc.minSent)
			}
			// The next edit goes under a new id and applies.
			do(t, ctx, fill("note", "twice", `{"text": "the next one"}`))
			jsTrue(t, ctx, 10*time.Second, `synkReplica.status.staged === 0 && synkReplica.get("note", "twice")?.version > 0`)
			js(t, ctx, `window.batchesSent`, &batches)
			if n := len(batches); batches[n-1] <= batches[0] || store.Version() != before+2 {
				t.Fatalf("batches sent: %v, server version %d -> %d", batches, before, store.Version())
			}
		})
	}
}

// Two tabs never run one replica at once: the second waits, telling the
// person why, and takes over when the first tab closes.
func TestBrowserSecondTabWaits(t *testing.T) {
	ctx := browser(t, time.Minute)
	h := startHub(t, memstore.New(), "127.0.0.1:0")
	first, closeFirst := chromedp.NewContext(ctx)
	defer closeFirst()
	do(t, first, chromedp.Navigate(h.url()))
	jsTrue(t, first, 10*time.Second, ready+" && "+online)
	do(t, first, fill("note", "a", `{"text": "from the first tab"}`))

	second, closeSecond := chromedp.NewContext(ctx)
	defer closeSecond()
	do(t, second, chromedp.Navigate(h.url()))
	jsTrue(t, second, 10*time.Second, `document.querySelector("#list").textContent.includes("open in another tab")`)
	time.Sleep(200 * time.Millisecond)
	jsTrue(t, second, time.Second, `document.body.dataset.ready !== "true"`)

	closeFirst()
	jsTrue(t, second, 10*time.Second, ready+" && "+online)
	jsTrue(t, second, 5*time.Second, hasRow("note/a", "from the first tab"))
}

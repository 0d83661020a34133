package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// testTimeout bounds every wait of a test.
const testTimeout = 10 * time.Second

type harness struct {
	t     *testing.T
	store synkfs.Store
	srv   *server.Server
	hs    *httptest.Server
	url   string
}

// start runs a Server over store (a new memstore when nil) on loopback.
func start(t testing.TB, store synkfs.Store, opts *server.Options) *harness {
	t.Helper()
	if store == nil {
		store = memstore.New()
	}
	if opts == nil {
		opts = &server.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv := server.New(store, opts)
	hs := httptest.NewServer(srv)
	h := &harness{store: store, srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return h
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a raw WebSocket to the server.
func (h *harness) dial(t testing.TB) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(ctxT(t), h.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// raw is a legacy client that speaks synk's JSON and checks shapes.
type raw struct {
	t  testing.TB
	ws *websocket.Conn
}

func (h *harness) raw(t testing.TB) *raw { return &raw{t: t, ws: h.dial(t)} }

func (r *raw) send(msg string) {
	r.t.Helper()
	if err := r.ws.Write(ctxT(r.t), websocket.MessageText, []byte(msg)); err != nil {
		r.t.Fatalf("send %s: %v", msg, err)
	}
}

// recv reads one message as a map, failing the test on anything a
// validating synk client would reject.
func (r *raw) recv() map[string]any {
	r.t.Helper()
	typ, data, err := r.ws.Read(ctxT(r.t))
	if err != nil {
		r.t.Fatalf("recv: %v", err)
	}
	if typ != websocket.MessageText {
		r.t.Fatalf("legacy client got a binary frame")
	}
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		r.t.Fatalf("recv: %s is not a JSON object: %v", data, err)
	}
	checkLegacyShape(r.t, m, data)
	return m
}

// checkLegacyShape applies the schema synk's clients validate with.
func checkLegacyShape(t testing.TB, m map[string]any, data []byte) {
	t.Helper()
	typ, _ := m["type"].(string)
	if typ != "changes" && typ != "notify" {
		t.Fatalf("legacy client got type %q: %s", typ, data)
	}
	if _, ok := m["version"].(json.Number); !ok {
		t.Fatalf("version is not a number: %s", data)
	}
	if typ == "notify" {
		return
	}
	for _, f := range []string{"update", "delete"} {
		v, present := m[f]
		if !present {
			continue
		}
		arr, ok := v.([]any)
		if !ok {
			t.Fatalf("%q is %v, not an array: %s", f, v, data)
		}
		for _, e := range arr {
			o, ok := e.(map[string]any)
			if !ok {
				t.Fatalf("%s entry %v is not an object", f, e)
			}
			_, ts := o["type"].(string)
			_, is := o["id"].(string)
			_, vn := o["version"].(json.Number)
			if !ts || !is || !vn {
				t.Fatalf("%s entry lacks type, id or version: %s", f, data)
			}
		}
	}
}

func num(t testing.TB, v any) uint64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v is not a number", v)
	}
	i, err := n.Int64()
	if err != nil || i < 0 {
		t.Fatalf("%v is not a non-negative integer", v)
	}
	return uint64(i)
}

func entries(m map[string]any, field string) []map[string]any {
	arr, _ := m[field].([]any)
	var out []map[string]any
	for _, e := range arr {
		out = append(out, e.(map[string]any))
	}
	return out
}

// recvType reads messages until one of type typ, skipping notifies.
func (r *raw) recvType(typ string) map[string]any {
	r.t.Helper()
	for {
		m := r.recv()
		if m["type"] == typ {
			return m
		}
		if m["type"] != "notify" {
			r.t.Fatalf("got %v while waiting for %s", m, typ)
		}
	}
}

// ext is an extended client over wire.Conn.
type ext struct {
	t    testing.TB
	conn *wire.Conn
}

func (h *harness) ext(t testing.TB) *ext {
	return &ext{t: t, conn: wire.NewConn(h.dial(t), &wire.Limits{MaxMessage: 64 << 20})}
}

func (e *ext) send(m wire.Message) {
	e.t.Helper()
	if err := e.conn.Write(ctxT(e.t), m); err != nil {
		e.t.Fatalf("send %s: %v", m.Type(), err)
	}
}

func (e *ext) recv() wire.Message {
	e.t.Helper()
	m, err := e.conn.Read(ctxT(e.t))
	if err != nil {
		e.t.Fatalf("recv: %v", err)
	}
	return m
}

// next reads until a message of type T, skipping notifies.
func next[T wire.Message](e *ext) T {
	e.t.Helper()
	for {
		m := e.recv()
		if v, ok := m.(T); ok {
			return v
		}
		if _, ok := m.(*wire.Notify); !ok {
			e.t.Fatalf("got %s %+v while waiting for another type", m.Type(), m)
		}
	}
}

var allFeatures = []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot, wire.FeatureZstd}

func (e *ext) hello(id, epoch string, version uint64, features ...string) *wire.Welcome {
	e.t.Helper()
	if features == nil {
		features = allFeatures
	}
	e.send(&wire.Hello{Protocol: 1, Client: id, Epoch: epoch, Version: version, Features: features})
	w := next[*wire.Welcome](e)
	if slicesContain(w.Features, wire.FeatureZstd) {
		e.conn.EnableZstd()
	}
	return w
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// closeStatus waits for the link to end and returns its close code.
func closeStatus(t testing.TB, ws *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx := ctxT(t)
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("link still open")
			}
			return websocket.CloseStatus(err)
		}
	}
}

func rec(typ, id string, v uint64, body string) synkfs.Record {
	return synkfs.Record{Key: synkfs.Key{Type: typ, ID: id}, Version: v, Body: json.RawMessage(body)}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// newLoopback serves h on loopback and returns its ws:// URL.
func newLoopback(t testing.TB, h http.Handler) string {
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

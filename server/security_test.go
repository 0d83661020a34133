package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/internal/syncbuf"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// tokens makes a token file with the given tokens and returns the set and
// each token's secret by name.
func tokens(t *testing.T, specs ...auth.Token) (*auth.Set, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.json")
	secrets := map[string]string{}
	for _, s := range specs {
		secret, err := auth.Add(path, s.Name, s.Role, s.Types, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		secrets[s.Name] = secret
	}
	set, err := auth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return set, secrets
}

// dialAs opens a WebSocket presenting secret in the Authorization header.
func (h *harness) dialAs(t testing.TB, secret string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ws, resp, err := websocket.Dial(ctxT(t), h.url, &websocket.DialOptions{HTTPHeader: auth.Header(secret)})
	if err == nil {
		ws.SetReadLimit(64 << 20)
		t.Cleanup(func() { ws.CloseNow() })
	}
	return ws, resp, err
}

func (h *harness) extAs(t testing.TB, secret string) *ext {
	t.Helper()
	ws, _, err := h.dialAs(t, secret)
	if err != nil {
		t.Fatalf("dial with a token: %v", err)
	}
	return &ext{t: t, conn: wire.NewConn(ws, &wire.Limits{MaxMessage: 64 << 20})}
}

// pushed pushes a batch and returns its ack, taking the changes reply
// that follows it.
func pushed(e *ext, version, batch uint64, update []synkfs.Record, del []synkfs.Tombstone) *wire.Ack {
	e.t.Helper()
	ack := push(e, version, batch, update, del)
	if !ack.Duplicate {
		next[*wire.Changes](e)
	}
	return ack
}

func seed(t *testing.T, st synkfs.Store, recs ...synkfs.Record) {
	t.Helper()
	v := st.Version() + 1
	for i := range recs {
		recs[i].Version = v
	}
	if err := st.Apply(context.Background(), synkfs.Batch{Version: v, Puts: recs}); err != nil {
		t.Fatal(err)
	}
}

// TestAuthentication: no token and a wrong token get a bare 401; a good
// one connects by header or by a browser's subprotocol, which the server
// answers without echoing the secret; no secret ever reaches the logs.
func TestAuthentication(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "laptop", Role: auth.ReadWrite})
	logs := &syncbuf.Buffer{}
	h := start(t, nil, &server.Options{Tokens: set, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	good := secrets["laptop"]
	wrong := good[:len(good)-2] + "AA"

	for name, hdr := range map[string]http.Header{
		"no token":       nil,
		"wrong token":    auth.Header(wrong),
		"basic":          {"Authorization": {"Basic bGFwdG9wOnB3"}},
		"empty bearer":   {"Authorization": {"Bearer "}},
		"hash as secret": auth.Header(strings.TrimPrefix(auth.HashSecret(good), "sha256:")),
	} {
		_, resp, err := websocket.Dial(ctxT(t), h.url, &websocket.DialOptions{HTTPHeader: hdr})
		if err == nil {
			t.Fatalf("%s: connected", name)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %v, want 401", name, err)
		}
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", name)
		}
		body, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(body)) != "synkfs: unauthorized" {
			t.Errorf("%s: 401 body %q says more than it should", name, body)
		}
	}
	// Subprotocol offered: the server picks "synkfs", never the secret.
	ws, resp, err := websocket.Dial(ctxT(t), h.url, &websocket.DialOptions{
		Subprotocols: []string{auth.Subprotocol, auth.SubprotocolBearerPrefix + good},
	})
	if err != nil {
		t.Fatalf("subprotocol token: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != auth.Subprotocol {
		t.Fatalf("selected subprotocol %q, want %q", got, auth.Subprotocol)
	}
	e := &ext{t: t, conn: wire.NewConn(ws, nil)}
	e.hello("browser", "", 0)
	ws.Close(websocket.StatusNormalClosure, "")

	e = h.extAs(t, good)
	e.hello("c", "", 0)
	if ack := push(e, 0, 1, []synkfs.Record{rec("note", "1", 0, `{}`)}, nil); ack.Version != 1 || len(ack.Results) != 0 {
		t.Fatalf("push with a good token: %+v", ack)
	}

	// /metrics asks for a token too; /healthz does not.
	r, err := http.Get(h.hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %s", r.Status)
	}
	req, _ := http.NewRequest("GET", h.hs.URL+"/metrics", nil)
	req.Header = auth.Header(good)
	r, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), `synkfs_errors_total{code="unauthorized"} 5`) {
		t.Errorf("/metrics with a token: %s\n%s", r.Status, b)
	}
	httpGet(t, h.hs.URL+"/healthz")

	out := logs.String()
	for _, s := range []string{good, wrong, strings.TrimPrefix(good, auth.SecretPrefix)} {
		if strings.Contains(out, s) {
			t.Fatalf("a secret is in the logs:\n%s", out)
		}
	}
	if !strings.Contains(out, "invalid token") || !strings.Contains(out, "no token") {
		t.Errorf("refusals not logged:\n%s", out)
	}
}

// TestReadOnlyToken: pulls and snapshots work; every push is refused
// record by record with forbidden, and nothing is written.
func TestReadOnlyToken(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "viewer", Role: auth.ReadOnly})
	h := start(t, nil, &server.Options{Tokens: set})
	seed(t, h.store, rec("note", "1", 0, `{"a":1}`))
	ro := secrets["viewer"]

	e := h.extAs(t, ro)
	e.hello("v", "", 0)
	e.send(&wire.Changes{Version: 0})
	if ch := next[*wire.Changes](e); len(ch.Update) != 1 || ch.Version != 1 {
		t.Fatalf("pull: %+v", ch)
	}
	ack := pushed(e, 1, 1, []synkfs.Record{rec("note", "1", 1, `{"a":2}`), rec("note", "2", 0, `{}`)},
		[]synkfs.Tombstone{{Key: synkfs.Key{Type: "note", ID: "1"}, Version: 1}})
	if len(ack.Results) != 2 {
		t.Fatalf("ack of a read-only push: %+v", ack)
	}
	for _, r := range ack.Results {
		if r.Status != wire.StatusRejected || r.Code != wire.CodeForbidden || !strings.Contains(r.Message, "read-only") {
			t.Errorf("result %+v, want rejected forbidden", r)
		}
	}
	// Without a batch id: an error message says why.
	e.send(&wire.Changes{Version: 1, Update: []synkfs.Record{rec("note", "3", 0, `{}`)}})
	if m := next[*wire.Error](e); m.Code != wire.CodeForbidden {
		t.Fatalf("unacknowledged push: %+v", m)
	}
	// A legacy client with the token: dropped, logged.
	ws, _, err := h.dialAs(t, ro)
	if err != nil {
		t.Fatal(err)
	}
	l := &raw{t: t, ws: ws}
	l.send(`{"type":"changes","version":1,"update":[{"type":"note","id":"9","version":1,"x":1}]}`)
	if m := l.recvType("changes"); num(t, m["version"]) != 1 {
		t.Fatalf("legacy push reply: %v", m)
	}
	if v := h.store.Version(); v != 1 {
		t.Fatalf("read-only pushes moved the store to version %d", v)
	}
	if _, err := h.store.Get(synkfs.Key{Type: "note", ID: "1"}); err != nil {
		t.Fatal("a read-only delete applied")
	}
}

// TestTypeLimitedToken: a token limited to "note" never receives another
// type's record, in pulls, legacy catch-ups, snapshot pages or conflicts,
// cannot write other types, and is not notified of their changes.
func TestTypeLimitedToken(t *testing.T) {
	set, secrets := tokens(t,
		auth.Token{Name: "admin", Role: auth.ReadWrite},
		auth.Token{Name: "notes", Role: auth.ReadWrite, Types: []string{"note", "zz"}},
	)
	h := start(t, nil, &server.Options{Tokens: set, SnapshotPageMax: 3})
	var recs []synkfs.Record
	for _, typ := range []string{"a", "note", "secret", "zz", "zzz"} {
		for i := range 4 {
			recs = append(recs, rec(typ, fmt.Sprint(i), 0, fmt.Sprintf(`{"t":%q}`, typ)))
		}
	}
	seed(t, h.store, recs...)
	allowed := func(k synkfs.Key) bool { return k.Type == "note" || k.Type == "zz" }

	e := h.extAs(t, secrets["notes"])
	e.hello("n", "", 0)
	e.send(&wire.Changes{Version: 0})
	ch := next[*wire.Changes](e)
	if len(ch.Update) != 8 {
		t.Fatalf("pull got %d records, want 8", len(ch.Update))
	}
	for _, r := range ch.Update {
		if !allowed(r.Key) {
			t.Fatalf("pull leaked %s", r.Key)
		}
	}
	// Snapshot walk with small pages.
	var after *synkfs.Key
	var got []synkfs.Key
	for range 20 {
		e.send(&wire.SnapshotRequest{After: after, Limit: 2})
		p := next[*wire.SnapshotPage](e)
		if p.Total != 0 {
			t.Fatalf("a type-limited snapshot page tells the number of all records: %d", p.Total)
		}
		for _, r := range p.Records {
			if !allowed(r.Key) {
				t.Fatalf("snapshot leaked %s", r.Key)
			}
			got = append(got, r.Key)
		}
		if p.Done {
			break
		}
		after = p.Next
	}
	if len(got) != 8 {
		t.Fatalf("snapshot walk got %v, want the 8 note and zz records", got)
	}
	for i := 1; i < len(got); i++ {
		if !got[i-1].Less(got[i]) {
			t.Fatalf("snapshot out of order: %v", got)
		}
	}
	// A request starting inside a forbidden type skips to the next allowed.
	e.send(&wire.SnapshotRequest{After: &synkfs.Key{Type: "secret", ID: "1"}, Limit: 10})
	if p := next[*wire.SnapshotPage](e); len(p.Records) != 3 || p.Records[0].Key != (synkfs.Key{Type: "zz", ID: "0"}) || p.Records[2].Key.Type != "zz" {
		t.Fatalf("snapshot from inside a forbidden type: %+v", p)
	}

	// Writes to another type are refused before any conflict check, so no
	// current record of that type comes back; a note conflict does carry one.
	ack := pushed(e, 1, 1, []synkfs.Record{rec("secret", "1", 0, `{"x":1}`), rec("note", "1", 0, `{"x":1}`)}, nil)
	if len(ack.Results) != 2 {
		t.Fatalf("ack: %+v", ack)
	}
	for _, r := range ack.Results {
		switch r.Key.Type {
		case "secret":
			if r.Status != wire.StatusRejected || r.Code != wire.CodeForbidden || r.Current != nil || r.CurrentVersion != 0 {
				t.Fatalf("write to a forbidden type: %+v", r)
			}
		case "note":
			if r.Status != wire.StatusConflict || r.Current == nil {
				t.Fatalf("note conflict: %+v", r)
			}
		}
	}

	// Notifies: a write to "secret" by another client wakes nobody limited
	// to notes; a write to "note" does.
	admin := h.extAs(t, secrets["admin"])
	admin.hello("a", "", 0)
	pushed(admin, 1, 1, []synkfs.Record{rec("secret", "1", 1, `{"x":2}`)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	m, err := e.conn.Read(ctx)
	cancel()
	if err == nil {
		t.Fatalf("limited client got %s %+v after a write to another type", m.Type(), m)
	}
	e = h.extAs(t, secrets["notes"]) // the timed-out read ended the old link
	e.hello("n", "", 0)
	e.send(&wire.Changes{Version: 1})
	if ch := next[*wire.Changes](e); len(ch.Update) != 0 || len(ch.Delete) != 0 {
		t.Fatalf("pull after a secret write: %+v", ch)
	}
	ack = pushed(admin, 2, 2, []synkfs.Record{rec("note", "7", 0, `{}`)}, []synkfs.Tombstone{{Key: synkfs.Key{Type: "secret", ID: "2"}, Version: 1}})
	if n := next[*wire.Notify](e); n.Version != ack.Version {
		t.Fatalf("notify %d, want %d", n.Version, ack.Version)
	}
	e.send(&wire.Changes{Version: 2})
	if ch := next[*wire.Changes](e); len(ch.Update) != 1 || ch.Update[0].Key.ID != "7" || len(ch.Delete) != 0 {
		t.Fatalf("pull after a mixed write: %+v", ch)
	}

	// A legacy client with the limited token, asking from a version the
	// server cannot catch up, gets a full state of its types only.
	ws, _, err := h.dialAs(t, secrets["notes"])
	if err != nil {
		t.Fatal(err)
	}
	l := &raw{t: t, ws: ws}
	l.send(`{"type":"changes","version":999}`)
	for {
		m := l.recvType("changes")
		for _, u := range entries(m, "update") {
			if k := (synkfs.Key{Type: u["type"].(string), ID: u["id"].(string)}); !allowed(k) {
				t.Fatalf("legacy full state leaked %s", k)
			}
		}
		if num(t, m["version"]) != 0 {
			break
		}
	}
}

// TestClientIDsScopedByToken: a client id claimed under another token has
// a batch record of its own, so it can neither learn nor spoil another
// token's exactly-once state.
func TestClientIDsScopedByToken(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "a", Role: auth.ReadWrite}, auth.Token{Name: "b", Role: auth.ReadWrite})
	h := start(t, nil, &server.Options{Tokens: set})
	a := h.extAs(t, secrets["a"])
	a.hello("replica-1", "", 0)
	push(a, 0, 1_000_000, []synkfs.Record{rec("note", "1", 0, `{}`)}, nil)
	b := h.extAs(t, secrets["b"])
	if w := b.hello("replica-1", "", 0); w.LastBatch != 0 {
		t.Fatalf("token b sees token a's last batch %d", w.LastBatch)
	}
	if ack := push(b, 1, 1, []synkfs.Record{rec("note", "2", 0, `{}`)}, nil); ack.Duplicate {
		t.Fatal("token b's batch was taken as a duplicate of token a's")
	}
	a2 := h.extAs(t, secrets["a"])
	if w := a2.hello("replica-1", "", 0); w.LastBatch != 1_000_000 {
		t.Fatalf("token a's last batch %d, want 1000000", w.LastBatch)
	}
}

// TestFlood: a client over its message rate gets a rate-limit error and
// is closed with 1008; a well-behaved client keeps working throughout.
func TestFlood(t *testing.T) {
	h := start(t, nil, &server.Options{RateLimit: 20, RateBurst: 20})
	good := h.ext(t)
	good.hello("good", "", 0)

	flood := h.ext(t)
	flood.hello("flood", "", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 500 {
			if err := flood.conn.Write(ctxT(t), &wire.Changes{Version: 0, Batch: uint64(i + 1), Update: []synkfs.Record{rec("f", fmt.Sprint(i), 0, `{}`)}}); err != nil {
				return // closed by the server
			}
		}
	}()
	for i := range 5 {
		if ack := pushed(good, 0, uint64(i+1), []synkfs.Record{rec("g", fmt.Sprint(i), 0, `{}`)}, nil); len(ack.Results) != 0 || ack.Version == 0 {
			t.Fatalf("good client during a flood: %+v", ack)
		}
	}
	var rateErr *wire.Error
	var closeErr error
	for {
		m, err := flood.conn.Read(ctxT(t))
		if err != nil {
			closeErr = err
			break
		}
		if e, ok := m.(*wire.Error); ok && e.Code == wire.CodeRateLimit {
			rateErr = e
		}
	}
	<-done
	if rateErr == nil || !strings.Contains(rateErr.Message, "20 messages a second") {
		t.Fatalf("flooder got no clear rate-limit error: %+v", rateErr)
	}
	var ce websocket.CloseError
	if !errors.As(closeErr, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "rate limit exceeded" {
		t.Fatalf("flooder closed with %v, want 1008 rate limit exceeded", closeErr)
	}
	// Nothing past the burst was applied for the flooder.
	n := 0
	h.store.Since(0, func(c synkfs.Change) error {
		if c.Key.Type == "f" {
			n++
		}
		return nil
	})
	if n > 40 {
		t.Fatalf("%d flood batches applied with a burst of 20", n)
	}
	if ack := push(good, 0, 99, []synkfs.Record{rec("g", "last", 0, `{}`)}, nil); ack.Version == 0 {
		t.Fatalf("good client after the flood: %+v", ack)
	}

	// A legacy flooder is closed the same way (it gets no error messages).
	l := h.raw(t)
	for range 100 {
		if err := l.ws.Write(ctxT(t), websocket.MessageText, []byte(`{"type":"changes","version":0}`)); err != nil {
			break
		}
	}
	for {
		_, _, err := l.ws.Read(ctxT(t))
		if err != nil {
			if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation {
				t.Fatalf("legacy flooder closed with %v", err)
			}
			break
		}
	}
}

// TestHandshakeTimeout: a client that sends nothing is closed; one that
// talks at once is not.
func TestHandshakeTimeout(t *testing.T) {
	h := start(t, nil, &server.Options{HandshakeTimeout: 200 * time.Millisecond})
	talker := h.ext(t)
	talker.hello("t", "", 0)
	silent := h.dial(t)
	start := time.Now()
	_, _, err := silent.Read(ctxT(t))
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "no message within") {
		t.Fatalf("silent client: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent client closed after %v", d)
	}
	time.Sleep(100 * time.Millisecond) // well past the timeout for the talker
	if ack := push(talker, 0, 1, []synkfs.Record{rec("a", "1", 0, `{}`)}, nil); ack.Version != 1 {
		t.Fatalf("talker after the timeout: %+v", ack)
	}
}

// TestHostileMessages: very deep nesting and a huge frame from a client
// with a valid token cost the server an error reply or a close, never a
// crash, and the next client is served.
func TestHostileMessages(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "x", Role: auth.ReadWrite})
	h := start(t, nil, &server.Options{Tokens: set, Limits: wire.Limits{MaxMessage: 1 << 20}})
	e := h.extAs(t, secrets["x"])
	e.hello("x", "", 0)
	deep := `{"type":"changes","version":0,"update":[{"type":"a","id":"1","version":0,"x":` +
		strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000) + `}]}`
	if err := e.conn.WS().Write(ctxT(t), websocket.MessageText, []byte(deep)); err != nil {
		t.Fatal(err)
	}
	if m := next[*wire.Error](e); m.Code != wire.CodeTooDeep {
		t.Fatalf("deep message: %+v", m)
	}
	huge := bytes.Repeat([]byte("x"), 3<<20)
	if err := e.conn.WS().Write(ctxT(t), websocket.MessageText, huge); err != nil {
		t.Fatal(err)
	}
	if code := closeStatus(t, e.conn.WS()); code != websocket.StatusMessageTooBig {
		t.Fatalf("huge frame: close %d, want 1009", code)
	}
	e = h.extAs(t, secrets["x"])
	e.hello("x", "", 0)
	if ack := push(e, 0, 1, []synkfs.Record{rec("a", "1", 0, `{}`)}, nil); ack.Version != 1 {
		t.Fatalf("after hostile messages: %+v", ack)
	}
}

// TestOriginsAndConnCap: a browser from an origin not on the allow-list is
// refused; one on it connects; connections beyond MaxConns get 503.
func TestOriginsAndConnCap(t *testing.T) {
	h := start(t, nil, &server.Options{OriginPatterns: []string{"app.example.com"}, MaxConns: 2})
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		ws, resp, err := websocket.Dial(ctxT(t), h.url, &websocket.DialOptions{HTTPHeader: hdr})
		if err == nil {
			t.Cleanup(func() { ws.CloseNow() })
		}
		return ws, resp, err
	}
	if _, resp, err := dial("https://evil.example.net"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v", err)
	}
	a, _, err := dial("https://app.example.com")
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	ea := &ext{t: t, conn: wire.NewConn(a, nil)}
	ea.hello("a", "", 0)
	b, _, err := dial("")
	if err != nil {
		t.Fatalf("second client: %v", err)
	}
	eb := &ext{t: t, conn: wire.NewConn(b, nil)}
	eb.hello("b", "", 0)
	if _, resp, err := dial(""); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third client over a cap of 2: %v", err)
	}
}

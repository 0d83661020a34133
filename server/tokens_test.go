package server_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// closeWait bounds how long a client whose token changed may stay open.
const closeWait = 3 * time.Second

// linkAs is an extended client and its raw socket, to read its close.
type linkAs struct {
	*ext
	ws *websocket.Conn
}

func (h *harness) linkAs(t *testing.T, secret, id string) *linkAs {
	t.Helper()
	ws, resp, err := h.dialAs(t, secret)
	if err != nil {
		t.Fatalf("dial as %s: %v (%v)", id, err, resp)
	}
	l := &linkAs{ext: &ext{t: t, conn: wire.NewConn(ws, &wire.Limits{MaxMessage: 64 << 20})}, ws: ws}
	l.hello(id, "", 0)
	return l
}

// closed waits at most closeWait for the server to close the link and
// returns its close code and reason.
func (l *linkAs) closed() (websocket.StatusCode, string) {
	l.t.Helper()
	ctx := ctxT(l.t)
	start := time.Now()
	for {
		_, _, err := l.ws.Read(ctx)
		if err == nil {
			continue // a notify or reply sent before the close
		}
		if d := time.Since(start); d > closeWait {
			l.t.Fatalf("link closed after %v, want within %v", d, closeWait)
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			l.t.Fatalf("link ended without a close frame: %v", err)
		}
		return ce.Code, ce.Reason
	}
}

// without returns set without the token named name.
func without(t *testing.T, set *auth.Set, name string) *auth.Set {
	t.Helper()
	var keep []auth.Token
	for _, tok := range set.Tokens() {
		if tok.Name != name {
			keep = append(keep, tok)
		}
	}
	out, err := auth.NewSet(keep)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// refused checks that an upgrade presenting secret gets 401.
func (h *harness) refused(t *testing.T, secret string) {
	t.Helper()
	_, resp, err := h.dialAs(t, secret)
	if err == nil {
		t.Fatal("a refused secret connected")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial: %v, want 401", err)
	}
}

// TestSetTokensRevokes: the client of a removed token is closed with 1008
// "token revoked" at once, the client of a token that stays is untouched
// and can still push, and the removed secret is refused from then on.
func TestSetTokensRevokes(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "a", Role: auth.ReadWrite}, auth.Token{Name: "b", Role: auth.ReadWrite})
	h := start(t, nil, &server.Options{Tokens: set})
	la := h.linkAs(t, secrets["a"], "ca")
	lb := h.linkAs(t, secrets["b"], "cb")
	if ack := pushed(lb.ext, 0, 1, []synkfs.Record{rec("note", "1", 0, `{"n":1}`)}, nil); len(ack.Results) != 0 {
		t.Fatalf("push before: %+v", ack)
	}

	h.srv.SetTokens(without(t, set, "a"))
	if code, reason := la.closed(); code != websocket.StatusPolicyViolation || reason != "token revoked" {
		t.Fatalf("a's link closed with %v %q, want 1008 token revoked", code, reason)
	}
	// b carries on: a push on the same link is applied.
	if ack := pushed(lb.ext, 1, 2, []synkfs.Record{rec("note", "2", 0, `{"n":2}`)}, nil); len(ack.Results) != 0 || ack.Version != 2 {
		t.Fatalf("b's push after a was revoked: %+v", ack)
	}
	h.refused(t, secrets["a"])
	h.linkAs(t, secrets["b"], "cb2")
	if v := h.store.Version(); v != 2 {
		t.Fatalf("store at version %d, want 2", v)
	}
}

// TestSetTokensRoleChange: a read-write token made read-only closes its
// client ("token rights changed"); reconnecting with the same secret works
// but its pushes are refused. A type list that changes closes too.
func TestSetTokensRoleChange(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "w", Role: auth.ReadWrite}, auth.Token{Name: "n", Role: auth.ReadOnly, Types: []string{"note"}})
	h := start(t, nil, &server.Options{Tokens: set})
	l := h.linkAs(t, secrets["w"], "c")
	ln := h.linkAs(t, secrets["n"], "cn")
	pushed(l.ext, 0, 1, []synkfs.Record{rec("note", "1", 0, `{}`)}, nil)

	toks := set.Tokens()
	toks[0].Role = auth.ReadOnly
	ro, err := auth.NewSet(toks)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SetTokens(ro)
	if code, reason := l.closed(); code != websocket.StatusPolicyViolation || reason != "token rights changed" {
		t.Fatalf("closed with %v %q, want 1008 token rights changed", code, reason)
	}
	// n's token is unchanged: its link still answers.
	ln.send(&wire.Changes{Version: 0})
	if ch := next[*wire.Changes](ln.ext); ch.Version != 1 || len(ch.Update) != 1 {
		t.Fatalf("n's pull after w changed: %+v", ch)
	}

	l2 := h.linkAs(t, secrets["w"], "c")
	ack := pushed(l2.ext, 1, 2, []synkfs.Record{rec("note", "2", 0, `{}`)}, nil)
	if len(ack.Results) != 1 || ack.Results[0].Code != wire.CodeForbidden {
		t.Fatalf("push after the token became read-only: %+v", ack)
	}
	if v := h.store.Version(); v != 1 {
		t.Fatalf("a read-only push moved the store to %d", v)
	}

	toks[1].Types = []string{"note", "todo"}
	more, err := auth.NewSet(toks)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SetTokens(more)
	if code, reason := ln.closed(); code != websocket.StatusPolicyViolation || reason != "token rights changed" {
		t.Fatalf("types changed: closed with %v %q", code, reason)
	}
}

// TestSetTokensTurnsAuthOn: SetTokens on a server started without tokens
// turns authentication on (tokenless clients are closed with 1008
// "authentication required", new ones get 401, /metrics wants a token);
// SetTokens(nil) turns it off again.
func TestSetTokensTurnsAuthOn(t *testing.T) {
	h := start(t, nil, nil)
	anon := &linkAs{ext: &ext{t: t}, ws: h.dial(t)}
	anon.conn = wire.NewConn(anon.ws, nil)
	anon.hello("anon", "", 0)
	if code := metricsStatus(t, h, ""); code != http.StatusOK {
		t.Fatalf("/metrics without tokens: %d", code)
	}

	set, secrets := tokens(t, auth.Token{Name: "a", Role: auth.ReadWrite})
	h.srv.SetTokens(set)
	if code, reason := anon.closed(); code != websocket.StatusPolicyViolation || reason != "authentication required" {
		t.Fatalf("tokenless client closed with %v %q", code, reason)
	}
	h.refused(t, "")
	if code := metricsStatus(t, h, ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token after SetTokens: %d", code)
	}
	if code := metricsStatus(t, h, secrets["a"]); code != http.StatusOK {
		t.Fatalf("/metrics with a token: %d", code)
	}
	la := h.linkAs(t, secrets["a"], "a")

	h.srv.SetTokens(nil)
	if code, reason := la.closed(); code != websocket.StatusPolicyViolation || reason != "tokens changed" {
		t.Fatalf("token client after SetTokens(nil): %v %q", code, reason)
	}
	h.dial(t)
	if code := metricsStatus(t, h, ""); code != http.StatusOK {
		t.Fatalf("/metrics after SetTokens(nil): %d", code)
	}
}

// TestSetTokensDuringUpgrades: links that a removed token opens while the
// set is replaced are all closed, including those admitted by the old set
// whose upgrade finished after the swap.
func TestSetTokensDuringUpgrades(t *testing.T) {
	set, secrets := tokens(t, auth.Token{Name: "a", Role: auth.ReadWrite}, auth.Token{Name: "b", Role: auth.ReadOnly})
	h := start(t, nil, &server.Options{Tokens: set})
	const n = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		links []*websocket.Conn
	)
	begin := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			ws, _, err := websocket.Dial(ctxT(t), h.url, &websocket.DialOptions{HTTPHeader: auth.Header(secrets["a"])})
			if err != nil {
				return // refused after the swap: fine
			}
			t.Cleanup(func() { ws.CloseNow() })
			mu.Lock()
			links = append(links, ws)
			mu.Unlock()
		}()
	}
	close(begin)
	time.Sleep(time.Millisecond)
	h.srv.SetTokens(without(t, set, "a"))
	wg.Wait()
	for _, ws := range links {
		ctx := ctxT(t)
		for {
			_, _, err := ws.Read(ctx)
			if err == nil {
				continue
			}
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Fatalf("a link of the removed token ended with %v (%v)", code, err)
			}
			break
		}
	}
	t.Logf("%d of %d upgrades got through before the swap", len(links), n)
}

func metricsStatus(t *testing.T, h *harness, secret string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(t), "GET", h.hs.URL+"/metrics", nil)
	if secret != "" {
		req.Header = auth.Header(secret)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

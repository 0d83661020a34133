package server

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/wire"
)

// Authentication and authorization.
//
// With Options.Tokens set, every WebSocket upgrade must present a valid
// bearer secret (auth.FromRequest: an Authorization header, or a browser's
// "synkfs.bearer.<secret>" subprotocol); others get 401 with no detail, and
// /metrics asks for a token too. /healthz stays open for probes.
//
// A connected client then acts within its token:
//   - a read-only token's pushes are refused record by record (status
//     rejected, code forbidden), and an extended client that pushes without
//     a batch id gets a forbidden error;
//   - a token limited to some types never receives a record or tombstone of
//     another type: not in changes replies, not in snapshot pages, not as
//     the current record of a conflict (writes to other types are refused
//     before the conflict check). Notifies carry only the global version
//     number; a limited client is notified only of batches that touched one
//     of its types, so it cannot watch others' activity as it happens. (The
//     version numbers it does see are global, so their gaps tell it how many
//     batches were committed in between, never what they held.)
//   - client ids are scoped by token name, so one token cannot read or
//     spoil another's exactly-once batch record by claiming its client id.
//
// SetTokens replaces the set while the server runs. After it returns,
// every connected client holds exactly the rights that reconnecting with
// its secret would give it: a client whose token left the set (or whose
// secret changed) is closed with 1008 "token revoked", one whose token's
// role or types changed with 1008 "token rights changed" (it reconnects
// with the new rights). A server started without tokens has
// authentication turned on by SetTokens(set): its clients, which hold no
// token, are closed with 1008 "authentication required" and must
// reconnect with a token. SetTokens(nil) turns authentication off: clients
// holding a token are closed with 1008 "tokens changed" and reconnect
// with every right. A batch being committed when its client's token goes
// is finished; nothing later from that link is read.

// acceptSubprotocols are the subprotocols the server selects from a
// client's offer: a browser that offers its secret as a subprotocol must be
// answered with another one it offered, never the secret.
var acceptSubprotocols = []string{auth.Subprotocol}

// security is a client's token and limit state (this file and limits.go).
type security struct {
	tok *auth.Token // nil: no tokens configured, everything allowed

	started atomic.Bool // a first message arrived (handshake timeout)
	bucket  *bucket     // nil: no rate limit; owned by the reading goroutine
}

// authenticate checks the upgrade request's secret. It returns the
// client's token (nil when the server has no tokens) and false after
// answering 401 when the request may not connect.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Token, bool) {
	set := s.tokens.Load()
	if set == nil {
		return nil, true
	}
	secret, present := auth.FromRequest(r)
	tok, ok := set.Check(secret)
	if !ok {
		reason := "no token"
		if present {
			reason = "invalid token"
		}
		s.metrics.errors.WithLabelValues(wire.CodeUnauthorized).Inc()
		s.log.Info("refused a connection", "remote", r.RemoteAddr, "reason", reason)
		w.Header().Set("WWW-Authenticate", `Bearer realm="synkfs"`)
		http.Error(w, "synkfs: unauthorized", http.StatusUnauthorized)
		return nil, false
	}
	return &tok, true
}

// requireToken guards h with the server's tokens, when it has some.
func (s *Server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if set := s.tokens.Load(); set != nil {
			secret, _ := auth.FromRequest(r)
			if _, ok := set.Check(secret); !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="synkfs"`)
				http.Error(w, "synkfs: unauthorized", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// SetTokens makes set the server's tokens (nil: no authentication) for
// every later upgrade and /metrics request, and closes with 1008 the
// connected clients whose rights it changes (see the top of this file). It
// never blocks on a client and may be called at any time, also
// concurrently; the last call wins.
func (s *Server) SetTokens(set *auth.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Stored under mu: register rechecks a new client under mu too, so a
	// client admitted by the old set is either swept here or rechecked
	// there against this one.
	s.tokens.Store(set)
	closed := 0
	for c := range s.clients {
		if s.recheckLocked(c) {
			closed++
		}
	}
	n := 0
	if set != nil {
		n = set.Len()
	}
	s.log.Debug("tokens replaced", "tokens", n, "auth", set != nil, "closed", closed)
}

// recheckLocked closes c with 1008 when the current token set would not
// give it the rights it holds, and reports whether it did. s.mu is held.
func (s *Server) recheckLocked(c *client) bool {
	reason := revoked(c.sec.tok, s.tokens.Load())
	if reason == "" {
		return false
	}
	name := ""
	if c.sec.tok != nil {
		name = c.sec.tok.Name
	}
	c.log.Info("closing a client: its token changed", "token", name, "reason", reason)
	c.kill(websocket.StatusPolicyViolation, reason)
	return true
}

// revoked returns why a client holding tok (nil: none) may not stay
// connected under set, or "" when set gives it the same rights.
func revoked(tok *auth.Token, set *auth.Set) string {
	switch {
	case set == nil && tok == nil:
		return ""
	case set == nil:
		return "tokens changed"
	case tok == nil:
		return "authentication required"
	}
	cur, ok := set.Lookup(tok.Name)
	switch {
	case !ok || cur.Hash != tok.Hash:
		return "token revoked"
	case !cur.Same(tok):
		return "token rights changed"
	}
	return ""
}

// mayRead reports whether c may receive records of type typ.
func (c *client) mayRead(typ string) bool {
	return c.sec.tok == nil || c.sec.tok.MayAccess(typ)
}

// limited reports whether c sees only some types.
func (c *client) limited() bool { return c.sec.tok != nil && c.sec.tok.Limited() }

// forbidden returns the rejection of a write to k when c's token does not
// allow it.
func (c *client) forbidden(k synkfs.Key) (wire.Result, bool) {
	t := c.sec.tok
	var msg string
	switch {
	case t == nil:
		return wire.Result{}, false
	case !t.CanWrite():
		msg = fmt.Sprintf("token %q is read-only: this server refuses every write from it", t.Name)
	case !t.MayAccess(k.Type):
		msg = fmt.Sprintf("token %q may not write records of this type", t.Name)
	default:
		return wire.Result{}, false
	}
	return wire.Result{Key: k, Status: wire.StatusRejected, Code: wire.CodeForbidden, Message: msg}, true
}

// reportForbidden tells an extended client that pushed writes its token
// does not allow, without a batch id (so no ack would name them), why they
// are dropped. A legacy client's are logged by commit.
func (c *client) reportForbidden(m *wire.Changes) {
	if c.sec.tok == nil || !c.extended || (c.features[wire.FeatureAck] && m.Batch > 0) {
		return
	}
	for _, r := range m.Update {
		if res, no := c.forbidden(r.Key); no {
			c.bad(wire.CodeForbidden, res.Message, m.Batch)
			return
		}
	}
	for _, d := range m.Delete {
		if res, no := c.forbidden(d.Key); no {
			c.bad(wire.CodeForbidden, res.Message, m.Batch)
			return
		}
	}
}

// scopeID returns the id under which the server keeps client id's batch
// record: the id itself without tokens, else prefixed by the token name
// (length first, so no two pairs spell the same id).
func (c *client) scopeID(id string) string {
	if id == "" || c.sec.tok == nil {
		return id
	}
	return fmt.Sprintf("%d:%s/%s", len(c.sec.tok.Name), c.sec.tok.Name, id)
}

// broadcastFor tells every ready client that may read one of the types m
// wrote that the store is at version v.
func (s *Server) broadcastFor(v uint64, m *wire.Changes) {
	if s.tokens.Load() == nil {
		s.broadcast(v)
		return
	}
	var types []string
	for _, r := range m.Update {
		if !slices.Contains(types, r.Key.Type) {
			types = append(types, r.Key.Type)
		}
	}
	for _, d := range m.Delete {
		if !slices.Contains(types, d.Key.Type) {
			types = append(types, d.Key.Type)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if !c.limited() || slices.ContainsFunc(types, c.mayRead) {
			c.signal(v)
		}
	}
}

// sendFilteredSnapshotPage answers a snapshot request of a client limited
// to some types: it scans only the ranges of those types (keys are ordered
// by type first), so the page holds only records the client may see and
// the walk skips other types without reading them.
func (c *client) sendFilteredSnapshotPage(req *wire.SnapshotRequest) error {
	limit := req.Limit
	if limit <= 0 || limit > c.s.opts.SnapshotPageMax {
		limit = c.s.opts.SnapshotPageMax
	}
	types := slices.Clone(c.sec.tok.Types)
	slices.Sort(types)
	types = slices.Compact(types)

	var cursor synkfs.Key
	if req.After != nil {
		cursor = *req.After
	}
	i, _ := slices.BinarySearch(types, cursor.Type)
	if i < len(types) && types[i] != cursor.Type {
		cursor = synkfs.Key{Type: types[i]} // before every id of that type
	}
	st := c.s.store
	page := &wire.SnapshotPage{Epoch: st.Epoch(), Version: st.Version()}
	size := 0
	full := false
	for i < len(types) && len(page.Records) < limit && !full {
		want := limit - len(page.Records)
		recs, err := st.Scan(cursor, want)
		if err != nil {
			return err
		}
		exhausted := len(recs) < want
		for _, r := range recs {
			if r.Key.Type != types[i] {
				exhausted = true
				break
			}
			n := estimate(r.Key, r.Body)
			if size+n > c.budget() && len(page.Records) > 0 {
				full = true
				break
			}
			size += n
			page.Records = append(page.Records, r)
			cursor = r.Key
		}
		if exhausted && !full {
			i++
			if i < len(types) {
				cursor = synkfs.Key{Type: types[i]}
			}
		}
	}
	page.Done = i >= len(types)
	if !page.Done && len(page.Records) > 0 {
		next := page.Records[len(page.Records)-1].Key
		page.Next = &next
	}
	return c.write(page)
}

package client_test

import (
	"testing"
	"time"

	"github.com/synkfs/synkfs/client/memreplica"
)

// A pull answered below the version the server announced (a server whose
// version read was stale) leaves the client waiting for the rest of the
// reply, which never comes on a link that stays up: after AckTimeout the
// client reconnects and catches up.
func TestShortPullReplyTimesOut(t *testing.T) {
	checkLeaks(t)
	p := newPeer(t)
	a := memreplica.New()
	opts := fast(p.url(), "a")
	opts.AckTimeout = 300 * time.Millisecond
	ca := start(t, opts, a)
	b := start(t, fast(p.url(), "b"), memreplica.New())
	wait(t, "both connected", func() bool { return ca.c.State().Connected && b.c.State().Connected })

	p.set(func(p *peer) { p.staleReplies = 1 })
	b.r.Put(key("1"), `{"n":1}`)
	wait(t, "a to catch up", func() bool { return body(a, "1") == `{"n":1}` })
	var accepted int
	p.get(func(p *peer) { accepted = p.accepted })
	if accepted < 3 {
		t.Errorf("%d connections: a caught up without reconnecting, so the reply was not short", accepted)
	}
}

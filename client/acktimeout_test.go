package client_test

import (
	"testing"
	"time"

	"github.com/synkfs/synkfs/client/memreplica"
	"github.com/synkfs/synkfs/internal/chaos"
)

// The server applies a batch, but its ack and changes reply are lost on a
// link that stays up (pings would still be answered): the client gives up
// waiting after AckTimeout, reconnects and settles the batch from the
// server's duplicate ack, without a second apply.
func TestLostAckTimesOutAndReconnects(t *testing.T) {
	checkLeaks(t)
	addr, store := realServer(t)
	relay, err := chaos.NewRelay(addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	opts := fast(relay.URL(), "a")
	// Pings must not find the link dead while its answers are dropped:
	// only the ack timeout may end the session.
	opts.PingInterval, opts.PingTimeout = time.Minute, 10*time.Second
	opts.AckTimeout = 300 * time.Millisecond
	r := memreplica.New()
	c := start(t, opts, r)
	wait(t, "the first sync", func() bool { return c.c.State().Connected && cursorAt(r, store.Version()) })

	before := store.Version()
	relay.SetDropIncoming(true)
	r.Put(key("1"), `{"n":1}`)
	wait(t, "the server to apply the batch", func() bool { return store.Version() == before+1 })
	// The ack and the reply were sent and dropped; later frames pass.
	time.Sleep(50 * time.Millisecond)
	relay.SetDropIncoming(false)
	if got := relay.Stats().Dropped; got == 0 {
		t.Fatal("the relay dropped nothing: the test did not lose the ack")
	}
	wait(t, "the batch settled after a reconnect", func() bool {
		return r.Pending() == 0 && cursorAt(r, store.Version()) && relay.Stats().Links >= 2
	})
	if got := store.Version(); got != before+1 {
		t.Errorf("server at version %d, want %d: the resent batch was applied again", got, before+1)
	}
	if got := body(r, "1"); got != `{"n":1}` {
		t.Errorf("replica holds %s", got)
	}
}

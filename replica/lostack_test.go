package replica

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// pushLosingAck sends s's next sealed batch to the server under s's client
// id and drops the ack, as a link cut just after the push would: the
// server has the batch, the replica does not know its outcome.
func pushLosingAck(t *testing.T, s *side) uint64 {
	t.Helper()
	if err := s.r.Scan(); err != nil {
		t.Fatal(err)
	}
	b, ok := s.r.NextBatch()
	if !ok {
		t.Fatal("nothing staged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := wire.NewConn(ws, nil)
	defer conn.Close(websocket.StatusNormalClosure, "")
	epoch, version := s.r.Cursor()
	if err := conn.Write(ctx, &wire.Hello{Protocol: 1, Client: s.r.ClientID(), Epoch: epoch, Version: version,
		Features: []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot}}); err != nil {
		t.Fatal(err)
	}
	if m, err := conn.Read(ctx); err != nil || m.Type() != wire.TypeWelcome {
		t.Fatalf("welcome: %v %v", m, err)
	}
	msg := &wire.Changes{Version: version, Batch: b.ID, Update: b.Update, Delete: b.Delete}
	if msg.Update == nil {
		msg.Update = []synkfs.Record{}
	}
	if msg.Delete == nil {
		msg.Delete = []synkfs.Tombstone{}
	}
	if err := conn.Write(ctx, msg); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ack, ok := m.(*wire.Ack); ok && ack.Batch == b.ID {
			return ack.Version // dropped: never handed to the replica
		}
	}
}

// A batch whose ack was lost is resent; the server's duplicate ack carries
// its original results, which the replica settles like any ack: the
// conflict keeps both versions, and the applied record takes the batch's
// version as its base.
func TestLostAckDuplicateCarriesResults(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, &Options{OnConflict: KeepBoth})
	b := newSide(t, srv.url, &Options{OnConflict: KeepBoth})
	a.write("n/1.json", `{"v":0}`)
	a.sync()
	b.sync()
	b.write("n/1.json", `{"v":"b"}`)
	b.sync()
	a.write("n/1.json", `{"v":"a"}`) // conflicts with b's edit
	a.write("n/2.json", `{"new":true}`)
	version := pushLosingAck(t, a)
	a.sync()

	if got := a.read("n/1.json"); got != canon(t, `{"v":"b"}`) {
		t.Fatalf("a's record = %q, want the server's", got)
	}
	cs, _ := ListConflicts(a.dir)
	if len(cs) != 1 || a.read(cs[0].Copy) != canon(t, `{"v":"a"}`) {
		t.Fatalf("a's edit was not kept as a conflict copy: %+v", cs)
	}
	if v, ok := a.r.baseVersion(synkfs.Key{Type: "n", ID: "2"}); !ok || v != version {
		t.Fatalf("applied record's base = %d, %v; want the batch's version %d", v, ok, version)
	}
	if a.r.Pending() != 0 {
		t.Fatalf("still staged: %d", a.r.Pending())
	}
	b.sync()
	if got := b.read("n/2.json"); got != canon(t, `{"new":true}`) {
		t.Fatalf("b: %q", got)
	}
}

package server_test

import (
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

// A hello delivered twice (a faulty link repeating a frame) is ignored: the
// session goes on, and the next batch is acknowledged. A second hello that
// differs from the first is still refused.
func TestRepeatedHelloIgnored(t *testing.T) {
	h := start(t, nil, nil)
	e := h.ext(t)
	hello := &wire.Hello{Protocol: 1, Client: "c1", Epoch: h.store.Epoch(), Version: 0,
		Features: []string{wire.FeatureAck, wire.FeatureConflict, wire.FeatureSnapshot}}
	e.send(hello)
	if w := next[*wire.Welcome](e); w.Resync {
		t.Fatalf("welcome = %+v", w)
	}
	e.send(hello)
	ack := push(e, 0, 1, []synkfs.Record{rec("doc", "1", 0, `{"n":1}`)}, nil)
	if ack.Batch != 1 || ack.Version != 1 || ack.Duplicate || len(ack.Results) != 0 {
		t.Fatalf("ack after the repeated hello = %+v", ack)
	}
	next[*wire.Changes](e)

	other := *hello
	other.Version = 1
	e.send(&other)
	if m := next[*wire.Error](e); m.Code != wire.CodeBadMessage || m.Batch != 0 {
		t.Fatalf("a different second hello: %+v", m)
	}
}

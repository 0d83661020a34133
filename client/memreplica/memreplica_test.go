package memreplica

import (
	"context"
	"testing"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/wire"
)

func TestBatchLifecycle(t *testing.T) {
	ctx := context.Background()
	r := New()
	k1, k2 := synkfs.Key{Type: "t", ID: "1"}, synkfs.Key{Type: "t", ID: "2"}
	if _, ok := r.NextBatch(); ok {
		t.Fatal("batch from an empty replica")
	}
	r.Put(k1, `{"a":1}`)
	b, ok := r.NextBatch()
	if !ok || b.ID != 1 || len(b.Update) != 1 || b.Update[0].Version != 0 {
		t.Fatalf("first batch = %+v", b)
	}
	// Edited while in flight: the sealed batch does not change.
	r.Put(k1, `{"a":2}`)
	r.Delete(k2)
	if again, _ := r.NextBatch(); again.ID != 1 || string(again.Update[0].Body) != `{"a":1}` {
		t.Fatalf("resend = %+v, want batch 1 unchanged", again)
	}
	if err := r.Acked(ctx, b, &wire.Ack{Batch: 1, Version: 7}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := r.Get(k1); rec.Version != 7 || string(rec.Body) != `{"a":2}` {
		t.Errorf("after ack, local view %+v, want the newer edit on base 7", rec)
	}
	b2, ok := r.NextBatch()
	if !ok || b2.ID != 2 || len(b2.Update) != 1 || b2.Update[0].Version != 7 || len(b2.Delete) != 1 {
		t.Fatalf("second batch = %+v, want the re-edit on base 7 and the delete", b2)
	}
	cur := synkfs.Record{Key: k1, Version: 8, Body: []byte(`{"a":"theirs"}`)}
	ack := &wire.Ack{Batch: 2, Version: 9, Results: []wire.Result{{Key: k1, Status: wire.StatusConflict, Current: &cur}}}
	if err := r.Acked(ctx, b2, ack); err != nil {
		t.Fatal(err)
	}
	if rec, _ := r.Get(k1); string(rec.Body) != `{"a":"theirs"}` || rec.Version != 8 {
		t.Errorf("after conflict, %+v, want the server's record", rec)
	}
	if r.Pending() != 0 || len(r.Conflicts()) != 1 {
		t.Errorf("pending %d, conflicts %d, want 0 and 1", r.Pending(), len(r.Conflicts()))
	}
	if err := r.Acked(ctx, b2, ack); err == nil {
		t.Error("a second ack of the same batch was accepted")
	}
}

package replica

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A batch the server refuses while decoding it (a record over its size
// limit) comes back as an error naming the batch: the client hands it
// over as a rejection without ending the session, the replica isolates
// the culprit into the quarantine, and the records sealed with it and the
// changes after it still sync.
func TestRefusedBatchKeepsSessionAndQuarantines(t *testing.T) {
	srv := newServerOpts(t, &server.Options{Limits: wire.Limits{MaxRecord: 512}})
	a := newSide(t, srv.url, &Options{Debounce: 5 * time.Millisecond})
	b := newSide(t, srv.url, &Options{Debounce: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*side{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.r.Run(ctx, s.c) }()
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "both connected", func() bool { return a.c.State().Connected && b.c.State().Connected })

	// Offline-style: both files are there before a scan seals them together.
	a.write("n/big.json", `{"text":"`+strings.Repeat("x", 2000)+`"}`)
	a.write("n/with-it.json", `{"ok":0}`)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the big record quarantined", func() bool {
		q := a.r.Status().Quarantined
		return len(q) == 1 && q[0].Key.ID == "big" && q[0].Code == wire.CodeTooLarge
	})
	a.write("n/after.json", `{"ok":1}`)
	waitFor(t, "b to get the other records", func() bool {
		return b.read("n/with-it.json") == canon(t, `{"ok":0}`) && b.read("n/after.json") == canon(t, `{"ok":1}`)
	})
	if b.read("n/big.json") != "" {
		t.Fatal("the refused record reached b")
	}
	if err := a.c.State().LastError; err != nil {
		t.Fatalf("the refusal ended a session: %v", err)
	}
}

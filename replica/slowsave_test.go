package replica

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs/wire"
)

// slowSaveSetup makes n/x.json known to replicas a and b, changes it on b
// (pushed), and starts a save of ours into a's file that stops half-way:
// the file is invalid JSON and the returned file is still open for the
// rest, as an editor writing in two steps would leave it.
func slowSaveSetup(t *testing.T, opts *Options, ours string) (a, b *side, f *os.File, rest string) {
	t.Helper()
	srv := newServer(t)
	a, b = newSide(t, srv.url, opts), newSide(t, srv.url, nil)
	a.write("n/x.json", `{"v":"base"}`)
	a.sync()
	b.sync()
	b.write("n/x.json", `{"v":"theirs"}`)
	b.sync()

	f, err := os.OpenFile(filepath.Join(a.dir, "n", "x.json"), os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	half := strings.Index(ours, `"w"`)
	if _, err := f.WriteString(ours[:half]); err != nil {
		t.Fatal(err)
	}
	return a, b, f, ours[half:]
}

// A remote change meeting a file that stays half-written evicts it into
// .synk/recovery/, and what the editor writes afterwards lands there too:
// the typed value is kept, not written into an unlinked file.
func TestSlowSaveEvictedKeepsTheRest(t *testing.T) {
	const ours = `{"v":"ours","w":"typed"}`
	a, b, f, rest := slowSaveSetup(t, nil, ours)
	a.sync() // the file stays invalid: it is evicted after the wait
	if got := a.read("n/x.json"); got != canon(t, `{"v":"theirs"}`) {
		t.Fatalf("a's record is %q, want the server's", got)
	}
	// The editor finishes its save through the descriptor it holds.
	if _, err := f.WriteString(rest); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if rec := recoveryFiles(t, a.dir); !hasValue(rec, canon(t, ours)) {
		t.Fatalf("the save is not kept whole in recovery: %v", rec)
	}
	a.sync()
	b.sync()
	sameRecords(t, a, b)
	if st := a.r.Status(); len(st.Bad) != 0 {
		t.Fatalf("bad entries left: %+v", st.Bad)
	}
}

// A remote change meeting a save still under way waits for it to settle:
// the finished save is then staged and settled against the server's change
// (here a clash on "v": a conflict copy), and nothing goes to recovery.
func TestSlowSaveSettlesBeforeRemoteChange(t *testing.T) {
	const ours = `{"v":"ours","w":"typed"}`
	// A long debounce: the save below finishes well inside the wait even
	// on a loaded machine.
	a, b, f, rest := slowSaveSetup(t, &Options{Debounce: 100 * time.Millisecond}, ours)
	done := make(chan error, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		_, err := f.WriteString(rest)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	a.sync()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rec := recoveryFiles(t, a.dir); len(rec) != 0 {
		t.Fatalf("a save under way was evicted: %v", rec)
	}
	if got := a.read("n/x.json"); got != canon(t, `{"v":"theirs"}`) {
		t.Fatalf("a's record is %q, want the server's", got)
	}
	copies, _ := filepath.Glob(filepath.Join(a.dir, "n", "x.conflict-*.json"))
	if len(copies) != 1 {
		t.Fatalf("conflict copies %v, want the finished save in one", copies)
	}
	rel, _ := filepath.Rel(a.dir, copies[0])
	if got := a.read(filepath.ToSlash(rel)); got != canon(t, ours) {
		t.Fatalf("conflict copy holds %q, want %q", got, ours)
	}
	a.sync()
	b.sync()
	sameRecords(t, a, b)
}

// A save made after a record was staged and before its batch is sealed
// goes out with the batch (the file is read at sealing) and is adopted
// then: once acknowledged, the record is not staged again with the body
// already sent, which the server would commit a second time.
func TestSaveBeforeSealSentOnce(t *testing.T) {
	a := newSide(t, "ws://127.0.0.1:1/", nil) // no server: the engine is driven by hand
	a.write("n/x.json", `{"v":1}`)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	a.write("n/x.json", `{"v":22}`) // not scanned yet
	b, ok := a.r.NextBatch()
	if !ok || len(b.Update) != 1 || canon(t, string(b.Update[0].Body)) != canon(t, `{"v":22}`) {
		t.Fatalf("sealed %+v, want the file's body", b)
	}
	if err := a.r.Acked(context.Background(), b, &wire.Ack{Batch: b.ID, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	if n := a.r.Pending(); n != 0 {
		next, _ := a.r.NextBatch()
		t.Fatalf("%d staged after the batch carrying the file's body was acknowledged; it would be sent again: %+v", n, next)
	}
}

package replica

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/memstore"
	"github.com/synkfs/synkfs/merge"
	"github.com/synkfs/synkfs/server"
	"github.com/synkfs/synkfs/wire"
)

// testServer runs a real server over an in-memory store on loopback.
type testServer struct {
	srv *server.Server
	hs  *httptest.Server
	url string
}

func newServer(t testing.TB) *testServer {
	t.Helper()
	return newServerOpts(t, nil)
}

func newServerOpts(t testing.TB, opts *server.Options) *testServer {
	t.Helper()
	srv := server.New(memstore.New(), opts)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	return &testServer{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/"}
}

// side is one synced folder with its replica and client.
type side struct {
	t   testing.TB
	dir string
	r   *Replica
	c   *client.Client
	url string
	opt Options
}

func newSide(t testing.TB, url string, opts *Options) *side {
	t.Helper()
	s := &side{t: t, dir: t.TempDir(), url: url}
	if opts != nil {
		s.opt = *opts
	}
	s.open()
	t.Cleanup(func() { _ = s.r.Close() })
	return s
}

func (s *side) open() {
	s.t.Helper()
	o := s.opt
	if o.Host == "" {
		o.Host = "testhost"
	}
	r, err := Open(s.dir, &o)
	if err != nil {
		s.t.Fatal(err)
	}
	s.r = r
	s.c = client.New(client.Options{URL: s.url, ClientID: r.ClientID(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, r)
}

func (s *side) reopen(opts Options) {
	s.t.Helper()
	if err := s.r.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.opt = opts
	s.open()
}

func (s *side) sync() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.r.SyncOnce(ctx, s.c); err != nil {
		s.t.Fatalf("sync %s: %v", s.dir, err)
	}
}

func (s *side) write(rel, body string) {
	s.t.Helper()
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	// A distinct mtime, so the store's size+mtime check always looks.
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		s.t.Fatal(err)
	}
	future := time.Now().Add(time.Duration(len(body)) * time.Millisecond)
	_ = os.Chtimes(p, future, future)
}

func (s *side) remove(rel string) {
	s.t.Helper()
	if err := os.Remove(filepath.Join(s.dir, filepath.FromSlash(rel))); err != nil {
		s.t.Fatal(err)
	}
}

// read returns the canonical body of a file, or "" if it does not exist.
func (s *side) read(rel string) string {
	s.t.Helper()
	data, err := os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(rel)))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		s.t.Fatal(err)
	}
	c, err := merge.Canonical(data)
	if err != nil {
		s.t.Fatalf("%s: %v", rel, err)
	}
	return string(c)
}

// records returns every record file's canonical body by path.
func (s *side) records() map[string]string {
	s.t.Helper()
	out := map[string]string{}
	tops, _ := os.ReadDir(s.dir)
	for _, d := range tops {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		files, _ := os.ReadDir(filepath.Join(s.dir, d.Name()))
		for _, f := range files {
			rel := d.Name() + "/" + f.Name()
			if !strings.HasSuffix(rel, ".json") || IsConflictCopy(rel) {
				continue
			}
			out[rel] = s.read(rel)
		}
	}
	return out
}

func canon(t *testing.T, s string) string {
	t.Helper()
	c, err := merge.Canonical([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return string(c)
}

func sameRecords(t *testing.T, a, b *side) {
	t.Helper()
	ra, rb := a.records(), b.records()
	if len(ra) != len(rb) {
		t.Fatalf("replicas differ:\n%v\n%v", ra, rb)
	}
	for k, v := range ra {
		if rb[k] != v {
			t.Fatalf("replicas differ at %s: %q vs %q", k, v, rb[k])
		}
	}
}

func TestConvergeCreatesEditsDeletes(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)

	a.write("notes/1.json", `{"title":"one"}`)
	a.write("notes/2.json", `{"title":"two"}`)
	b.write("todo/x.json", `{"done":false}`)
	a.sync()
	b.sync()
	a.sync()
	sameRecords(t, a, b)
	if got := b.read("notes/1.json"); got != canon(t, `{"title":"one"}`) {
		t.Fatalf("b has %q", got)
	}
	if a.r.Pending() != 0 || b.r.Pending() != 0 {
		t.Fatalf("still staged: %d %d", a.r.Pending(), b.r.Pending())
	}

	// Edit on b, delete on a.
	b.write("notes/1.json", `{"title":"one, edited"}`)
	a.remove("notes/2.json")
	b.sync()
	a.sync()
	b.sync()
	sameRecords(t, a, b)
	if got := a.read("notes/1.json"); got != canon(t, `{"title":"one, edited"}`) {
		t.Fatalf("a has %q", got)
	}
	if got := b.read("notes/2.json"); got != "" {
		t.Fatalf("delete did not reach b: %q", got)
	}
}

func TestOfflineEditsCollapse(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	a.write("n/1.json", `{"v":1}`)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	a.write("n/1.json", `{"v":22}`)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	a.write("n/1.json", `{"v":333}`)
	if err := a.r.Scan(); err != nil {
		t.Fatal(err)
	}
	if n := a.r.Pending(); n != 1 {
		t.Fatalf("staged %d changes, want 1", n)
	}
	b, ok := a.r.NextBatch()
	if !ok || b.Len() != 1 || !merge.Equal(b.Update[0].Body, []byte(`{"v":333}`)) {
		t.Fatalf("batch %+v", b)
	}
	// The sealed batch survives a restart with the same id and content.
	a.reopen(Options{})
	b2, ok := a.r.NextBatch()
	if !ok || b2.ID != b.ID || !merge.Equal(b2.Update[0].Body, b.Update[0].Body) {
		t.Fatalf("after reopen: %+v, want %+v", b2, b)
	}
	a.sync()
	if a.r.Pending() != 0 {
		t.Fatal("still staged after sync")
	}
}

// conflictSetup makes both sides hold n/1.json synced, then edits it on
// both while offline and returns them.
func conflictSetup(t *testing.T, strategy Strategy, base, ours, theirs string) (a, b *side) {
	t.Helper()
	srv := newServer(t)
	a = newSide(t, srv.url, &Options{OnConflict: strategy})
	b = newSide(t, srv.url, &Options{OnConflict: strategy})
	a.write("n/1.json", base)
	a.sync()
	b.sync()
	if ours == "" {
		a.remove("n/1.json")
	} else {
		a.write("n/1.json", ours)
	}
	if theirs == "" {
		b.remove("n/1.json")
	} else {
		b.write("n/1.json", theirs)
	}
	b.sync() // b reaches the server first: b is "theirs" for a
	a.sync()
	b.sync()
	return a, b
}

func TestConflictMerge(t *testing.T) {
	a, b := conflictSetup(t, Merge, `{"name":"x","age":1}`, `{"name":"y","age":1}`, `{"name":"x","age":2}`)
	want := canon(t, `{"name":"y","age":2}`)
	if got := a.read("n/1.json"); got != want {
		t.Fatalf("a: %s, want %s", got, want)
	}
	sameRecords(t, a, b)
	if cs, _ := ListConflicts(a.dir); len(cs) != 0 {
		t.Fatalf("conflicts %+v", cs)
	}
}

func TestConflictMergeClashKeepsBoth(t *testing.T) {
	a, b := conflictSetup(t, Merge, `{"name":"x"}`, `{"name":"ours"}`, `{"name":"theirs"}`)
	sameRecords(t, a, b)
	if got := a.read("n/1.json"); got != canon(t, `{"name":"theirs"}`) {
		t.Fatalf("a: %s", got)
	}
	cs, err := ListConflicts(a.dir)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflicts %+v %v", cs, err)
	}
	if got := a.read(cs[0].Copy); got != canon(t, `{"name":"ours"}`) {
		t.Fatalf("conflict copy holds %s", got)
	}
	if len(cs[0].Fields) != 1 || cs[0].Fields[0] != "name" {
		t.Fatalf("fields %v", cs[0].Fields)
	}
	// The copy is not a record: another sync does not send it.
	a.sync()
	b.sync()
	if _, ok := b.records()[cs[0].Copy]; ok {
		t.Fatal("conflict copy reached the other side")
	}
	if files, _ := os.ReadDir(filepath.Join(b.dir, "n")); len(files) != 1 {
		t.Fatalf("b holds %d files in n/", len(files))
	}

	// Resolve with ours: the local version goes to the record and out.
	if _, err := Resolve(a.dir, cs[0].Key, Ours, nil); err != nil {
		t.Fatal(err)
	}
	a.sync()
	b.sync()
	if got := b.read("n/1.json"); got != canon(t, `{"name":"ours"}`) {
		t.Fatalf("b after resolve: %s", got)
	}
	if cs, _ := ListConflicts(a.dir); len(cs) != 0 {
		t.Fatalf("conflict still listed: %+v", cs)
	}
}

func TestConflictKeepBoth(t *testing.T) {
	a, b := conflictSetup(t, KeepBoth, `{"n":0}`, `{"n":1}`, `{"n":2,"m":1}`)
	sameRecords(t, a, b)
	cs, _ := ListConflicts(a.dir)
	if len(cs) != 1 || a.read(cs[0].Copy) != canon(t, `{"n":1}`) {
		t.Fatalf("conflicts %+v", cs)
	}
	if !strings.Contains(cs[0].Copy, ".conflict-testhost-") {
		t.Fatalf("copy name %s", cs[0].Copy)
	}
	// Deleting the copy clears the list.
	a.remove(cs[0].Copy)
	if cs, _ := ListConflicts(a.dir); len(cs) != 0 {
		t.Fatalf("still listed after delete: %+v", cs)
	}
}

func recoveryFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Join(dir, StateDir, recoveryDir)
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			c, _ := merge.Canonical(data)
			out[filepath.Base(p)] = string(c)
		}
		return nil
	})
	return out
}

func hasValue(m map[string]string, v string) bool {
	for _, x := range m {
		if x == v {
			return true
		}
	}
	return false
}

func TestConflictServerWins(t *testing.T) {
	a, b := conflictSetup(t, ServerWins, `{"n":0}`, `{"n":1}`, `{"n":2}`)
	sameRecords(t, a, b)
	if got := a.read("n/1.json"); got != canon(t, `{"n":2}`) {
		t.Fatalf("a: %s", got)
	}
	if rec := recoveryFiles(t, a.dir); !hasValue(rec, canon(t, `{"n":1}`)) {
		t.Fatalf("local version not kept: %v", rec)
	}
}

func TestConflictClientWins(t *testing.T) {
	a, b := conflictSetup(t, ClientWins, `{"n":0}`, `{"n":1}`, `{"n":2}`)
	sameRecords(t, a, b)
	if got := b.read("n/1.json"); got != canon(t, `{"n":1}`) {
		t.Fatalf("b: %s", got)
	}
	if rec := recoveryFiles(t, a.dir); !hasValue(rec, canon(t, `{"n":2}`)) {
		t.Fatalf("server version not kept: %v", rec)
	}
}

func TestDeleteAgainstEdit(t *testing.T) {
	// a deletes, b edits: the edit comes back on a, nothing lost.
	a, b := conflictSetup(t, Merge, `{"n":0}`, "", `{"n":2}`)
	sameRecords(t, a, b)
	if got := a.read("n/1.json"); got != canon(t, `{"n":2}`) {
		t.Fatalf("a: %q", got)
	}
	// a edits, b deletes: a's edit is kept as a conflict copy.
	a2, b2 := conflictSetup(t, Merge, `{"n":0}`, `{"n":1}`, "")
	sameRecords(t, a2, b2)
	cs, _ := ListConflicts(a2.dir)
	if len(cs) != 1 || a2.read(cs[0].Copy) != canon(t, `{"n":1}`) || !cs[0].TheirsDeleted {
		t.Fatalf("conflicts %+v", cs)
	}
}

func TestBadEntryReportedRestSyncs(t *testing.T) {
	srv := newServer(t)
	var events []Event
	a := newSide(t, srv.url, &Options{OnEvent: func(e Event) { events = append(events, e) }})
	b := newSide(t, srv.url, nil)
	a.write("n/good.json", `{"ok":true}`)
	a.write("n/bad.json", `{"ok":`)
	a.sync()
	a.sync()
	b.sync()
	if got := b.read("n/good.json"); got == "" {
		t.Fatal("good record did not sync")
	}
	if got := b.read("n/bad.json"); got != "" {
		t.Fatal("bad record synced")
	}
	bad := 0
	for _, e := range events {
		if e.Kind == EventBad {
			bad++
			if e.Path != "n/bad.json" || e.Message == "" {
				t.Fatalf("bad event %+v", e)
			}
		}
	}
	if bad != 1 {
		t.Fatalf("bad entry reported %d times", bad)
	}
	st := a.r.Status()
	if len(st.Bad) != 1 || st.Bad[0].Path != "n/bad.json" {
		t.Fatalf("status bad %+v", st.Bad)
	}
	// Fixed, it syncs.
	a.write("n/bad.json", `{"ok":"now"}`)
	a.sync()
	b.sync()
	if got := b.read("n/bad.json"); got != canon(t, `{"ok":"now"}`) {
		t.Fatalf("fixed record: %q", got)
	}
}

func TestMassDeleteGuard(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	for i := range 12 {
		a.write("n/"+string(rune('a'+i))+".json", `{"i":1}`)
	}
	a.sync()
	b.sync()
	if len(b.records()) != 12 {
		t.Fatalf("b has %d", len(b.records()))
	}
	for i := range 12 {
		a.remove("n/" + string(rune('a'+i)) + ".json")
	}
	a.sync()
	b.sync()
	if len(b.records()) != 12 {
		t.Fatal("mass delete went through without confirmation")
	}
	if a.r.PausedDeletes() != 12 {
		t.Fatalf("paused %d", a.r.PausedDeletes())
	}
	a.reopen(Options{ConfirmDeletes: true})
	a.sync()
	b.sync()
	if n := len(b.records()); n != 0 {
		t.Fatalf("b still has %d after confirmed deletes", n)
	}
}

func TestAttachExistingFolderAndInitialSnapshot(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	for i := range 30 {
		a.write("big/"+string(rune('A'+i))+".json", `{"i":`+string(rune('0'+i%10))+`}`)
	}
	a.sync()
	// b attaches a folder that already holds some of the same and more.
	b := newSide(t, srv.url, nil)
	b.write("big/A.json", `{"i":0}`)     // same as a's
	b.write("big/extra.json", `{"x":1}`) // only b's
	b.sync()
	a.sync()
	sameRecords(t, a, b)
	if len(a.records()) != 31 {
		t.Fatalf("a has %d records", len(a.records()))
	}
	if cs, _ := ListConflicts(b.dir); len(cs) != 0 {
		t.Fatalf("identical records made conflicts: %+v", cs)
	}
}

// TestInitialSyncProgress: the initial snapshot reports how many records
// are applied out of how many the server announced.
func TestInitialSyncProgress(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	for i := range 12 {
		a.write(fmt.Sprintf("p/%d.json", i), `{}`)
	}
	a.sync()
	type call struct {
		n, total int
		done     bool
	}
	var calls []call
	b := newSide(t, srv.url, &Options{OnProgress: func(n, total int, done bool) { calls = append(calls, call{n, total, done}) }})
	b.sync()
	if len(calls) == 0 || calls[len(calls)-1] != (call{12, 12, true}) {
		t.Fatalf("progress calls = %+v, want the last to be 12 of 12, done", calls)
	}
}

func TestNewEpochKeepsLocalEdits(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	a.write("n/1.json", `{"v":1}`)
	a.write("n/2.json", `{"v":2}`)
	a.sync()
	a.write("n/2.json", `{"v":"edited offline"}`)

	// The server restarts empty: a new epoch.
	srv2 := newServer(t)
	a.url = srv2.url
	a.reopen(Options{})
	a.sync()
	b := newSide(t, srv2.url, nil)
	b.sync()
	sameRecords(t, a, b)
	if got := b.read("n/2.json"); got != canon(t, `{"v":"edited offline"}`) {
		t.Fatalf("b: %q", got)
	}
	if got := b.read("n/1.json"); got != canon(t, `{"v":1}`) {
		t.Fatalf("b: %q", got)
	}
}

func TestRunPicksUpEdits(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.r.Run(ctx, a.c) }()
	go func() { done <- b.r.Run(ctx, b.c) }()
	defer func() {
		cancel()
		for range 2 {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Run did not stop")
			}
		}
	}()
	a.write("live/1.json", `{"hello":"world"}`)
	deadline := time.Now().Add(10 * time.Second)
	for b.read("live/1.json") == "" {
		if time.Now().After(deadline) {
			t.Fatal("edit did not flow from a to b")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, ok, err := ReadStatus(a.dir)
	if err != nil || !ok {
		t.Fatalf("status: %v %v", ok, err)
	}
	if st.Watch == "" || st.Dir != a.r.Root() {
		t.Fatalf("status %+v", st)
	}
}

// TestRandomConvergence: random creates, edits and deletes on both sides,
// synced in random order, always converge with nothing left staged.
func TestRandomConvergence(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomConvergence(t, seed) })
	}
}

func randomConvergence(t *testing.T, seed uint64) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	rng := rand.New(rand.NewPCG(seed, 2))
	sides := []*side{a, b}
	for round := range 15 {
		for _, s := range sides {
			for range 1 + rng.IntN(4) {
				rel := fmt.Sprintf("r/%d.json", rng.IntN(8))
				switch op := rng.IntN(3); {
				case op < 2:
					s.write(rel, fmt.Sprintf(`{"round":%d,"f%d":%d}`, round, rng.IntN(3), rng.IntN(100)))
				default:
					_ = os.Remove(filepath.Join(s.dir, filepath.FromSlash(rel)))
				}
			}
		}
		rng.Shuffle(len(sides), func(i, j int) { sides[i], sides[j] = sides[j], sides[i] })
		for _, s := range sides {
			s.sync()
		}
	}
	// Settle: a few quiet rounds.
	for range 3 {
		a.sync()
		b.sync()
	}
	sameRecords(t, a, b)
	if a.r.Pending() != 0 || b.r.Pending() != 0 {
		t.Fatalf("still staged: %d %d", a.r.Pending(), b.r.Pending())
	}
}

// TestLiveConvergence: both replicas run (watchers, pushes and pulls at
// once) while both folders are edited; once the edits stop they converge.
func TestLiveConvergence(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, &Options{VerifyEvery: 300 * time.Millisecond}), newSide(t, srv.url, &Options{VerifyEvery: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.r.Run(ctx, a.c) }()
	go func() { done <- b.r.Run(ctx, b.c) }()
	defer func() {
		cancel()
		for range 2 {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Run did not stop")
			}
		}
	}()
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 80 {
		s := []*side{a, b}[rng.IntN(2)]
		rel := fmt.Sprintf("live/%d.json", rng.IntN(10))
		if rng.IntN(5) == 0 {
			_ = os.Remove(filepath.Join(s.dir, filepath.FromSlash(rel)))
		} else {
			s.write(rel, fmt.Sprintf(`{"i":%d,"k%d":%d}`, i, rng.IntN(3), rng.IntN(9)))
		}
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ra, rb := a.records(), b.records()
		same := len(ra) == len(rb) && a.r.Pending() == 0 && b.r.Pending() == 0
		for k, v := range ra {
			same = same && rb[k] == v
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence:\na %v (staged %d)\nb %v (staged %d)", ra, a.r.Pending(), rb, b.r.Pending())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQuarantine: a change the server refuses for good leaves the stage
// with the reason, is shown by Status, and does not block later changes.
func TestQuarantine(t *testing.T) {
	srv := newServerOpts(t, &server.Options{Limits: wire.Limits{MaxRecord: 512}})
	var events []Event
	a := newSide(t, srv.url, &Options{OnEvent: func(e Event) { events = append(events, e) }})
	b := newSide(t, srv.url, nil)
	a.write("n/big.json", `{"text":"`+strings.Repeat("x", 2000)+`"}`)
	a.write("n/same-batch.json", `{"ok":0}`) // sealed with the big one
	a.sync()
	a.write("n/small.json", `{"ok":1}`)
	a.sync()
	b.sync()
	if got := b.read("n/same-batch.json"); got != canon(t, `{"ok":0}`) {
		t.Fatalf("record sealed with the refused one was lost: %q", got)
	}
	if got := b.read("n/small.json"); got != canon(t, `{"ok":1}`) {
		t.Fatalf("later change blocked: %q", got)
	}
	if got := b.read("n/big.json"); got != "" {
		t.Fatal("refused record reached b")
	}
	st := a.r.Status()
	if len(st.Quarantined) != 1 || st.Quarantined[0].Key.ID != "big" || st.Quarantined[0].Code == "" {
		t.Fatalf("quarantine %+v", st.Quarantined)
	}
	if len(st.Staged) != 0 {
		t.Fatalf("still staged %+v", st.Staged)
	}
	// The file stays as the user wrote it.
	if !strings.Contains(a.read("n/big.json"), "xxxx") {
		t.Fatal("refused record's file changed")
	}
	// Editing it again (now small enough) sends it and clears the entry.
	a.write("n/big.json", `{"text":"short now"}`)
	a.sync()
	b.sync()
	if got := b.read("n/big.json"); got != canon(t, `{"text":"short now"}`) {
		t.Fatalf("b: %q", got)
	}
	if st := a.r.Status(); len(st.Quarantined) != 0 {
		t.Fatalf("quarantine not cleared: %+v", st.Quarantined)
	}
}

func TestOneProcessPerFolder(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	if _, err := Open(a.dir, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("second open: %v, want ErrBusy", err)
	}
	if err := a.r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(a.dir, nil)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	a.r = r
}

// TestLostStateFolder: a folder whose .synk was deleted is rebuilt from
// the files and the server: no conflicts, nothing re-sent as different,
// and an edit made meanwhile still goes out.
func TestLostStateFolder(t *testing.T) {
	srv := newServer(t)
	a, b := newSide(t, srv.url, nil), newSide(t, srv.url, nil)
	for i := range 5 {
		a.write(fmt.Sprintf("n/%d.json", i), fmt.Sprintf(`{"i":%d}`, i))
	}
	a.sync()
	b.sync()
	if err := a.r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(a.dir, StateDir)); err != nil {
		t.Fatal(err)
	}
	a.write("n/new.json", `{"made":"while the state was gone"}`)
	a.open()
	a.sync()
	b.sync()
	sameRecords(t, a, b)
	if cs, _ := ListConflicts(a.dir); len(cs) != 0 {
		t.Fatalf("conflicts after a lost state folder: %+v", cs)
	}
	if a.r.Pending() != 0 {
		t.Fatalf("still staged: %d", a.r.Pending())
	}
}

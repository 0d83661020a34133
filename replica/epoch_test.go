package replica

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestNewEpochForgetsOldVersions: versions learnt from a server that then
// lost its memory (a new epoch, counting again from 0) are not bases in the
// new history. A record deleted before the restart and created again after
// it, at a lower version than the old tombstone, reaches the replica; and a
// record created here after the restart conflicts with a create of the same
// key it has not seen, instead of overwriting it.
func TestNewEpochForgetsOldVersions(t *testing.T) {
	srv := newServer(t)
	a := newSide(t, srv.url, nil)
	// Push the old epoch's versions well above what the new one reaches.
	for i := range 12 {
		a.write(fmt.Sprintf("n/%d.json", i), fmt.Sprintf(`{"v":%d}`, i))
		a.sync()
	}
	a.remove("n/0.json")
	a.sync() // n/0's base: a tombstone at a high version

	srv2 := newServer(t) // a new epoch
	a.url = srv2.url
	a.reopen(Options{OnConflict: KeepBoth})
	a.sync()
	b := newSide(t, srv2.url, nil)
	b.sync()
	b.write("n/0.json", `{"v":"made again"}`)
	b.write("n/new.json", `{"v":"b's"}`)
	b.sync()
	// a creates the same new record without having seen b's.
	a.write("n/new.json", `{"v":"a's"}`)
	a.sync()
	a.sync()
	b.sync()
	if got := a.read("n/0.json"); got != canon(t, `{"v":"made again"}`) {
		t.Fatalf("a: n/0 = %q: a change of the new epoch was taken for an old one", got)
	}
	if got := b.read("n/new.json"); got != canon(t, `{"v":"b's"}`) {
		t.Fatalf("b: n/new = %q: a's create overwrote b's without a conflict", got)
	}
	copies, err := filepath.Glob(filepath.Join(a.dir, "n", "new.conflict-*.json"))
	if err != nil || len(copies) != 1 {
		t.Fatalf("a's version should be kept as a conflict copy: %v %v", copies, err)
	}
	if data, _ := os.ReadFile(copies[0]); canon(t, string(data)) != canon(t, `{"v":"a's"}`) {
		t.Fatalf("conflict copy holds %s", data)
	}
	sameRecords(t, a, b)
}

package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/synkfs/synkfs/internal/vfs"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// crashWorkload is a deterministic serial workload: open, append entries
// across several segments, checkpoint, append more, close. It stops at
// the first error and reports what was acknowledged.
type crashWorkload struct {
	acked        uint64 // highest acknowledged sequence number
	attempted    uint64 // appends started
	checkpointed bool   // Checkpoint(checkpointAt) was started
}

const (
	crashEntries = 16
	checkpointAt = 5
)

func (w *crashWorkload) run(fsys vfs.FS, dir string) error {
	j, err := Open(dir, &Options{FS: fsys, SegmentSize: 200, Logger: discard})
	if err != nil {
		return err
	}
	defer j.Close()
	for i := uint64(1); i <= crashEntries; i++ {
		if i == 13 {
			w.checkpointed = true
			if err := j.Checkpoint(checkpointAt); err != nil {
				return err
			}
		}
		w.attempted = i
		seq, err := j.Append(context.Background(), []byte(payload(i)))
		if err != nil {
			return err
		}
		if seq != i {
			return fmt.Errorf("append %d got seq %d", i, seq)
		}
		w.acked = seq
	}
	return j.Close()
}

// checkRecovered reopens dir with the real file system and checks that
// every acknowledged entry is there, intact and in order, that nothing
// that was never appended shows up, and that the journal accepts appends.
func checkRecovered(t *testing.T, dir string, w crashWorkload, where string) {
	t.Helper()
	j, err := Open(dir, &Options{Logger: discard})
	if err != nil {
		t.Fatalf("%s: reopen: %v", where, err)
	}
	defer j.Close()
	from := uint64(1)
	var got []entry
	collect := func(seq uint64, data []byte) error {
		got = append(got, entry{seq, string(data)})
		return nil
	}
	err = j.Replay(0, collect)
	if errors.Is(err, ErrCheckpointed) && w.checkpointed {
		got, from = nil, checkpointAt+1
		err = j.Replay(checkpointAt, collect)
	}
	if err != nil {
		t.Fatalf("%s: replay: %v", where, err)
	}
	last := from - 1 + uint64(len(got))
	if last < w.acked || last > w.attempted {
		t.Fatalf("%s: recovered entries up to %d; acknowledged %d, attempted %d", where, last, w.acked, w.attempted)
	}
	for i, e := range got {
		want := from + uint64(i)
		if e.seq != want || e.data != payload(want) {
			t.Fatalf("%s: entry %d = (%d, %q), want (%d, %q)", where, i, e.seq, e.data, want, payload(want))
		}
	}
	if j.LastSeq() != last && !(len(got) == 0 && j.LastSeq() < from) {
		t.Fatalf("%s: LastSeq %d, replay ended at %d", where, j.LastSeq(), last)
	}
	seq, err := j.Append(context.Background(), []byte(payload(j.LastSeq()+1)))
	if err != nil || seq != last+1 {
		t.Fatalf("%s: append after recovery = %d, %v; want %d", where, seq, err, last+1)
	}
}

// TestCrashAtEveryOperation crashes the workload at each of its mutating
// file operations in turn, as a killed process (unsynced data survives)
// and as a power loss (unsynced appends are lost), with the crashing write
// torn, and checks recovery each time.
func TestCrashAtEveryOperation(t *testing.T) {
	count := vfs.NewFault(vfs.OS)
	var full crashWorkload
	if err := full.run(count, filepath.Join(t.TempDir(), "j")); err != nil {
		t.Fatal(err)
	}
	n := count.Ops()
	if n < 30 {
		t.Fatalf("workload has only %d mutating operations", n)
	}
	for _, powerLoss := range []bool{false, true} {
		for i := 1; i <= n; i++ {
			dir := filepath.Join(t.TempDir(), "j")
			f := vfs.NewFault(vfs.OS)
			f.TornWrites(true)
			f.DropUnsynced(powerLoss)
			f.CrashAfter(i)
			var w crashWorkload
			err := w.run(f, dir)
			if !errors.Is(err, vfs.ErrCrashed) {
				t.Fatalf("crash at op %d/%d: workload returned %v", i, n, err)
			}
			where := fmt.Sprintf("crash at op %d/%d (%s, power loss %v)", i, n, f.CrashedAt(), powerLoss)
			if i == 1 {
				// Nothing was created; reopening creates an empty journal.
				if w.attempted != 0 {
					t.Fatalf("%s: appends ran", where)
				}
			}
			checkRecovered(t, dir, w, where)
		}
	}
	t.Logf("%d crash points, each as process kill and power loss", n)
}

// TestCrashConcurrentAppenders crashes under concurrent appends, where the
// order of operations is not deterministic, at a spread of points.
func TestCrashConcurrentAppenders(t *testing.T) {
	for _, at := range []int{3, 6, 10, 15, 25, 40} {
		dir := t.TempDir()
		f := vfs.NewFault(vfs.OS)
		f.TornWrites(true)
		f.DropUnsynced(true)
		j, err := Open(dir, &Options{FS: f, SegmentSize: 300, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		f.CrashAfter(at)
		var mu sync.Mutex
		acked := map[uint64]string{}
		attempted := map[string]bool{}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					d := fmt.Sprintf("w%d-%d", w, i)
					mu.Lock()
					attempted[d] = true
					mu.Unlock()
					seq, err := j.Append(context.Background(), []byte(d))
					if err != nil {
						return
					}
					mu.Lock()
					acked[seq] = d
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		j.Close()
		if !f.Crashed() {
			t.Fatalf("crash point %d never reached", at)
		}
		j, err = Open(dir, &Options{Logger: discard})
		if err != nil {
			t.Fatalf("crash at %d: reopen: %v", at, err)
		}
		got := replayAll(t, j, 0)
		seen := map[uint64]string{}
		for i, e := range got {
			if e.seq != uint64(i+1) || !attempted[e.data] {
				t.Fatalf("crash at %d: entry %d = (%d, %q) was never appended", at, i, e.seq, e.data)
			}
			seen[e.seq] = e.data
		}
		for seq, d := range acked {
			if seen[seq] != d {
				t.Fatalf("crash at %d: acknowledged entry %d %q recovered as %q", at, seq, d, seen[seq])
			}
		}
		j.Close()
	}
}

package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/synkfs/synkfs/internal/syncbuf"
	"github.com/synkfs/synkfs/internal/vfs"
)

// entry is one replayed entry.
type entry struct {
	seq  uint64
	data string
}

func mustOpen(t *testing.T, dir string, opts *Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func mustAppend(t *testing.T, j *Journal, data string) uint64 {
	t.Helper()
	seq, err := j.Append(context.Background(), []byte(data))
	if err != nil {
		t.Fatalf("Append(%q): %v", data, err)
	}
	return seq
}

func replayAll(t *testing.T, j *Journal, after uint64) []entry {
	t.Helper()
	var got []entry
	err := j.Replay(after, func(seq uint64, data []byte) error {
		got = append(got, entry{seq, string(data)})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", after, err)
	}
	return got
}

// payload is the deterministic content of the entry with sequence seq in
// serial workloads.
func payload(seq uint64) string {
	return fmt.Sprintf("entry-%d-%s", seq, strings.Repeat("x", int(seq%37)))
}

func checkSerial(t *testing.T, got []entry, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from+1 {
		t.Fatalf("replayed %d entries, want %d (seq %d..%d)", len(got), to-from+1, from, to)
	}
	for i, e := range got {
		want := from + uint64(i)
		if e.seq != want || e.data != payload(want) {
			t.Fatalf("entry %d = (%d, %q), want (%d, %q)", i, e.seq, e.data, want, payload(want))
		}
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".wal") {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, nil)
	if j.LastSeq() != 0 {
		t.Fatalf("LastSeq of new journal = %d", j.LastSeq())
	}
	if got := replayAll(t, j, 0); len(got) != 0 {
		t.Fatalf("new journal replayed %v", got)
	}
	want := []string{"", "a", strings.Repeat("big", 100000), "\x00\xff"}
	for i, d := range want {
		if seq := mustAppend(t, j, d); seq != uint64(i+1) {
			t.Fatalf("Append #%d got seq %d", i, seq)
		}
	}
	if j.LastSeq() != uint64(len(want)) {
		t.Fatalf("LastSeq = %d", j.LastSeq())
	}
	got := replayAll(t, j, 0)
	if len(got) != len(want) {
		t.Fatalf("replayed %d entries, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.seq != uint64(i+1) || e.data != want[i] {
			t.Fatalf("entry %d = %d %.20q", i, e.seq, e.data)
		}
	}
	if names := segmentFiles(t, dir); !slices.Equal(names, []string{"00000000000000000001.wal"}) {
		t.Fatalf("segments %v", names)
	}
}

func TestSegmentRollingAndReplayAfter(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, &Options{SegmentSize: 300})
	const n = 60
	for i := uint64(1); i <= n; i++ {
		mustAppend(t, j, payload(i))
	}
	names := segmentFiles(t, dir)
	if len(names) < 5 {
		t.Fatalf("only %d segments for %d entries of SegmentSize 300", len(names), n)
	}
	// Each segment is named by its first entry and starts right after
	// the previous one ends; replay checks this, so replay every suffix.
	for _, after := range []uint64{0, 1, 7, 29, 59, 60, 100} {
		got := replayAll(t, j, after)
		if after >= n {
			if len(got) != 0 {
				t.Fatalf("Replay(%d) gave %d entries", after, len(got))
			}
			continue
		}
		checkSerial(t, got, after+1, n)
	}
	// Every segment but possibly the last is past the size bound.
	for _, name := range names[:len(names)-1] {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 300 {
			t.Fatalf("segment %s rolled at %d bytes", name, fi.Size())
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := mustOpen(t, dir, &Options{SegmentSize: 300})
	if j2.LastSeq() != n {
		t.Fatalf("LastSeq after reopen = %d", j2.LastSeq())
	}
	checkSerial(t, replayAll(t, j2, 0), 1, n)
}

func TestReopenAppend(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, nil)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, j, payload(i))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := j.Replay(0, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	j = mustOpen(t, dir, nil)
	if j.LastSeq() != 3 {
		t.Fatalf("LastSeq after reopen = %d", j.LastSeq())
	}
	for i := uint64(4); i <= 6; i++ {
		if seq := mustAppend(t, j, payload(i)); seq != i {
			t.Fatalf("seq %d, want %d", seq, i)
		}
	}
	checkSerial(t, replayAll(t, j, 0), 1, 6)
}

func TestCheckpoint(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{SegmentSize: 200}
	j := mustOpen(t, dir, opts)
	const n = 40
	for i := uint64(1); i <= n; i++ {
		mustAppend(t, j, payload(i))
	}
	before := segmentFiles(t, dir)
	var firsts []uint64
	for _, name := range before {
		seq, ok := parseSegmentName(name)
		if !ok {
			t.Fatalf("bad segment name %q", name)
		}
		firsts = append(firsts, seq)
	}
	if len(firsts) < 4 {
		t.Fatalf("want at least 4 segments, have %v", before)
	}
	// Checkpoint to the middle of the third segment: the first two go.
	upTo := firsts[2] + 1
	if err := j.Checkpoint(upTo); err != nil {
		t.Fatal(err)
	}
	if after := segmentFiles(t, dir); !slices.Equal(after, before[2:]) {
		t.Fatalf("after Checkpoint(%d): segments %v, want %v", upTo, after, before[2:])
	}
	checkSerial(t, replayAll(t, j, upTo), upTo+1, n)
	checkSerial(t, replayAll(t, j, firsts[2]-1), firsts[2], n)
	if err := j.Replay(0, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrCheckpointed) {
		t.Fatalf("Replay(0) after checkpoint: %v, want ErrCheckpointed", err)
	}
	// Checkpointing everything keeps the active segment, so the sequence
	// survives a reopen.
	if err := j.Checkpoint(n); err != nil {
		t.Fatal(err)
	}
	if after := segmentFiles(t, dir); !slices.Equal(after, before[len(before)-1:]) {
		t.Fatalf("after Checkpoint(%d): segments %v", n, after)
	}
	j.Close()
	j = mustOpen(t, dir, opts)
	if j.LastSeq() != n {
		t.Fatalf("LastSeq after reopen = %d", j.LastSeq())
	}
	if seq := mustAppend(t, j, payload(n+1)); seq != n+1 {
		t.Fatalf("seq after reopen %d", seq)
	}
	checkSerial(t, replayAll(t, j, n-1), n, n+1)
}

func TestConcurrentAppenders(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, &Options{SegmentSize: 16 << 10})
	const workers, each = 16, 40
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				d := fmt.Sprintf("w%d-i%d", w, i)
				seq, err := j.Append(context.Background(), []byte(d))
				if err != nil {
					t.Error(err)
					return
				}
				// Durable means at least as far as LastSeq says.
				if last := j.LastSeq(); last < seq {
					t.Errorf("LastSeq %d < acknowledged %d", last, seq)
				}
				mu.Lock()
				if prev, dup := acked[seq]; dup {
					t.Errorf("seq %d given to %q and %q", seq, prev, d)
				}
				acked[seq] = d
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	total := workers * each
	if len(acked) != total || j.LastSeq() != uint64(total) {
		t.Fatalf("%d acknowledged, LastSeq %d, want %d", len(acked), j.LastSeq(), total)
	}
	if b := j.nbatches.Load(); b >= int64(total) {
		t.Errorf("%d groups for %d concurrent appends: no group commit", b, total)
	} else {
		t.Logf("%d appends in %d groups, %d fsyncs", total, b, j.nsyncs.Load())
	}
	j.Close()
	j = mustOpen(t, dir, nil)
	got := replayAll(t, j, 0)
	if len(got) != total {
		t.Fatalf("replayed %d, want %d", len(got), total)
	}
	for i, e := range got {
		if e.seq != uint64(i+1) || acked[e.seq] != e.data {
			t.Fatalf("entry %d: (%d, %q), acknowledged %q", i, e.seq, e.data, acked[e.seq])
		}
	}
}

// logBuffer captures slog output.
func logBuffer() (*slog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// writeSerial creates a journal in dir holding entries 1..n and returns
// the byte offset at which each entry's frame starts in the single segment.
func writeSerial(t *testing.T, dir string, n uint64) (path string, offsets []int64) {
	t.Helper()
	j := mustOpen(t, dir, nil)
	off := int64(HeaderSize)
	for i := uint64(1); i <= n; i++ {
		offsets = append(offsets, off)
		mustAppend(t, j, payload(i))
		off += FrameHeaderSize + int64(len(payload(i)))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, segmentName(1)), offsets
}

func TestTornTailTruncated(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, last int64, size int64)
	}{
		{"partial frame header", func(t *testing.T, path string, last, size int64) {
			os.Truncate(path, last+5)
		}},
		{"partial payload", func(t *testing.T, path string, last, size int64) {
			os.Truncate(path, size-3)
		}},
		{"checksum of final entry", func(t *testing.T, path string, last, size int64) {
			flipByte(t, path, size-1)
		}},
		{"zero-filled tail", func(t *testing.T, path string, last, size int64) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 4096), last); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, offsets := writeSerial(t, dir, 5)
			fi, _ := os.Stat(path)
			last := offsets[4]
			tc.damage(t, path, last, fi.Size())
			fi, _ = os.Stat(path)
			dropped := fi.Size() - last

			logger, logs := logBuffer()
			j := mustOpen(t, dir, &Options{Logger: logger})
			out := logs.String()
			for _, want := range []string{"level=WARN", "torn tail", "file=" + path, fmt.Sprintf("offset=%d", last), fmt.Sprintf("bytes_dropped=%d", dropped)} {
				if !strings.Contains(out, want) {
					t.Fatalf("log %q lacks %q", out, want)
				}
			}
			if j.LastSeq() != 4 {
				t.Fatalf("LastSeq = %d, want 4", j.LastSeq())
			}
			if fi, _ := os.Stat(path); fi.Size() != last {
				t.Fatalf("segment size %d after repair, want %d", fi.Size(), last)
			}
			checkSerial(t, replayAll(t, j, 0), 1, 4)
			if seq := mustAppend(t, j, payload(5)); seq != 5 {
				t.Fatalf("seq after repair %d", seq)
			}
			j.Close()
			j = mustOpen(t, dir, &Options{Logger: logger})
			checkSerial(t, replayAll(t, j, 0), 1, 5)
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMidSegmentCorruption(t *testing.T) {
	t.Run("bad checksum in last segment", func(t *testing.T) {
		dir := t.TempDir()
		path, offsets := writeSerial(t, dir, 5)
		flipByte(t, path, offsets[1]+FrameHeaderSize+2)
		_, err := Open(dir, nil)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != path || ce.Offset != offsets[1] || !errors.Is(err, ErrChecksum) {
			t.Fatalf("Open: %v; want CorruptError at %s:%d", err, path, offsets[1])
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprint(offsets[1])) {
			t.Fatalf("error %q does not name file and offset", err)
		}
	})
	t.Run("bad length in last segment", func(t *testing.T) {
		dir := t.TempDir()
		path, offsets := writeSerial(t, dir, 5)
		flipByte(t, path, offsets[2]+3) // high byte of the length
		_, err := Open(dir, nil)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Offset != offsets[2] {
			t.Fatalf("Open: %v; want CorruptError at %d", err, offsets[2])
		}
	})
	t.Run("sequence gap", func(t *testing.T) {
		dir := t.TempDir()
		b := appendHeader(nil, 1)
		b = appendEntry(b, 1, []byte("one"))
		gapAt := int64(len(b))
		b = appendEntry(b, 3, []byte("three"))
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, nil)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != path || ce.Offset != gapAt || !strings.Contains(ce.Reason, "sequence 3") {
			t.Fatalf("Open: %v; want sequence CorruptError at %d", err, gapAt)
		}
	})
	t.Run("damage in sealed segment found by Replay", func(t *testing.T) {
		dir := t.TempDir()
		j := mustOpen(t, dir, &Options{SegmentSize: 200})
		for i := uint64(1); i <= 30; i++ {
			mustAppend(t, j, payload(i))
		}
		j.Close()
		first := filepath.Join(dir, segmentName(1))
		off := int64(HeaderSize + FrameHeaderSize + len(payload(1)))
		flipByte(t, first, off+FrameHeaderSize) // payload of entry 2
		j = mustOpen(t, dir, &Options{SegmentSize: 200})
		var ce *CorruptError
		err := j.Replay(0, func(uint64, []byte) error { return nil })
		if !errors.As(err, &ce) || ce.File != first || ce.Offset != off {
			t.Fatalf("Replay: %v; want CorruptError at %s:%d", err, first, off)
		}
		// A replay that starts past the damaged segment is unaffected.
		got := replayAll(t, j, 29)
		checkSerial(t, got, 30, 30)
	})
	t.Run("bad header in sealed segment", func(t *testing.T) {
		dir := t.TempDir()
		j := mustOpen(t, dir, &Options{SegmentSize: 100})
		for i := uint64(1); i <= 10; i++ {
			mustAppend(t, j, payload(i))
		}
		j.Close()
		first := filepath.Join(dir, segmentName(1))
		flipByte(t, first, 0)
		_, err := Open(dir, nil)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != first || !errors.Is(err, ErrBadMagic) {
			t.Fatalf("Open: %v; want bad magic CorruptError", err)
		}
	})
}

func TestTornSegmentHeaderRewritten(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, &Options{SegmentSize: 100})
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, j, payload(i))
	}
	j.Close()
	// Simulate a crash while creating the segment for entry 11.
	path := filepath.Join(dir, segmentName(11))
	if err := os.WriteFile(path, appendHeader(nil, 11)[:7], 0o644); err != nil {
		t.Fatal(err)
	}
	logger, logs := logBuffer()
	j = mustOpen(t, dir, &Options{SegmentSize: 100, Logger: logger})
	if !strings.Contains(logs.String(), "file="+path) {
		t.Fatalf("no warning naming %s: %q", path, logs.String())
	}
	if j.LastSeq() != 10 {
		t.Fatalf("LastSeq = %d", j.LastSeq())
	}
	if seq := mustAppend(t, j, payload(11)); seq != 11 {
		t.Fatalf("seq %d", seq)
	}
	checkSerial(t, replayAll(t, j, 0), 1, 11)
}

func TestStickyErrorOnSyncFailure(t *testing.T) {
	dir := t.TempDir()
	fault := vfs.NewFault(vfs.OS)
	logger, _ := logBuffer()
	j := mustOpen(t, dir, &Options{FS: fault, Logger: logger})
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, j, payload(i))
	}
	fault.FailWith(vfs.OpSync, syscall.EIO)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if seq, err := j.Append(context.Background(), []byte("doomed")); !errors.Is(err, syscall.EIO) {
				t.Errorf("Append during EIO = %d, %v; want EIO", seq, err)
			}
		}()
	}
	wg.Wait()
	// The disk recovers, but the journal does not pretend it did.
	fault.FailWith(vfs.OpSync, nil)
	if _, err := j.Append(context.Background(), []byte("later")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append after failure: %v; want the sticky EIO", err)
	}
	if j.LastSeq() != 3 {
		t.Fatalf("LastSeq = %d, want 3", j.LastSeq())
	}
	j.Close()
	// What was acknowledged is there. (The unsynced "doomed" entries
	// did reach the page cache, so a reopen may see them; they were
	// never acknowledged, and that is allowed.)
	j = mustOpen(t, dir, nil)
	got := replayAll(t, j, 0)
	checkSerial(t, got[:3], 1, 3)
	for _, e := range got[3:] {
		if e.data != "doomed" {
			t.Fatalf("unexpected entry %v", e)
		}
	}
}

func TestWriteFailureENOSPC(t *testing.T) {
	dir := t.TempDir()
	fault := vfs.NewFault(vfs.OS)
	logger, _ := logBuffer()
	j := mustOpen(t, dir, &Options{FS: fault, Logger: logger})
	mustAppend(t, j, payload(1))
	fault.FailWith(vfs.OpWrite, syscall.ENOSPC)
	if _, err := j.Append(context.Background(), []byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append: %v; want ENOSPC", err)
	}
	fault.FailWith(vfs.OpWrite, nil)
	if _, err := j.Append(context.Background(), []byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append after failure: %v; want sticky ENOSPC", err)
	}
	j.Close()
	j = mustOpen(t, dir, nil)
	checkSerial(t, replayAll(t, j, 0), 1, 1)
}

func TestAppendContext(t *testing.T) {
	j := mustOpen(t, t.TempDir(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with canceled ctx: %v", err)
	}
	if j.LastSeq() != 0 || len(replayAll(t, j, 0)) != 0 {
		t.Fatal("canceled Append wrote an entry")
	}
}

func TestParseSegmentName(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  uint64
		ok   bool
	}{
		{"00000000000000000001.wal", 1, true},
		{"18446744073709551615.wal", 1<<64 - 1, true},
		{"00000000000000000000.wal", 0, false},
		{"0000000000000000001.wal", 0, false},
		{"+0000000000000000001.wal", 0, false},
		{"00000000000000000001.wal.tmp", 0, false},
		{"99999999999999999999.wal", 0, false},
	} {
		seq, ok := parseSegmentName(tc.name)
		if seq != tc.seq || ok != tc.ok {
			t.Errorf("parseSegmentName(%q) = %d, %v", tc.name, seq, ok)
		}
	}
}

// TestReplayAndCheckpointDuringAppends runs replays and checkpoints while
// appends roll segments: every replay sees a gap-free run of entries that
// covers at least what was durable when it started.
func TestReplayAndCheckpointDuringAppends(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, &Options{SegmentSize: 256})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := j.Append(context.Background(), []byte("some entry payload")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for round := range 30 {
		applied := j.LastSeq() / 2
		if err := j.Checkpoint(applied); err != nil {
			t.Fatal(err)
		}
		before := j.LastSeq()
		next := applied + 1
		err := j.Replay(applied, func(seq uint64, data []byte) error {
			if seq != next {
				return fmt.Errorf("round %d: seq %d, want %d", round, seq, next)
			}
			next++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if next-1 < before {
			t.Fatalf("round %d: replay ended at %d, but %d was durable before it began", round, next-1, before)
		}
	}
	close(stop)
	wg.Wait()
}

// TestCloseWithAppendsInFlight closes while appends are running: each
// either fails with ErrClosed or is durable after reopening.
func TestCloseWithAppendsInFlight(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				d := fmt.Sprintf("w%d-%d", w, i)
				seq, err := j.Append(context.Background(), []byte(d))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[seq] = d
				mu.Unlock()
			}
		}()
	}
	for j.LastSeq() < 50 {
		runtime.Gosched()
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	j = mustOpen(t, dir, nil)
	got := replayAll(t, j, 0)
	if len(got) != len(acked) {
		t.Fatalf("replayed %d entries, %d were acknowledged", len(got), len(acked))
	}
	for _, e := range got {
		if acked[e.seq] != e.data {
			t.Fatalf("entry %d = %q, acknowledged %q", e.seq, e.data, acked[e.seq])
		}
	}
}

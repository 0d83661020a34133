package journal

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/synkfs/synkfs/internal/vfs"
)

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// ErrClosed is returned by calls on a closed Journal.
var ErrClosed = errors.New("journal closed")

// ErrCheckpointed is returned by Replay when entries it was asked for have
// already been dropped by Checkpoint.
var ErrCheckpointed = errors.New("journal entries already checkpointed")

// Options configure Open. The zero value and nil both work.
type Options struct {
	// FS is the file system the journal lives on; nil means vfs.OS.
	FS vfs.FS
	// SegmentSize is the size past which the journal starts a new segment
	// file; 0 means DefaultSegmentSize. A group of entries is never split,
	// so a segment may exceed it by one group.
	SegmentSize int64
	// Logger receives recovery warnings; nil means slog.Default().
	Logger *slog.Logger
	// NoSync skips every fsync. Entries are then not durable on return
	// from Append. For tests and benchmarks only.
	NoSync bool
}

// CorruptError reports damage in a segment file that cannot be a torn
// final write.
type CorruptError struct {
	File   string // path of the segment file
	Offset int64  // byte offset of the damaged header or frame
	Reason string
	Err    error // underlying format error, if any
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal: corrupt segment %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// segment is one segment file.
type segment struct {
	first uint64 // sequence number of its first entry
	path  string
}

// Journal is an open journal directory. Its methods are safe for
// concurrent use. Only one Journal may have a directory open at a time.
type Journal struct {
	dir     string
	fs      vfs.FS
	segSize int64
	log     *slog.Logger
	noSync  bool

	// Handing requests to the writer. Append holds sendMu shared while
	// it sends; Close takes it exclusively to set closed, after which no
	// send can be in flight and the writer may drain reqs and exit.
	sendMu sync.RWMutex
	closed bool
	reqs   chan *request
	stop   chan struct{}
	done   chan struct{}

	// ckMu orders Replay (shared) against Checkpoint (exclusive), so a
	// replay never finds a segment file removed under it.
	ckMu sync.RWMutex

	mu      sync.Mutex
	segs    []segment // sorted by first; the last is the active one
	durable int64     // bytes of the active segment known durable
	err     error     // sticky write error

	last atomic.Uint64 // last durable sequence number

	// Owned by the writer goroutine (and by Open before it starts).
	f    vfs.File // active segment, nil before the first segment exists
	size int64    // bytes written to f
	next uint64   // sequence number of the next entry
	buf  []byte
	cerr error // error closing f, for Close

	// Counters for tests and benchmarks.
	nsyncs   atomic.Int64
	nbatches atomic.Int64
}

// Open opens the journal in dir, creating the directory if needed. It
// validates every segment header, reads the last segment in full,
// truncating a torn tail (with a warning) and reporting other damage as a
// *CorruptError. It starts the journal's writer goroutine; Close stops it.
func Open(dir string, opts *Options) (*Journal, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	j := &Journal{
		dir:     dir,
		fs:      o.FS,
		segSize: o.SegmentSize,
		log:     o.Logger,
		noSync:  o.NoSync,
		reqs:    make(chan *request, 256),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		next:    1,
	}
	if err := j.load(); err != nil {
		if j.f != nil {
			j.f.Close()
		}
		return nil, err
	}
	j.last.Store(j.next - 1)
	go j.run()
	return j, nil
}

// segmentName is the file name of the segment whose first entry is seq.
func segmentName(seq uint64) string {
	return fmt.Sprintf("%020d.wal", seq)
}

// parseSegmentName is the inverse of segmentName.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || seq == 0 || segmentName(seq) != name {
		return 0, false
	}
	return seq, true
}

// load finds the segments, checks their headers and recovers the last.
func (j *Journal) load() error {
	if _, err := j.fs.Stat(j.dir); errors.Is(err, fs.ErrNotExist) {
		if err := j.fs.MkdirAll(j.dir, 0o755); err != nil {
			return fmt.Errorf("journal: create directory: %w", err)
		}
		if err := j.syncDir(filepath.Dir(j.dir)); err != nil {
			return fmt.Errorf("journal: create directory: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	entries, err := j.fs.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("journal: list segments: %w", err)
	}
	for _, e := range entries {
		if seq, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			j.segs = append(j.segs, segment{first: seq, path: filepath.Join(j.dir, e.Name())})
		}
	}
	slices.SortFunc(j.segs, func(a, b segment) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	if len(j.segs) == 0 {
		return nil
	}
	for _, s := range j.segs[:len(j.segs)-1] {
		if err := j.checkHeader(s); err != nil {
			return err
		}
	}
	return j.recoverActive(j.segs[len(j.segs)-1])
}

// checkHeader validates the header of a sealed segment.
func (j *Journal) checkHeader(s segment) error {
	f, err := j.fs.OpenFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("journal: open segment: %w", err)
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return &CorruptError{File: s.path, Reason: "header: " + err.Error(), Err: err}
	}
	if h.FirstSeq != s.first {
		return &CorruptError{File: s.path, Reason: fmt.Sprintf("header says first sequence %d, file name says %d", h.FirstSeq, s.first)}
	}
	return nil
}

// recoverActive opens the last segment for appending after reading it in
// full: it repairs a header torn while the segment was being created,
// truncates a torn tail, and fails on any other damage.
func (j *Journal) recoverActive(s segment) error {
	f, err := j.fs.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("journal: open segment: %w", err)
	}
	j.f = f
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("journal: stat segment: %w", err)
	}
	size := fi.Size()
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10)
	h, err := readHeader(br)
	if err != nil {
		zero, zerr := allZero(f, 0, size)
		if zerr != nil {
			return fmt.Errorf("journal: read segment: %w", zerr)
		}
		if size > HeaderSize && !zero {
			return &CorruptError{File: s.path, Reason: "header: " + err.Error(), Err: err}
		}
		// The segment was being created when the process stopped: no
		// entry was ever written to it. Rewrite its header.
		j.log.Warn("journal: rewriting torn segment header", "file", s.path, "bytes_dropped", size)
		if err := j.truncate(0); err != nil {
			return err
		}
		if _, err := f.Write(appendHeader(nil, s.first)); err != nil {
			return fmt.Errorf("journal: rewrite segment header: %w", err)
		}
		if err := j.syncFile(); err != nil {
			return fmt.Errorf("journal: rewrite segment header: %w", err)
		}
		j.size, j.durable, j.next = HeaderSize, HeaderSize, s.first
		return nil
	}
	if h.FirstSeq != s.first {
		return &CorruptError{File: s.path, Reason: fmt.Sprintf("header says first sequence %d, file name says %d", h.FirstSeq, s.first)}
	}
	d := newDecoder(br, HeaderSize)
	expect := s.first
	for {
		start := d.off
		seq, _, err := d.next()
		if err == io.EOF {
			break
		}
		if err == nil {
			if seq != expect {
				return &CorruptError{File: s.path, Offset: start, Reason: fmt.Sprintf("sequence %d where %d was expected", seq, expect)}
			}
			expect++
			continue
		}
		var torn bool
		switch {
		case errors.Is(err, ErrTruncated):
			// A torn write keeps a prefix of the real bytes, so a
			// complete frame header must carry the expected sequence.
			torn = d.badLen < 0 || binary.LittleEndian.Uint64(d.hdr[8:]) == expect
		case errors.Is(err, ErrChecksum):
			torn = start+FrameHeaderSize+d.badLen == size
		case errors.Is(err, ErrTooLarge):
		default:
			return fmt.Errorf("journal: read segment %s: %w", s.path, err)
		}
		if !torn {
			zero, zerr := allZero(f, start, size)
			if zerr != nil {
				return fmt.Errorf("journal: read segment %s: %w", s.path, zerr)
			}
			torn = zero
		}
		if !torn {
			return &CorruptError{File: s.path, Offset: start, Reason: err.Error() + " before the end of the segment", Err: err}
		}
		j.log.Warn("journal: truncating torn tail", "file", s.path, "offset", start, "bytes_dropped", size-start, "reason", err.Error())
		if err := j.truncate(start); err != nil {
			return err
		}
		size = start
		break
	}
	j.size, j.durable, j.next = size, size, expect
	return nil
}

func (j *Journal) truncate(size int64) error {
	if err := j.f.Truncate(size); err != nil {
		return fmt.Errorf("journal: truncate torn tail: %w", err)
	}
	if err := j.syncFile(); err != nil {
		return fmt.Errorf("journal: truncate torn tail: %w", err)
	}
	return nil
}

// allZero reports whether f holds only zero bytes in [from, to).
func allZero(f vfs.File, from, to int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for from < to {
		n := int(min(int64(len(buf)), to-from))
		k, err := f.ReadAt(buf[:n], from)
		for _, c := range buf[:k] {
			if c != 0 {
				return false, nil
			}
		}
		from += int64(k)
		if err != nil {
			if err == io.EOF {
				return true, nil
			}
			return false, err
		}
	}
	return true, nil
}

func (j *Journal) syncFile() error {
	if j.noSync {
		return nil
	}
	j.nsyncs.Add(1)
	return j.f.Sync()
}

func (j *Journal) syncDir(dir string) error {
	if j.noSync {
		return nil
	}
	return j.fs.SyncDir(dir)
}

// LastSeq returns the sequence number of the last durable entry, 0 if
// the journal has never held one.
func (j *Journal) LastSeq() uint64 { return j.last.Load() }

// Replay calls fn, in order, for every entry with a sequence number
// greater than after that was durable when Replay started. fn may keep
// data. An error from fn stops the replay and is returned as is. Damage
// is returned as a *CorruptError. If entries after `after` were already
// dropped by Checkpoint, Replay returns an error wrapping ErrCheckpointed
// without calling fn. fn must not call Checkpoint or Close.
func (j *Journal) Replay(after uint64, fn func(seq uint64, data []byte) error) error {
	j.ckMu.RLock()
	defer j.ckMu.RUnlock()
	j.mu.Lock()
	segs := slices.Clone(j.segs)
	durable := j.durable
	j.mu.Unlock()
	if j.isClosed() {
		return ErrClosed
	}
	if len(segs) == 0 {
		return nil
	}
	if after+1 < segs[0].first {
		return fmt.Errorf("journal: replay after %d: first kept entry is %d: %w", after, segs[0].first, ErrCheckpointed)
	}
	i := 0
	for i+1 < len(segs) && segs[i+1].first <= after+1 {
		i++
	}
	expect := segs[i].first
	for ; i < len(segs); i++ {
		limit := int64(-1)
		if i == len(segs)-1 {
			limit = durable
		}
		var err error
		expect, err = j.replaySegment(segs[i], expect, limit, after, fn)
		if err != nil {
			return err
		}
	}
	return nil
}

// replaySegment replays one segment, reading at most limit bytes (all of
// it if limit < 0). It returns the sequence number expected next.
func (j *Journal) replaySegment(s segment, expect uint64, limit int64, after uint64, fn func(uint64, []byte) error) (uint64, error) {
	if s.first != expect {
		return 0, &CorruptError{File: s.path, Reason: fmt.Sprintf("segment starts at sequence %d where %d was expected", s.first, expect)}
	}
	f, err := j.fs.OpenFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("journal: open segment: %w", err)
	}
	defer f.Close()
	if limit < 0 {
		fi, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("journal: stat segment: %w", err)
		}
		limit = fi.Size()
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, limit), 64<<10)
	h, err := readHeader(br)
	if err != nil {
		return 0, &CorruptError{File: s.path, Reason: "header: " + err.Error(), Err: err}
	}
	if h.FirstSeq != s.first {
		return 0, &CorruptError{File: s.path, Reason: fmt.Sprintf("header says first sequence %d, file name says %d", h.FirstSeq, s.first)}
	}
	d := newDecoder(br, HeaderSize)
	for {
		start := d.off
		seq, data, err := d.next()
		if err == io.EOF {
			return expect, nil
		}
		if errors.Is(err, ErrTruncated) || errors.Is(err, ErrChecksum) || errors.Is(err, ErrTooLarge) {
			return 0, &CorruptError{File: s.path, Offset: start, Reason: err.Error(), Err: err}
		}
		if err != nil {
			return 0, fmt.Errorf("journal: read segment %s: %w", s.path, err)
		}
		if seq != expect {
			return 0, &CorruptError{File: s.path, Offset: start, Reason: fmt.Sprintf("sequence %d where %d was expected", seq, expect)}
		}
		expect++
		if seq > after {
			if err := fn(seq, data); err != nil {
				return 0, err
			}
		}
	}
}

// Checkpoint tells the journal that every entry with a sequence number up
// to upTo has been applied durably elsewhere. It removes each segment all
// of whose entries are <= upTo, oldest first, then syncs the directory.
// The active (last) segment is always kept, so LastSeq survives a reopen.
// It waits for running Replays.
func (j *Journal) Checkpoint(upTo uint64) error {
	j.ckMu.Lock()
	defer j.ckMu.Unlock()
	if j.isClosed() {
		return ErrClosed
	}
	j.mu.Lock()
	var drop []segment
	for i := 0; i+1 < len(j.segs) && j.segs[i+1].first-1 <= upTo; i++ {
		drop = append(drop, j.segs[i])
	}
	j.mu.Unlock()
	if len(drop) == 0 {
		return nil
	}
	removed := 0
	var err error
	for _, s := range drop {
		if err = j.fs.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("journal: checkpoint: %w", err)
			break
		}
		err = nil
		removed++
	}
	// Only this method shrinks segs, from the front, under ckMu; the
	// writer only appends. So the first `removed` are still those.
	j.mu.Lock()
	j.segs = slices.Delete(j.segs, 0, removed)
	j.mu.Unlock()
	if err != nil {
		return err
	}
	if err := j.syncDir(j.dir); err != nil {
		return fmt.Errorf("journal: checkpoint: %w", err)
	}
	return nil
}

func (j *Journal) isClosed() bool {
	j.sendMu.RLock()
	defer j.sendMu.RUnlock()
	return j.closed
}

// Close waits for appends already handed to the writer to be committed,
// stops the writer and closes the active segment. Later calls return
// ErrClosed, except Close, which returns nil.
func (j *Journal) Close() error {
	j.sendMu.Lock()
	if j.closed {
		j.sendMu.Unlock()
		return nil
	}
	j.closed = true
	j.sendMu.Unlock()
	close(j.stop)
	<-j.done
	return j.cerr
}

// Append adds data as the next entry and returns its sequence number once
// the entry is durable. Concurrent calls are committed in groups, one
// fsync per group. After a write or fsync failure Append fails for good
// with that error. If ctx ends before the entry is handed to the writer,
// Append returns ctx.Err() and nothing is written; if it ends later,
// Append returns ctx.Err() but the entry may still become durable (a
// Replay will show it).
func (j *Journal) Append(ctx context.Context, data []byte) (uint64, error) {
	if len(data) > MaxEntrySize {
		return 0, fmt.Errorf("journal: append %d bytes: %w", len(data), ErrTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r := &request{frame: newFrame(data), done: make(chan struct{})}
	j.sendMu.RLock()
	if j.closed {
		j.sendMu.RUnlock()
		return 0, ErrClosed
	}
	if err := j.stickyErr(); err != nil {
		j.sendMu.RUnlock()
		return 0, err
	}
	select {
	case j.reqs <- r:
		j.sendMu.RUnlock()
	case <-ctx.Done():
		j.sendMu.RUnlock()
		return 0, ctx.Err()
	}
	select {
	case <-r.done:
		return r.seq, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (j *Journal) stickyErr() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

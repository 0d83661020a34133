package journal

import (
	"fmt"
	"os"
	"path/filepath"
)

// Limits on one commit group.
const (
	maxGroupEntries = 4096
	maxGroupBytes   = 8 << 20
)

// request is one Append waiting for its group to commit.
type request struct {
	frame frame
	seq   uint64
	err   error
	done  chan struct{} // closed once seq or err is set
}

// run is the writer goroutine: it gathers waiting requests into a group,
// commits the group with one write and one fsync, and answers every
// request in it. On stop it commits what was already handed over, closes
// the active segment and returns.
func (j *Journal) run() {
	defer close(j.done)
	group := make([]*request, 0, 64)
	for {
		var r *request
		select {
		case r = <-j.reqs:
		case <-j.stop:
			for {
				group = j.gather(group[:0], nil)
				if len(group) == 0 {
					break
				}
				j.commit(group)
			}
			if j.f != nil {
				j.cerr = j.f.Close()
				j.f = nil
			}
			return
		}
		group = j.gather(group[:0], r)
		j.commit(group)
	}
}

// gather collects first (if not nil) and whatever else is waiting, up to
// the group limits, without blocking.
func (j *Journal) gather(group []*request, first *request) []*request {
	n := 0
	if first != nil {
		group = append(group, first)
		n = len(first.frame)
	}
	for len(group) < maxGroupEntries && n < maxGroupBytes {
		select {
		case r := <-j.reqs:
			group = append(group, r)
			n += len(r.frame)
		default:
			return group
		}
	}
	return group
}

// commit writes and syncs one group and answers its requests.
func (j *Journal) commit(group []*request) {
	err := j.stickyErr()
	if err == nil {
		err = j.commitGroup(group)
		if err != nil {
			j.mu.Lock()
			j.err = err
			j.mu.Unlock()
			j.log.Error("journal: append failed; refusing further appends", "err", err)
		}
	}
	for _, r := range group {
		r.err = err
		close(r.done)
	}
}

func (j *Journal) commitGroup(group []*request) error {
	if j.f == nil || j.size >= j.segSize {
		if err := j.roll(); err != nil {
			return err
		}
	}
	j.buf = j.buf[:0]
	for _, r := range group {
		r.seq = j.next
		j.next++
		r.frame.seal(r.seq)
		j.buf = append(j.buf, r.frame...)
	}
	if _, err := j.f.Write(j.buf); err != nil {
		return fmt.Errorf("journal: append to %s: %w", j.f.Name(), err)
	}
	if err := j.syncFile(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.f.Name(), err)
	}
	j.nbatches.Add(1)
	j.size += int64(len(j.buf))
	j.mu.Lock()
	j.durable = j.size
	j.mu.Unlock()
	j.last.Store(j.next - 1)
	if cap(j.buf) > 2*maxGroupBytes {
		j.buf = nil
	}
	return nil
}

// roll starts a new segment whose first entry will be j.next: create the
// file, write and sync its header, sync the directory, and only then
// switch to it.
func (j *Journal) roll() error {
	path := filepath.Join(j.dir, segmentName(j.next))
	f, err := j.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("journal: new segment: %w", err)
	}
	if _, err := f.Write(appendHeader(nil, j.next)); err != nil {
		f.Close()
		return fmt.Errorf("journal: new segment %s: %w", path, err)
	}
	if !j.noSync {
		j.nsyncs.Add(1)
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("journal: new segment %s: %w", path, err)
		}
	}
	if err := j.syncDir(j.dir); err != nil {
		f.Close()
		return fmt.Errorf("journal: new segment %s: %w", path, err)
	}
	if j.f != nil {
		if err := j.f.Close(); err != nil {
			f.Close()
			return fmt.Errorf("journal: close segment: %w", err)
		}
	}
	j.f, j.size = f, HeaderSize
	j.mu.Lock()
	j.segs = append(j.segs, segment{first: j.next, path: path})
	j.durable = HeaderSize
	j.mu.Unlock()
	return nil
}

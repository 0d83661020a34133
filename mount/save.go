package mount

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/synkfs/synkfs/fsstore"
)

// saver saves written record files once they are quiet, and drops the
// copies that reads loaded. The kernel tells the mount nothing of closes
// (see the package comment), so a file's writes are saved as one Put when
// no write or truncation reached it for the save delay and no process
// holds it open for writing; an fsync saves at once, and Unmount saves
// everything left.
//
// Lock order: a file's mu may be held when calling touch; the saver never
// holds its own mu while it calls into a file.
type saver struct {
	srv   *Server
	delay time.Duration

	mu   sync.Mutex
	last map[*file]time.Time // touched and not settled yet

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newSaver(s *Server, delay time.Duration) *saver {
	return &saver{
		srv: s, delay: delay, last: map[*file]time.Time{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// touch records that f was written, truncated or loaded just now.
func (sv *saver) touch(f *file) {
	sv.mu.Lock()
	_, had := sv.last[f]
	sv.last[f] = time.Now()
	sv.mu.Unlock()
	if !had {
		select {
		case sv.wake <- struct{}{}:
		default:
		}
	}
}

// expedite makes f due at once: the kernel forgot its inode, so no
// process has it open, and a later lookup of its name would not find the
// buffered writes.
func (sv *saver) expedite(f *file) {
	sv.mu.Lock()
	if _, ok := sv.last[f]; ok {
		sv.last[f] = time.Time{} // long before any delay
	}
	sv.mu.Unlock()
	select {
	case sv.wake <- struct{}{}:
	default:
	}
}

// run settles files as they become quiet until stop is closed.
func (sv *saver) run() {
	defer close(sv.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		sv.mu.Lock()
		var next time.Time
		have := false
		for _, t := range sv.last {
			if !have || t.Before(next) {
				next, have = t, true
			}
		}
		sv.mu.Unlock()
		wait := time.Hour
		if have {
			// A little slack lets the files of a burst settle in one
			// pass, with one look at /proc.
			wait = max(time.Until(next.Add(sv.delay+sv.delay/8)), 0)
		}
		timer.Reset(wait)
		select {
		case <-sv.stop:
			return
		case <-sv.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			continue
		case <-timer.C:
		}
		sv.settle(false)
	}
}

// close stops the goroutine; call settle(true) after it to save the rest.
func (sv *saver) close() {
	close(sv.stop)
	<-sv.done
}

// settle saves the files quiet for the delay, or every touched file when
// all is true, and drops the clean copies among them.
func (sv *saver) settle(all bool) {
	now := time.Now()
	sv.mu.Lock()
	due := map[*file]time.Time{}
	for f, t := range sv.last {
		if all || now.Sub(t) >= sv.delay {
			due[f] = t
		}
	}
	sv.mu.Unlock()
	if len(due) == 0 {
		return
	}
	var busy map[uint64]bool
	if !all {
		want := map[uint64]bool{}
		for f := range due {
			if f.pending() {
				if ino := f.ino(); ino != 0 {
					want[ino] = true
				}
			}
		}
		if len(want) > 0 {
			busy = openForWrite(sv.srv.mountpoint, want)
		}
	}
	ctx := context.Background()
	for f, t := range due {
		held := busy[f.ino()] // f.mu, never under sv.mu
		sv.mu.Lock()
		if cur, ok := sv.last[f]; !ok || !cur.Equal(t) {
			sv.mu.Unlock()
			continue // touched again meanwhile: not quiet
		}
		if held {
			// Still open for writing: look again after another delay.
			sv.last[f] = now
			sv.mu.Unlock()
			continue
		}
		sv.mu.Unlock()
		// The entry stays while the save runs, so that Unsaved never
		// misses a save in progress.
		f.settle(ctx)
		sv.mu.Lock()
		if cur, ok := sv.last[f]; ok && cur.Equal(t) {
			delete(sv.last, f)
		}
		sv.mu.Unlock()
	}
}

// unsaved returns the mount paths of the record files whose writes are
// not saved yet, sorted.
func (sv *saver) unsaved() []string {
	sv.mu.Lock()
	files := make([]*file, 0, len(sv.last))
	for f := range sv.last {
		files = append(files, f)
	}
	sv.mu.Unlock()
	var out []string
	for _, f := range files {
		f.mu.Lock()
		if f.rec && f.dirty {
			out = append(out, fsstore.EscapeName(f.dir.typ)+"/"+f.name)
		}
		f.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// pending reports whether f is a record file with writes not saved.
func (f *file) pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec && f.dirty
}

// openForWrite returns which of the inode numbers inos some process holds
// open for writing under mountpoint, as far as /proc shows: processes the
// mount cannot see (another PID namespace) are not found, and their files
// are saved after the delay alone. Only names (readlink) and fdinfo are
// read, never the files, so the mount is never called into.
func openForWrite(mountpoint string, inos map[uint64]bool) map[uint64]bool {
	busy := map[uint64]bool{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return busy
	}
	prefix := mountpoint + "/"
	for _, p := range procs {
		pid := p.Name()
		if pid == "" || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		fdDir := "/proc/" + pid + "/fd/"
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(fdDir + fd.Name())
			if err != nil || !strings.HasPrefix(target, prefix) {
				continue
			}
			info, err := os.ReadFile("/proc/" + pid + "/fdinfo/" + fd.Name())
			if err != nil {
				continue
			}
			flags, ino, ok := parseFdinfo(info)
			if ok && inos[ino] && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
				busy[ino] = true
			}
		}
	}
	return busy
}

// parseFdinfo reads the open flags (octal) and the inode number from the
// text of /proc/PID/fdinfo/FD; ok is false, and the numbers 0, unless both
// are there and well-formed.
func parseFdinfo(info []byte) (flags int, ino uint64, ok bool) {
	var haveFlags, haveIno bool
	for line := range bytes.Lines(info) {
		k, v, found := strings.Cut(strings.TrimSpace(string(line)), ":")
		if !found {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "flags":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return 0, 0, false
			}
			flags, haveFlags = int(n), true
		case "ino":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			ino, haveIno = n, true
		}
	}
	if !haveFlags || !haveIno {
		return 0, 0, false
	}
	return flags, ino, true
}

// Unsaved returns the paths (type/name, as in the mount) of the record
// files written through the mount whose writes are not saved yet, sorted:
// what kill -9 of the mount process would lose. See the package comment
// for when they are saved.
func (s *Server) Unsaved() []string { return s.saver.unsaved() }

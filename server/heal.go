package server

import (
	"errors"
	"syscall"
	"time"
)

// Recoverer is implemented by stores that a disk error can leave broken,
// refusing every Apply, and that can be brought back in place
// (fsstore.Store). A server over one notices when a commit fails because
// the store is broken: it answers the client busy (the client resends the
// batch later), reports the failure on /healthz, and calls Recover with a
// capped backoff until it succeeds. Stores that cannot break (memstore)
// need not implement it.
type Recoverer interface {
	// Broken returns why the store refuses writes, nil while it works.
	Broken() error
	// Recover brings a broken store back into service and does nothing
	// on one that works. Afterwards the store's metadata is what it made
	// durable, which may include the batch whose Apply failed.
	Recover() error
}

// Bounds of the delay between attempts to recover a broken store.
const (
	healMinDelay = 100 * time.Millisecond
	healMaxDelay = 5 * time.Second
)

// errDiskFailed is wrapped by commit's error when the store is broken: the
// client is told to resend the batch later.
var errDiskFailed = errors.New("the store is broken")

// storeBroken returns why the store refuses writes (nil while it works, or
// when it is no Recoverer). A broken store is logged once and recovered
// by one healer goroutine, started here.
func (s *Server) storeBroken() error {
	r, ok := s.store.(Recoverer)
	if !ok {
		return nil
	}
	cause := r.Broken()
	if cause == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.healing || s.closing {
		return cause
	}
	s.healing = true
	s.log.Error("the data folder's disk failed; commits are refused (clients resend them later) until it works again, and the server retries by itself", "err", cause)
	s.wg.Add(1)
	go s.heal(r)
	return cause
}

// heal calls r.Recover with a capped backoff until it succeeds or the
// server shuts down, then tells every client the store's version (a batch
// may have been committed by the Apply that failed).
func (s *Server) heal(r Recoverer) {
	defer s.wg.Done()
	delay := healMinDelay
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		// No commit runs during Recover: one that read the store's version
		// before it and applied after would reuse a version.
		s.commitMu.Lock()
		err := r.Recover()
		s.commitMu.Unlock()
		if err == nil {
			break
		}
		delay = min(2*delay, healMaxDelay)
		s.log.Debug("store still broken", "err", err, "retry_in", delay)
		t.Reset(delay)
	}
	s.mu.Lock()
	s.healing = false
	s.mu.Unlock()
	v := s.store.Version()
	s.log.Info("the data folder's disk works again; commits resume", "version", v)
	s.broadcast(v)
}

// diskProblem says, for clients and /healthz, what failed, without the
// paths the error names.
func diskProblem(cause error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(cause, syscall.ENOSPC) || errors.Is(cause, syscall.EDQUOT):
		return "the server's disk is full"
	case errors.As(cause, &errno):
		return "the server's disk failed a write (" + errno.Error() + ")"
	}
	return "the server's disk failed a write"
}

package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dbRelay is a loopback TCP relay between one instance and PostgreSQL
// that can lose the answer to a request already sent: armed, it lets the
// n-th Sync message from now (the end of a round trip of the extended
// protocol, which pgx sends a batch of statements in) reach the database,
// then breaks the instance's side of that link and throws away what the
// database answers. The database still runs what it received, so a batch
// ending in COMMIT commits while the instance sees its link fail: a
// commit whose outcome the instance cannot know.
//
// It reads the framing of the client's messages only (a startup message
// without a type byte, then typed messages with a length); payloads pass
// as they are. The connection must not use TLS (sslmode=disable).
type dbRelay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	armed  int // the Sync that cuts, counting down; 0 off
	links  map[net.Conn]bool
	closed bool
	cuts   atomic.Int64
}

// newDBRelay listens on a free loopback port and relays every link to
// target (host:port).
func newDBRelay(target string) (*dbRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("database relay: %w", err)
	}
	r := &dbRelay{ln: ln, target: target, links: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr returns the relay's host:port.
func (r *dbRelay) Addr() string { return r.ln.Addr().String() }

// Arm makes the n-th Sync message from now (on any link) the last one
// its link relays.
func (r *dbRelay) Arm(n int) {
	r.mu.Lock()
	r.armed = n
	r.mu.Unlock()
}

// Cuts returns how many links an armed Sync broke.
func (r *dbRelay) Cuts() int { return int(r.cuts.Load()) }

// Close stops listening, breaks every link and waits for the relay's
// goroutines.
func (r *dbRelay) Close() error {
	r.mu.Lock()
	r.closed = true
	for c := range r.links {
		c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func (r *dbRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", r.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		r.links[c], r.links[s] = true, true
		r.mu.Unlock()
		var cut atomic.Bool
		r.wg.Add(2)
		go r.up(c, s, &cut)
		go r.down(s, c, &cut)
	}
}

// forget closes the ends of a link and drops them from the set.
func (r *dbRelay) forget(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(r.links, c)
	}
}

// up relays the instance's messages to the database, message by message,
// until either end fails or an armed Sync cuts the link.
func (r *dbRelay) up(c, s net.Conn, cut *atomic.Bool) {
	defer r.wg.Done()
	// The startup phase: untyped messages (an SSL or GSS encryption
	// request answered by one byte, then the startup message).
	for {
		msg, err := readUntyped(c)
		if err == nil {
			_, err = s.Write(msg)
		}
		if err != nil {
			r.forget(c, s)
			return
		}
		code := binary.BigEndian.Uint32(msg[4:8])
		if code != 80877103 && code != 80877104 {
			break
		}
	}
	for {
		msg, err := readTyped(c)
		if err == nil {
			_, err = s.Write(msg)
		}
		if err != nil {
			r.forget(c, s)
			return
		}
		if msg[0] != 'S' || !r.fire() {
			continue
		}
		// The request is on its way: the database runs it, the instance
		// never hears the answer.
		r.cuts.Add(1)
		cut.Store(true)
		r.forget(c)
		if tc, ok := s.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
		return // down drains s and closes it
	}
}

// fire counts an armed Sync down and reports whether this one cuts.
func (r *dbRelay) fire() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed == 0 {
		return false
	}
	r.armed--
	return r.armed == 0
}

// down relays the database's answers to the instance; once the link is
// cut it reads and drops them until the database closes (or a deadline).
func (r *dbRelay) down(s, c net.Conn, cut *atomic.Bool) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && !cut.Load() {
			if _, werr := c.Write(buf[:n]); werr != nil && !cut.Load() {
				err = werr
			}
		}
		if err != nil {
			r.forget(c, s)
			return
		}
	}
}

// maxMessage bounds a relayed message (the instance's batches are far
// smaller).
const maxMessage = 256 << 20

// readUntyped reads a startup-phase message: a length (itself included)
// and the rest.
func readUntyped(c net.Conn) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n < 8 || n > maxMessage {
		return nil, errors.New("bad startup message length")
	}
	msg := make([]byte, n)
	copy(msg, head[:])
	_, err := io.ReadFull(c, msg[4:])
	return msg, err
}

// readTyped reads a message: a type byte, a length (itself included) and
// the rest.
func readTyped(c net.Conn) ([]byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n < 4 || n > maxMessage {
		return nil, errors.New("bad message length")
	}
	msg := make([]byte, 1+n)
	copy(msg, head[:])
	_, err := io.ReadFull(c, msg[5:])
	return msg, err
}

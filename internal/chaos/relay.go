package chaos

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// Relay is a loopback TCP relay between WebSocket clients and a server,
// with fault knobs: refuse and cut links (offline), freeze them (up but
// silent: half-open), drop what the server sends (half-open one way), slow
// them down, and repeat whole WebSocket messages. It parses the WebSocket
// framing of each direction after the HTTP upgrade so that a repeated
// message is a whole frame, never a torn one; payloads are relayed as they
// are (masked, compressed), never decoded.
//
// A Relay is safe for concurrent use; the knobs may change at any time and
// take effect on the next bytes relayed.
type Relay struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	target  string
	targets []string   // when set, each new link goes to one at random
	pick    *rand.Rand // chooses among targets
	down    bool
	frozen  bool
	dropIn  bool // drop server-to-client bytes
	delay   time.Duration
	dup     float64 // probability of repeating a whole data message
	rng     *rand.Rand
	conns   map[net.Conn]string // both ends of each link, to its target
	damaged map[net.Conn]bool   // server ends of links that lost frames
	closed  bool
	stats   RelayStats
	sleeper func(time.Duration)
}

// RelayStats counts what a Relay did.
type RelayStats struct {
	Links      int // links relayed
	Refused    int // links refused while down
	Cuts       int // links cut by Cut or SetDown
	Duplicated int // whole messages sent twice
	Dropped    int // server-to-client frames dropped
}

// NewRelay listens on a free loopback port and relays every link to target
// (host:port). seed drives the random choices of message duplication.
func NewRelay(target string, seed uint64) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{ln: ln, target: target, conns: map[net.Conn]string{}, damaged: map[net.Conn]bool{},
		rng: rand.New(rand.NewPCG(seed, 0x5eed)), pick: rand.New(rand.NewPCG(seed, 0x7a79)),
		sleeper: time.Sleep}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr returns the relay's host:port.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// URL returns the relay's WebSocket URL.
func (r *Relay) URL() string { return "ws://" + r.Addr() + "/" }

// SetTarget makes new links go to addr (a restarted server); existing
// links are left alone (cut them to move them).
func (r *Relay) SetTarget(addr string) {
	r.mu.Lock()
	r.target = addr
	r.mu.Unlock()
}

// SetTargets makes each new link go to one of addrs (host:port), chosen
// at random (from the relay's seed) when the link is made: servers that
// share one database, behind a load balancer. Existing links are left
// alone. Empty addrs goes back to the single target of SetTarget.
func (r *Relay) SetTargets(addrs []string) {
	r.mu.Lock()
	r.targets = slices.Clone(addrs)
	r.mu.Unlock()
}

// LinkTargets returns the target of each link relayed now (one entry per
// link).
func (r *Relay) LinkTargets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for c, t := range r.conns {
		if c.LocalAddr().String() == r.ln.Addr().String() { // the replica's end
			out = append(out, t)
		}
	}
	return out
}

// Damaged reports whether a link open now lost frames (SetDropIncoming)
// or repeated messages (SetDuplicate): no TCP link does either, so such a
// link is no test of what the peers do over a working one.
func (r *Relay) Damaged() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.damaged) > 0
}

// CutTarget closes the links relayed to addr (host:port): the server
// there is gone at once, as if its process crashed.
func (r *Relay) CutTarget(addr string) {
	r.mu.Lock()
	n := 0
	for c, t := range r.conns {
		if t == addr {
			c.Close()
			delete(r.conns, c)
			n++
		}
	}
	r.stats.Cuts += n / 2
	r.mu.Unlock()
}

// SetDown refuses new links while on, and cuts the existing ones when
// turned on: the replica is offline.
func (r *Relay) SetDown(on bool) {
	r.mu.Lock()
	r.down = on
	r.mu.Unlock()
	if on {
		r.Cut()
	}
}

// SetFrozen stops forwarding in both directions while on, keeping the
// links open: a half-open link that only a heartbeat can detect.
func (r *Relay) SetFrozen(on bool) {
	r.mu.Lock()
	r.frozen = on
	r.mu.Unlock()
}

// SetDropIncoming drops every frame the server sends while on (the link
// stays up; pings and pongs from the server are lost too).
func (r *Relay) SetDropIncoming(on bool) {
	r.mu.Lock()
	r.dropIn = on
	r.mu.Unlock()
}

// SetDelay delays every relayed chunk by d: a slow link.
func (r *Relay) SetDelay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

// SetDuplicate sends each whole data message a second time with
// probability p (0 turns it off), in both directions.
func (r *Relay) SetDuplicate(p float64) {
	r.mu.Lock()
	r.dup = p
	r.mu.Unlock()
}

// Heal turns every fault knob off.
func (r *Relay) Heal() {
	r.mu.Lock()
	r.down, r.frozen, r.dropIn, r.delay, r.dup = false, false, false, 0, 0
	r.mu.Unlock()
}

// Stats returns what the relay did so far.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Cut closes every relayed link.
func (r *Relay) Cut() {
	r.mu.Lock()
	n := 0
	for c := range r.conns {
		c.Close()
		delete(r.conns, c)
		n++
	}
	r.stats.Cuts += n / 2
	r.mu.Unlock()
}

// Close stops listening, cuts every link and waits for the relay's
// goroutines.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err := r.ln.Close()
	r.Cut()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		down, target, closed := r.down, r.target, r.closed
		if len(r.targets) > 0 {
			target = r.targets[r.pick.IntN(len(r.targets))]
		}
		if down {
			r.stats.Refused++
		}
		r.mu.Unlock()
		if down || closed {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", target, 2*time.Second)
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
		r.conns[c], r.conns[s] = target, target
		r.stats.Links++
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(s, c, false)
		go r.pipe(c, s, true)
	}
}

// pipe relays src to dst until either closes; incoming is the
// server-to-client direction.
func (r *Relay) pipe(dst, src net.Conn, incoming bool) {
	defer r.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		r.mu.Lock()
		delete(r.conns, dst)
		delete(r.conns, src)
		delete(r.damaged, dst)
		delete(r.damaged, src)
		r.mu.Unlock()
	}()
	var buf []byte
	chunk := make([]byte, 64<<10)
	framed := false // past the HTTP upgrade: whole frames from here on
	raw := false    // not a WebSocket (or a frame too large): pass bytes
	for {
		n, err := src.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for len(buf) > 0 {
			var out []byte
			var f frame
			switch {
			case raw:
				out, buf = buf, nil
			case !framed:
				end := headerEnd(buf)
				if end < 0 {
					if len(buf) > 64<<10 {
						raw = true
						continue
					}
					goto more
				}
				if incoming && !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
					raw = true
				}
				framed = true
				out, buf = buf[:end:end], buf[end:]
			default:
				var ok bool
				var perr error
				f, ok, perr = parseFrame(buf)
				if perr != nil {
					raw = true
					continue
				}
				if !ok {
					goto more
				}
				out, buf = buf[:f.size:f.size], buf[f.size:]
			}
			if !r.forward(dst, src, out, f, framed && !raw, incoming) {
				return
			}
		}
	more:
		if err != nil {
			return
		}
		if len(buf) == 0 {
			buf = buf[:0]
		}
	}
}

// forward writes one unit (the HTTP head, a frame, or raw bytes) to dst
// under the current knobs; it reports false once the link is gone.
func (r *Relay) forward(dst, src net.Conn, out []byte, f frame, isFrame, incoming bool) bool {
	for {
		r.mu.Lock()
		frozen, open, delay := r.frozen, r.conns[src] != "", r.delay
		drop := r.dropIn && incoming && isFrame
		twice := isFrame && f.message() && r.dup > 0 && r.rng.Float64() < r.dup
		if !frozen && drop {
			r.stats.Dropped++
			r.damaged[src] = true
		}
		if !frozen && twice {
			r.stats.Duplicated++
			r.damaged[src] = true
		}
		sleep := r.sleeper
		r.mu.Unlock()
		if !open {
			return false
		}
		if frozen {
			sleep(5 * time.Millisecond)
			continue
		}
		if delay > 0 {
			sleep(delay)
		}
		if drop {
			return true
		}
		if _, err := dst.Write(out); err != nil {
			return false
		}
		if twice {
			if _, err := dst.Write(out); err != nil {
				return false
			}
		}
		return true
	}
}

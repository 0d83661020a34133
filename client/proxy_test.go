package client_test

import (
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a loopback TCP relay between clients and a server with fault
// knobs: refuse connections, cut every link, freeze forwarding (a link
// that is up but dead), drop what the server sends, or switch servers.
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu        sync.Mutex
	target    string
	down      bool
	frozen    bool
	dropDown  bool
	conns     map[net.Conn]bool
	connected int
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/" }

func (p *proxy) set(fn func(p *proxy)) {
	p.mu.Lock()
	fn(p)
	p.mu.Unlock()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, target := p.down, p.target
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.connected++
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, false)
		go p.pipe(c, s, true)
	}
}

// pipe copies from src to dst; down is the server-to-client direction.
func (p *proxy) pipe(dst, src net.Conn, down bool) {
	defer p.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for {
				p.mu.Lock()
				frozen, drop, open := p.frozen, p.dropDown && down, p.conns[src]
				p.mu.Unlock()
				if !open {
					return
				}
				if !frozen {
					if !drop {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every relayed connection.
func (p *proxy) cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

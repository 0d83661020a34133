package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs/wire"
)

// Per-connection limits beyond the wire's size limits: a message rate and
// a handshake timeout. A client over either is told why (an error message
// to an extended client, the close reason to any) and closed with 1008
// (policy violation); other clients are not affected.

// DefaultHandshakeTimeout is how long a new client may take to send its
// first message when Options.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 30 * time.Second

// bucket is a token bucket: rate tokens a second, at most burst saved up.
// Each message takes one token. It is owned by one goroutine.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	if burst < 1 {
		burst = max(1, int(2*rate))
	}
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take takes one token at time now, reporting false when there is none.
func (b *bucket) take(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// watchHandshake closes c if it sends no message within the handshake
// timeout. The caller calls the returned function when c is done.
func (c *client) watchHandshake() (stop func()) {
	d := c.s.opts.HandshakeTimeout
	if d == 0 {
		d = DefaultHandshakeTimeout
	}
	if d < 0 {
		return func() {}
	}
	t := time.AfterFunc(d, func() {
		if !c.sec.started.Load() {
			c.log.Info("closing a client that sent nothing", "handshake_timeout", d)
			c.s.metrics.errors.WithLabelValues(wire.CodeBadMessage).Inc()
			c.kill(websocket.StatusPolicyViolation, fmt.Sprintf("no message within %s of connecting", d))
		}
	})
	return func() { t.Stop() }
}

// throttle counts a message read (err nil or a *wire.CodeError) against
// c's rate limit. Over the limit, it stops the reading (c.closing), sends
// an extended client a rate-limit error, closes c with 1008 and returns
// true. It ignores link errors, which the reader handles.
func (c *client) throttle(err error) bool {
	var ce *wire.CodeError
	if err != nil && !errors.As(err, &ce) {
		return false
	}
	c.sec.started.Store(true)
	rate := c.s.opts.RateLimit
	if rate <= 0 {
		return false
	}
	now := time.Now()
	if c.sec.bucket == nil {
		c.sec.bucket = newBucket(rate, c.s.opts.RateBurst, now)
	}
	if c.sec.bucket.take(now) {
		return false
	}
	c.s.metrics.errors.WithLabelValues(wire.CodeRateLimit).Inc()
	c.log.Warn("closing a client over its message rate limit", "rate", rate, "burst", c.sec.bucket.burst)
	const reason = "rate limit exceeded"
	c.closing = true
	if c.extended {
		msg := fmt.Sprintf("more than %g messages a second (bursts of %g): closing the connection; reconnect later and send less often", rate, c.sec.bucket.burst)
		kill := func() { c.kill(websocket.StatusPolicyViolation, reason) }
		if c.enqueue(outItem{msg: &wire.Error{Code: wire.CodeRateLimit, Message: msg}, after: kill}) {
			return true
		}
	}
	c.kill(websocket.StatusPolicyViolation, reason)
	return true
}

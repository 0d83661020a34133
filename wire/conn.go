package wire

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
)

// ZstdThreshold is the encoded size from which Conn.Write sends a message
// as a zstd binary frame once EnableZstd was called. Smaller messages gain
// little and go as text.
const ZstdThreshold = 512

// readSlack is added to MaxMessage for the websocket read limit, so that a
// zstd frame of an incompressible message at the limit still fits.
const readSlack = 1 << 10

// Conn sends and receives messages over one WebSocket.
//
// Read must not be called concurrently with itself (a WebSocket has one
// reader); every other method may be called concurrently, Write included.
// The caller keeps reading for as long as the link is up: pings and close
// frames are handled by Read.
type Conn struct {
	ws   *websocket.Conn
	lim  Limits
	zstd atomic.Bool
	in   atomic.Int64
	out  atomic.Int64
}

// NewConn wraps ws. lim bounds what Read accepts (nil means
// DefaultLimits); NewConn sets ws's read limit to just above
// lim.MaxMessage, so a larger frame makes the library close the link with
// status 1009 (message too big).
func NewConn(ws *websocket.Conn, lim *Limits) *Conn {
	c := &Conn{ws: ws, lim: lim.withDefaults()}
	ws.SetReadLimit(c.lim.MaxMessage + readSlack)
	return c
}

// WS returns the underlying WebSocket.
func (c *Conn) WS() *websocket.Conn { return c.ws }

// EnableZstd makes Write send messages of at least ZstdThreshold bytes as
// zstd-compressed binary frames, once both ends agreed on FeatureZstd.
// Read accepts binary frames whether or not it was called, so the order
// in which the two ends switch does not matter.
func (c *Conn) EnableZstd() { c.zstd.Store(true) }

// Stats returns the payload bytes read and written so far (compressed
// sizes for binary frames; frame headers not counted).
func (c *Conn) Stats() (in, out int64) { return c.in.Load(), c.out.Load() }

// Read returns the next message. A text frame holds JSON; a binary frame
// holds zstd-compressed JSON, which may decompress to at most MaxMessage
// bytes.
//
// A message that breaks the limits or the shapes yields a *CodeError and
// leaves the connection usable: the caller decides whether to answer,
// skip or close. When the refused message is a changes message with a
// batch id, the CodeError's Batch holds it. Any other error comes from the WebSocket (closed link,
// ctx done) and ends the connection.
func (c *Conn) Read(ctx context.Context) (Message, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	c.in.Add(int64(len(data)))
	switch typ {
	case websocket.MessageText:
	case websocket.MessageBinary:
		data, err = decompress(data, c.lim.MaxMessage)
		if err != nil {
			return nil, err
		}
	default:
		return nil, codeErrorf(CodeBadMessage, "frame of unknown type %d", typ)
	}
	m, err := Decode(data, &c.lim)
	var ce *CodeError
	if errors.As(err, &ce) {
		ce.Batch = PeekBatch(data) // so the refusal can name the batch
	}
	return m, err
}

// Write sends m, as a zstd binary frame when EnableZstd was called and the
// encoded message has at least ZstdThreshold bytes, else as a text frame.
// A message over this Conn's MaxMessage is not sent: Write returns a
// *CodeError with CodeTooLarge, so the caller can split it.
func (c *Conn) Write(ctx context.Context, m Message) error {
	data, err := Encode(m)
	if err != nil {
		return fmt.Errorf("write %s: %w", typeOf(m), err)
	}
	if n := int64(len(data)); n > c.lim.MaxMessage {
		return codeErrorf(CodeTooLarge, "%s message of %d bytes is over the %s limit", m.Type(), n, size(c.lim.MaxMessage))
	}
	typ := websocket.MessageText
	if c.zstd.Load() && len(data) >= ZstdThreshold {
		data = zstdEncoder().EncodeAll(data, make([]byte, 0, len(data)/2))
		typ = websocket.MessageBinary
	}
	if err := c.ws.Write(ctx, typ, data); err != nil {
		return fmt.Errorf("write %s: %w", m.Type(), err)
	}
	c.out.Add(int64(len(data)))
	return nil
}

// Ping sends a WebSocket ping and waits for the pong or ctx. It needs a
// concurrent Read to receive the pong.
func (c *Conn) Ping(ctx context.Context) error {
	if err := c.ws.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close closes the link with a close frame carrying code and reason.
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	return c.ws.Close(code, reason)
}

func typeOf(m Message) string {
	if m == nil {
		return "nil message"
	}
	return m.Type()
}

// The zstd encoder and decoders are shared by every Conn: their EncodeAll
// and DecodeAll are safe for concurrent use, and each holds sizeable
// tables that are better made once.
var (
	encOnce sync.Once
	enc     *zstd.Encoder

	decMu sync.Mutex
	decs  = map[int64]*zstd.Decoder{} // by decoded size cap; few distinct limits exist
)

func zstdEncoder() *zstd.Encoder {
	encOnce.Do(func() {
		var err error
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		)
		if err != nil {
			panic(fmt.Sprintf("wire: zstd encoder: %v", err)) // only on bad options
		}
	})
	return enc
}

// zstdDecoder returns the shared decoder whose DecodeAll refuses to
// produce more than max bytes, whatever the frame header claims.
func zstdDecoder(max int64) *zstd.Decoder {
	decMu.Lock()
	defer decMu.Unlock()
	d := decs[max]
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil,
			zstd.WithDecoderMaxMemory(uint64(max)),
			zstd.WithDecoderConcurrency(0),
		)
		if err != nil {
			panic(fmt.Sprintf("wire: zstd decoder: %v", err)) // only on bad options
		}
		decs[max] = d
	}
	return d
}

// decompress inflates one zstd frame of at most max bytes.
func decompress(data []byte, max int64) ([]byte, error) {
	out, err := zstdDecoder(max).DecodeAll(data, nil)
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, codeErrorf(CodeTooLarge, "compressed message decompresses to over the %s limit", size(max))
	case err != nil:
		return nil, codeErrorf(CodeBadMessage, "binary frame is not a valid zstd frame: %v", err)
	}
	return out, nil
}

package wire

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
)

// echoServer starts a loopback WebSocket server that reads messages with
// a wire.Conn and writes each one back; a refused message is answered
// with an Error message and the loop goes on. With zstd set the server
// conn sends big messages compressed.
func echoServer(t testing.TB, zstdOn bool, lim *Limits) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		c := NewConn(ws, lim)
		if zstdOn {
			c.EnableZstd()
		}
		for {
			m, err := c.Read(r.Context())
			var ce *CodeError
			switch {
			case errors.As(err, &ce):
				m = &Error{Code: ce.Code, Message: ce.Message}
			case err != nil:
				return
			}
			if err := c.Write(r.Context(), m); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dial(t testing.TB, url string, lim *Limits) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return NewConn(ws, lim)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bigChanges is a changes message well above ZstdThreshold.
func bigChanges(batch uint64) *Changes {
	m := &Changes{Version: 9, Batch: batch}
	for i := range 40 {
		m.Update = append(m.Update, rec("note", "n"+strconv.Itoa(i), 9, `{"text":"the same words again and again and again"}`))
	}
	return m
}

func TestConnTextRoundTripAndStats(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, false, nil), nil)
	for _, m := range allMessages() {
		if err := c.Write(ctx, m); err != nil {
			t.Fatal(err)
		}
		got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("echo of %T:\n got %#v\nwant %#v", m, got, m)
		}
	}
	var total int64
	for _, m := range allMessages() {
		data, _ := Encode(m)
		total += int64(len(data))
	}
	in, out := c.Stats()
	if in != total || out != total {
		t.Errorf("Stats() = %d in, %d out; want %d each", in, out, total)
	}
}

func TestConnZstdBothWays(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, true, nil), nil)
	c.EnableZstd()
	big := bigChanges(1)
	raw, _ := Encode(big)
	if err := c.Write(ctx, big); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, big) {
		t.Errorf("zstd echo differs")
	}
	in, out := c.Stats()
	if out >= int64(len(raw))/2 || in != out {
		t.Errorf("a %d-byte message went out as %d bytes and came back as %d: not compressed both ways", len(raw), out, in)
	}
	// Below the threshold a message goes as text even with zstd on.
	small := &Notify{Version: 3}
	rawSmall, _ := Encode(small)
	if err := c.Write(ctx, small); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	in2, out2 := c.Stats()
	if out2-out != int64(len(rawSmall)) || in2-in != int64(len(rawSmall)) {
		t.Errorf("small message counted %d out, %d in; want %d (text)", out2-out, in2-in, len(rawSmall))
	}
}

// TestConnReadsBinaryBeforeEnable: Read accepts zstd frames whether or
// not this end enabled zstd, so the order of switching does not matter.
func TestConnReadsBinaryBeforeEnable(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, true, nil), nil) // the client never enables zstd
	big := bigChanges(2)
	if err := c.Write(ctx, big); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read(ctx)
	if err != nil || !reflect.DeepEqual(got, big) {
		t.Fatalf("read of the server's zstd frame: %v", err)
	}
}

// expectError reads the next message and checks it is an Error with code.
func expectError(t *testing.T, ctx context.Context, c *Conn, code string) *Error {
	t.Helper()
	m, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	e, ok := m.(*Error)
	if !ok || e.Code != code {
		t.Fatalf("got %#v, want an error %q", m, code)
	}
	return e
}

func stillEchoes(t *testing.T, ctx context.Context, c *Conn) {
	t.Helper()
	if err := c.Write(ctx, &Notify{Version: 77}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := m.(*Notify); !ok || n.Version != 77 {
		t.Fatalf("after a refused message the link answers %#v", m)
	}
}

func TestConnRefusesZstdBombAndStaysUsable(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, false, nil), nil)
	zeros := make([]byte, 64<<20)

	// A frame that declares its decoded size in its header.
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	bomb := enc.EncodeAll(zeros, nil)
	// A streamed frame that does not declare its size: the cap must hold
	// while decoding too.
	var streamed bytes.Buffer
	sw, _ := zstd.NewWriter(&streamed)
	sw.Write(zeros)
	sw.Close()
	for _, b := range [][]byte{bomb, streamed.Bytes()} {
		if len(b) > 64<<10 {
			t.Fatalf("bomb of %d bytes: not a bomb", len(b))
		}
		if err := c.WS().Write(ctx, websocket.MessageBinary, b); err != nil {
			t.Fatal(err)
		}
		e := expectError(t, ctx, c, CodeTooLarge)
		if !strings.Contains(e.Message, "decompresses to over the 4 MiB limit") {
			t.Errorf("message %q", e.Message)
		}
		stillEchoes(t, ctx, c)
	}

	// Not zstd at all, and not JSON: refused, link kept.
	if err := c.WS().Write(ctx, websocket.MessageBinary, []byte("not zstd")); err != nil {
		t.Fatal(err)
	}
	expectError(t, ctx, c, CodeBadMessage)
	if err := c.WS().Write(ctx, websocket.MessageText, []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	expectError(t, ctx, c, CodeBadMessage)
	stillEchoes(t, ctx, c)
}

func TestConnOversizedFrameClosesWith1009(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, false, &Limits{MaxMessage: 64 << 10}), nil)
	stillEchoes(t, ctx, c)
	huge := bytes.Repeat([]byte("x"), 70<<10) // over 64 KiB + slack; small enough to be written before the peer closes
	if err := c.WS().Write(ctx, websocket.MessageText, huge); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("read after an oversized frame: %v (status %d), want close 1009", err, got)
	}
}

func TestConnWriteRefusesOversizedMessage(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, false, nil), &Limits{MaxMessage: 1000})
	err := c.Write(ctx, bigChanges(1))
	if ce := codeOf(t, err); ce.Code != CodeTooLarge {
		t.Fatalf("got %v", ce)
	}
	if _, out := c.Stats(); out != 0 {
		t.Errorf("%d bytes were sent", out)
	}
	stillEchoes(t, ctx, c)
}

func TestConnConcurrentWrites(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, true, nil), nil)
	c.EnableZstd()
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				batch := uint64(w*each + i + 1)
				var m Message = &Changes{Version: 1, Batch: batch}
				if i%2 == 0 {
					m = bigChanges(batch) // a zstd frame
				}
				if err := c.Write(ctx, m); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	seen := map[uint64]bool{}
	for range writers * each {
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		ch, ok := m.(*Changes)
		if !ok || seen[ch.Batch] {
			t.Fatalf("unexpected or repeated message %#v", m)
		}
		if big := (ch.Batch-1)%each%2 == 0; big != (len(ch.Update) == 40) {
			t.Fatalf("batch %d came back with %d records", ch.Batch, len(ch.Update))
		}
		seen[ch.Batch] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConnPingAndClose(t *testing.T) {
	ctx := testCtx(t)
	c := dial(t, echoServer(t, false, nil), nil)
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx) // the reader that receives the pong
		readErr <- err
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-readErr; err == nil {
		t.Fatal("read returned no error after close")
	}
	if err := c.Write(ctx, &Notify{}); err == nil {
		t.Fatal("write after close succeeded")
	}
}

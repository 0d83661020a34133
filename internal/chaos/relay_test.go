package chaos

import (
	"context"
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// echo is a WebSocket server that counts the messages it receives and
// echoes each one.
func echo(t *testing.T, got *atomic.Int64) *httptest.Server {
	hs := httptest.NewServer(websocketHandler(got))
	t.Cleanup(hs.Close)
	return hs
}

// TestRelayDuplicatesWholeMessages: with duplication on, every message
// arrives twice, intact, in both directions; with it off, once.
func TestRelayDuplicatesWholeMessages(t *testing.T) {
	var got atomic.Int64
	hs := echo(t, &got)
	r, err := NewRelay(strings.TrimPrefix(hs.URL, "http://"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, r.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	big := strings.Repeat("x", 70000) // a 64-bit length header
	r.SetDuplicate(1)
	for _, m := range []string{"hello", big} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		// Sent twice, each echoed (and the echo doubled): four back.
		for range 4 {
			_, data, err := c.Read(ctx)
			if err != nil || string(data) != m {
				t.Fatalf("read %d bytes, %v; want the message intact", len(data), err)
			}
		}
	}
	r.SetDuplicate(0)
	if err := c.Write(ctx, websocket.MessageText, []byte("once")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "once" {
		t.Fatal(err)
	}
	if n := got.Load(); n != 5 {
		t.Fatalf("server got %d messages, want 5", n)
	}
	if st := r.Stats(); st.Duplicated != 6 || st.Links != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Down: the link is cut and new ones are refused.
	r.SetDown(true)
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("link survived SetDown")
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if _, _, err := websocket.Dial(dctx, r.URL(), nil); err == nil {
		t.Fatal("dial through a relay that is down")
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x82, 0xfe, 0x00, 0x03, 1, 2, 3, 4, 'a', 'b', 'c'})
	f.Add(append([]byte{0x01, 0x7f}, binary.BigEndian.AppendUint64(nil, 1<<62)...))
	f.Add([]byte{0x89, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, ok, err := parseFrame(b)
		if err != nil || !ok {
			return
		}
		if fr.size < 2 || fr.size > len(b) {
			t.Fatalf("frame of %d bytes in %d", fr.size, len(b))
		}
		// A whole frame is whole in any longer buffer too.
		fr2, ok2, err2 := parseFrame(append(b[:fr.size:fr.size], 0xff))
		if !ok2 || err2 != nil || fr2 != fr {
			t.Fatalf("frame %+v then %+v %v %v", fr, fr2, ok2, err2)
		}
	})
}

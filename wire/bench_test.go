package wire

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/synkfs/synkfs"
)

// changes100 is a changes message of 100 typical records.
func changes100(b *testing.B) []byte {
	m := &Changes{Version: 100}
	for i := range 100 {
		m.Update = append(m.Update, rec("user", "u"+strconv.Itoa(i), uint64(i),
			`{"active":true,"age":36,"email":"ada@example.org","name":"Ada Lovelace","tags":["math","engines"]}`))
	}
	data, err := Encode(m)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeChanges: Decode, with every limit and shape check, of a
// 100-record changes message.
func BenchmarkDecodeChanges(b *testing.B) {
	data := changes100(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Decode(data, nil)
		if err != nil || len(m.(*Changes).Update) != 100 {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeChangesBaseline: the same bytes through plain
// json.Unmarshal into map[string]any, with no checks.
func BenchmarkDecodeChangesBaseline(b *testing.B) {
	data := changes100(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil || len(m["update"].([]any)) != 100 {
			b.Fatal(err)
		}
	}
}

// rawEchoServer echoes frames with the bare websocket API.
func rawEchoServer(b *testing.B) string {
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, data, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if err := ws.Write(r.Context(), typ, data); err != nil {
				return
			}
		}
	}))
	b.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func oneRecordChanges() *Changes {
	return &Changes{Version: 7, Batch: 3, Update: []synkfs.Record{
		rec("user", "42", 6, `{"age":36,"email":"ada@example.org","name":"Ada Lovelace"}`)}}
}

// BenchmarkConnRoundTrip: a one-record changes message written with
// Conn.Write and read back with Conn.Read through a wire.Conn echo server
// (encode and decode at both ends).
func BenchmarkConnRoundTrip(b *testing.B) {
	c := dial(b, echoServer(b, false, nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m := oneRecordChanges()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Write(ctx, m); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawEchoRoundTrip: the same bytes through bare websocket Write
// and Read, echoed by a bare server: the transport cost alone.
func BenchmarkRawEchoRoundTrip(b *testing.B) {
	ws, _, err := websocket.Dial(context.Background(), rawEchoServer(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data, err := Encode(oneRecordChanges())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ws.Write(ctx, websocket.MessageText, data); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

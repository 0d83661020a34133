package wire

import (
	"strings"
	"testing"
)

func TestPeekBatch(t *testing.T) {
	big := `{"type":"user","id":"1","text":"` + strings.Repeat("x", 5000) + `"}`
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{`{"type":"changes","version":1,"batch":8,"update":[],"delete":[]}`, 8},
		{`{"batch":9,"update":[` + big + `],"type":"changes"}`, 9},
		{`{"type":"changes","update":[{"type":1}],"batch":3}`, 3}, // bad record
		{`{"type":"changes","update":[[[[[[[[[[]]]]]]]]]],"batch":4}`, 4},
		{`{"type":"changes","version":1}`, 0},
		{`{"type":"ack","batch":8}`, 0},
		{`{"type":"changes","batch":"8"}`, 0},
		{`{"type":"changes","batch":-1}`, 0},
		{`not json`, 0},
		{`{"type":"changes","batch":5,"update":[`, 5}, // truncated after the id
		{``, 0},
	} {
		if got := PeekBatch([]byte(c.in)); got != c.want {
			t.Errorf("PeekBatch(%.60q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func FuzzPeekBatch(f *testing.F) {
	f.Add([]byte(`{"type":"changes","version":1,"batch":8,"update":[],"delete":[]}`))
	f.Add([]byte(`{"batch":1e3,"type":"changes"}`))
	f.Add([]byte(`{"type":"changes","batch":5,"update":[{"a":"\"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := PeekBatch(data)
		// Whatever Decode accepts as changes, PeekBatch agrees on.
		if m, err := Decode(data, nil); err == nil {
			if c, ok := m.(*Changes); ok && c.Batch != b {
				t.Fatalf("Decode batch %d, PeekBatch %d", c.Batch, b)
			}
		}
	})
}

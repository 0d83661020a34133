package wire

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode: Decode never panics, refuses only with a *CodeError, and
// whatever it accepts encodes and decodes back to the same message.
func FuzzDecode(f *testing.F) {
	for _, c := range originalMessages {
		f.Add([]byte(c.data))
	}
	for _, m := range allMessages() {
		data, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"type":"changes","version":1,"update":null}`))
	f.Add([]byte(`{"type":"changes","version":1,"update":[{"type":"a","id":"\"[{","version":1e3,"x":[[{}]]}]}`))
	f.Add([]byte(`[[[[[[`))

	lim := &Limits{MaxMessage: 1 << 16, MaxRecords: 50, MaxRecord: 1 << 12, MaxDepth: 16}
	// Re-encoding may grow a message a little (encoding/json escapes
	// <, > and &), so the second decode runs without practical limits.
	roomy := &Limits{MaxMessage: 1 << 30, MaxRecords: 1 << 30, MaxRecord: 1 << 30, MaxDepth: 1 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, lim)
		if err != nil {
			var ce *CodeError
			if !errors.As(err, &ce) || ce.Code == "" || ce.Message == "" {
				t.Fatalf("Decode(%q) error %v (%T) is not a complete *CodeError", data, err, err)
			}
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatalf("Decode(%q) gave %#v, which does not encode: %v", data, m, err)
		}
		m2, err := Decode(enc, roomy)
		if err != nil {
			t.Fatalf("re-encoding %s of %q does not decode: %v", enc, data, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %q through %s:\n got %#v\nwant %#v", data, enc, m2, m)
		}
	})
}

package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/synkfs/synkfs"
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
		// Encoding compacts bodies; Decode keeps a body's bytes as sent.
		compactBodies(t, m)
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %q through %s:\n got %#v\nwant %#v", data, enc, m2, m)
		}
	})
}

// FuzzRecord: Decode's one-pass record reader gives the same Record as
// synkfs.Record.UnmarshalJSON, the reference, on every record both accept.
func FuzzRecord(f *testing.F) {
	for _, s := range []string{
		`{"type":"user","id":"42","version":7,"name":"Ada","age":36}`,
		`{ "z" : { "b" : 1 , "a" : [ 1 , 2 ] } , "id":"x","type":"t","version":1e3,"html":"<&>\u2028"}`,
		`{"type":"t","id":"\u00e9\ud800","version":0,"a":1,"a":2,"typ\u0065":"u","k\u003c":"\n"}`,
		`{"type":"t","id":"i","version":3,"s":"caf\u00e9 ’ \"q\" \\"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		var want synkfs.Record
		refErr := json.Unmarshal(raw, &want)
		var got synkfs.Record
		d := decoder{typ: TypeChanges, l: DefaultLimits}
		err := d.record(raw, loc{"update", 0, ""}, &got)
		if err != nil {
			// The reader is stricter than the reference (it requires a
			// version), which is checked elsewhere; here only what it
			// accepts is compared.
			return
		}
		if refErr != nil {
			if got.Version <= 1<<53 {
				t.Fatalf("record %s accepted, but the reference refuses it: %v", raw, refErr)
			}
			return
		}
		if got.Version > 1<<53 {
			want.Version = got.Version // the reference reads versions as float64
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("record %s:\n got %#v (%s)\nwant %#v (%s)", raw, got, got.Body, want, want.Body)
		}
	})
}

func compactBodies(t *testing.T, m Message) {
	compact := func(r *synkfs.Record) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, r.Body); err != nil {
			t.Fatalf("body %s of %s: %v", r.Body, r.Key, err)
		}
		r.Body = buf.Bytes()
	}
	switch m := m.(type) {
	case *Changes:
		for i := range m.Update {
			compact(&m.Update[i])
		}
	case *SnapshotPage:
		for i := range m.Records {
			compact(&m.Records[i])
		}
	case *Ack:
		for i := range m.Results {
			if m.Results[i].Current != nil {
				compact(m.Results[i].Current)
			}
		}
	}
}

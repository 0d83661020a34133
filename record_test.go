package synkfs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRecordWireForm(t *testing.T) {
	in := `{"type":"user","name":"Ada","id":"42","version":7,"age":36}`
	var r Record
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.Key != (Key{"user", "42"}) || r.Version != 7 {
		t.Fatalf("got %+v", r)
	}
	if got, want := string(r.Body), `{"name":"Ada","age":36}`; got != want {
		t.Fatalf("body %s, want %s (order and bytes as sent)", got, want)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"type":"user","id":"42","version":7,"name":"Ada","age":36}`; got != want {
		t.Fatalf("marshal %s, want %s", got, want)
	}
}

func TestRecordEmptyBody(t *testing.T) {
	for _, body := range []string{"", "{}", " { } "} {
		out, err := json.Marshal(Record{Key: Key{"t", "i"}, Version: 1, Body: json.RawMessage(body)})
		if err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if got := string(out); got != `{"type":"t","id":"i","version":1}` {
			t.Fatalf("body %q: got %s", body, got)
		}
	}
	if _, err := json.Marshal(Record{Key: Key{"t", "i"}, Body: json.RawMessage(`[1]`)}); err == nil {
		t.Fatal("a body that is not an object marshalled")
	}
}

func TestRecordVersions(t *testing.T) {
	cases := map[string]uint64{
		`18446744073709551615`: 1<<64 - 1, // every digit kept, no float rounding
		`7.0`:                  7,
		`1e3`:                  1000,
		`null`:                 0,
	}
	for v, want := range cases {
		var r Record
		if err := json.Unmarshal([]byte(`{"type":"a","id":"b","version":`+v+`}`), &r); err != nil {
			t.Fatalf("version %s: %v", v, err)
		}
		if r.Version != want {
			t.Fatalf("version %s: got %d, want %d", v, r.Version, want)
		}
	}
	for _, v := range []string{`-1`, `1.5`, `"7"`, `true`, `18446744073709551616`} {
		var r Record
		if err := json.Unmarshal([]byte(`{"type":"a","id":"b","version":`+v+`}`), &r); err == nil {
			t.Fatalf("version %s accepted as %d", v, r.Version)
		}
	}
}

func TestRecordRefusals(t *testing.T) {
	for _, in := range []string{
		`[]`, `"x"`, `null`, `{}`,
		`{"type":"a"}`, `{"id":"b"}`,
		`{"type":1,"id":"b"}`, `{"type":"a","id":null}`,
		`{"type":"a","type":"b","id":"c"}`,
		`{"type":"a","id":"b","version":1,"version":2}`,
	} {
		var r Record
		if err := json.Unmarshal([]byte(in), &r); err == nil {
			t.Errorf("%s accepted as %+v", in, r)
		} else if !strings.Contains(err.Error(), "record") && json.Valid([]byte(in)) {
			t.Errorf("%s: error %q does not say it is about a record", in, err)
		}
	}
}

func TestKey(t *testing.T) {
	k := Key{"user", "42"}
	if k.String() != "user::42" || k.Path() != "user/42" {
		t.Fatalf("got %s %s", k, k.Path())
	}
	if !(Key{"a", "z"}).Less(Key{"b", "a"}) || !(Key{"a", "a"}).Less(Key{"a", "b"}) || k.Less(k) {
		t.Fatal("Less does not order by type then id")
	}
	if (Key{"", "x"}).Validate() == nil || (Key{"x", ""}).Validate() == nil || k.Validate() != nil {
		t.Fatal("Validate")
	}
}

// FuzzRecord: whatever decodes re-encodes to a record that decodes to the
// same key, version and body.
func FuzzRecord(f *testing.F) {
	f.Add(`{"type":"user","id":"42","version":7,"name":"Ada","age":36}`)
	f.Add(`{"type":"post","id":"1","version":0,"tags":["a","b"],"meta":{"x":null}}`)
	f.Add(`{"id":"","type":"","version":null}`)
	f.Fuzz(func(t *testing.T, in string) {
		var r Record
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode: %v", in, err)
		}
		var r2 Record
		if err := json.Unmarshal(out, &r2); err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", out, err)
		}
		if r2.Key != r.Key || r2.Version != r.Version {
			t.Fatalf("round trip changed %+v into %+v", r, r2)
		}
		var b1, b2 any
		if json.Unmarshal(r.Body, &b1) != nil || json.Unmarshal(r2.Body, &b2) != nil {
			t.Fatalf("bodies not JSON: %s / %s", r.Body, r2.Body)
		}
	})
}

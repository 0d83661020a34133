package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
)

func rec(typ, id string, v uint64, body string) synkfs.Record {
	return synkfs.Record{Key: synkfs.Key{Type: typ, ID: id}, Version: v, Body: json.RawMessage(body)}
}

// allMessages has one fully populated value of every message type. Bodies
// are compact, as Encode writes them.
func allMessages() []Message {
	cur := rec("user", "2", 39, `{"name":"x"}`)
	return []Message{
		&Hello{Protocol: 1, Client: "c-1", Epoch: "e-9", Version: 12, Features: []string{FeatureAck, FeatureConflict, FeatureSnapshot, FeatureZstd}},
		&Welcome{Protocol: 1, Epoch: "e-9", Version: 40, Floor: 3, Features: []string{FeatureAck}, Resync: true, LastBatch: 7},
		&Changes{Version: 12, Batch: 8,
			Update: []synkfs.Record{rec("user", "42", 7, `{"age":36,"name":"Ada","tags":["a",{"b":null}]}`), rec("note", "n/1", 0, `{}`)},
			Delete: []synkfs.Tombstone{{Key: synkfs.Key{Type: "user", ID: "3"}, Version: 5}}},
		&Changes{Version: 15},
		&Notify{Version: 15},
		&Ack{Batch: 8, Version: 41, Results: []Result{
			{Key: synkfs.Key{Type: "user", ID: "1"}, Status: StatusApplied},
			{Key: synkfs.Key{Type: "user", ID: "2"}, Status: StatusConflict, Current: &cur},
			{Key: synkfs.Key{Type: "user", ID: "3"}, Status: StatusConflict, Deleted: true, CurrentVersion: 40},
			{Key: synkfs.Key{Type: "bad", ID: ""}, Status: StatusRejected, Code: CodeInvalid, Message: "empty id"},
		}},
		&Ack{Batch: 8, Version: 44, Duplicate: true},
		&SnapshotRequest{After: &synkfs.Key{Type: "user", ID: "41"}, Limit: 1000},
		&SnapshotRequest{},
		&SnapshotPage{Epoch: "e-9", Version: 57, Records: []synkfs.Record{rec("user", "1040", 3, `{"n":1}`)}, Next: &synkfs.Key{Type: "user", ID: "1040"}},
		&SnapshotPage{Epoch: "e-9", Version: 57, Done: true, Total: 52000},
		&Error{Code: CodeTooLarge, Message: "message of 9 MiB is over the 4 MiB limit", Batch: 8},
	}
}

func TestRoundTripEveryMessage(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range allMessages() {
		seen[m.Type()] = true
		data, err := Encode(m)
		if err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
		got, err := Decode(data, nil)
		if err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %s:\n got %#v\nwant %#v", data, got, m)
		}
		var top map[string]any
		if err := json.Unmarshal(data, &top); err != nil || top["type"] != m.Type() {
			t.Errorf("encoded %s: type field %v, want %q (%v)", data, top["type"], m.Type(), err)
		}
	}
	for _, typ := range []string{TypeHello, TypeWelcome, TypeChanges, TypeNotify, TypeAck, TypeSnapshotRequest, TypeSnapshotPage, TypeError} {
		if !seen[typ] {
			t.Errorf("no round trip of %q", typ)
		}
	}
}

func TestEncodeExtensionShapes(t *testing.T) {
	// The examples of docs/PROTOCOL.md, field for field.
	for _, c := range []struct {
		m    Message
		want string
	}{
		{&Ack{Batch: 8, Version: 41, Duplicate: true}, `{"type":"ack","batch":8,"version":41,"duplicate":true}`},
		{&SnapshotRequest{After: &synkfs.Key{Type: "user", ID: "41"}, Limit: 1000}, `{"type":"snapshot","after":{"type":"user","id":"41"},"limit":1000}`},
		{&Error{Code: "too-large", Message: "m", Batch: 8}, `{"type":"error","code":"too-large","message":"m","batch":8}`},
		{&Welcome{Protocol: 1, Epoch: "e", Version: 40, Floor: 3, Resync: false, LastBatch: 7},
			`{"type":"welcome","protocol":1,"epoch":"e","version":40,"floor":3,"features":[],"resync":false,"lastBatch":7}`},
		{&Ack{Batch: 1, Version: 2, Results: []Result{{Key: synkfs.Key{Type: "user", ID: "3"}, Status: StatusConflict, Deleted: true, CurrentVersion: 40}}},
			`{"type":"ack","batch":1,"version":2,"results":[{"type":"user","id":"3","status":"conflict","deleted":true,"currentVersion":40}]}`},
	} {
		got, err := Encode(c.m)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("Encode(%T)\n got %s\nwant %s", c.m, got, c.want)
		}
	}
}

// The messages of synk's original client and server, spelled as in
// PROTOCOL-synk.md (spaces included).
var originalMessages = []struct {
	data string
	want Message
}{
	{`{"type": "changes", "version": 0}`, &Changes{}},
	{`{"type": "changes", "version": 12,
 "update": [ {"type": "user", "id": "42", "version": 7, "name": "Ada", "age": 36} ],
 "delete": [ {"type": "user", "id": "7", "version": 12} ]}`,
		&Changes{Version: 12,
			Update: []synkfs.Record{rec("user", "42", 7, `{"name":"Ada","age":36}`)},
			Delete: []synkfs.Tombstone{{Key: synkfs.Key{Type: "user", ID: "7"}, Version: 12}}}},
	{`{"type": "changes", "version": 15, "update": [], "delete": []}`, &Changes{Version: 15}},
	{`{"type": "notify", "version": 15}`, &Notify{Version: 15}},
}

func TestDecodeOriginalMessages(t *testing.T) {
	for _, c := range originalMessages {
		got, err := Decode([]byte(c.data), nil)
		if err != nil {
			t.Fatalf("decode %s: %v", c.data, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("decode %s:\n got %#v\nwant %#v", c.data, got, c.want)
		}
	}
}

// TestEncodedChangesSatisfySynkClients checks what a validating synk
// client insists on, on the encoding of every changes and notify message.
func TestEncodedChangesSatisfySynkClients(t *testing.T) {
	for _, m := range []Message{&Changes{}, &Changes{Version: 3, Update: []synkfs.Record{rec("a", "b", 3, `{"x":1}`)}},
		&Changes{Version: 4, Delete: []synkfs.Tombstone{{Key: synkfs.Key{Type: "a", ID: "b"}, Version: 4}}}, &Notify{}} {
		data, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]any
		if err := json.Unmarshal(data, &top); err != nil {
			t.Fatal(err)
		}
		if _, ok := top["version"].(float64); !ok {
			t.Errorf("%s: version is not a number", data)
		}
		if m.Type() == TypeNotify {
			continue
		}
		for _, name := range []string{"update", "delete"} {
			arr, ok := top[name].([]any)
			if !ok {
				t.Errorf("%s: %q is %v, not an array", data, name, top[name])
			}
			for _, e := range arr {
				o, _ := e.(map[string]any)
				_, ts := o["type"].(string)
				_, is := o["id"].(string)
				_, vn := o["version"].(float64)
				if !ts || !is || !vn {
					t.Errorf("%s: %s entry %v lacks string type/id or numeric version", data, name, e)
				}
			}
		}
	}
}

// TestDecodeRecordsLikeRecordUnmarshal: Decode's record reader must give
// the same Record as synkfs.Record.UnmarshalJSON on well-formed records.
func TestDecodeRecordsLikeRecordUnmarshal(t *testing.T) {
	for _, r := range []string{
		`{"type":"user","id":"42","version":7,"name":"Ada","age":36}`,
		`{"z":{"b":1,"a":[1,2]},"id":"x","type":"t","version":1e3,"html":"<&>"}`,
		`{"type":"t","id":"","version":0}`,
		`{"type":"t","id":"i","version":2, "b" : [ 1, 2 ], "a":"<\u0026>", "k\u003c":1, "a":3}`,
	} {
		var want synkfs.Record
		if err := json.Unmarshal([]byte(r), &want); err != nil {
			t.Fatal(err)
		}
		m, err := Decode([]byte(`{"type":"changes","version":1,"update":[`+r+`]}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.(*Changes).Update[0]; !reflect.DeepEqual(got, want) {
			t.Errorf("record %s:\n got %#v\nwant %#v", r, got, want)
		}
	}
}

func codeOf(t *testing.T, err error) *CodeError {
	t.Helper()
	var ce *CodeError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CodeError", err, err)
	}
	return ce
}

func TestDecodeRefusesBadShapes(t *testing.T) {
	for _, c := range []struct {
		data, code, says string
	}{
		{``, CodeBadMessage, "not valid JSON"},
		{`garbage`, CodeBadMessage, "not valid JSON"},
		{`{"type":"changes","version":1`, CodeBadMessage, "not valid JSON"},
		{`{"type":"changes","version":1}{}`, CodeBadMessage, "not valid JSON"},
		{`[1,2]`, CodeBadMessage, "not an object"},
		{`"changes"`, CodeBadMessage, "not an object"},
		{`null`, CodeBadMessage, "null"},
		{`{"version":1}`, CodeBadMessage, `no "type"`},
		{`{"type":7}`, CodeBadMessage, "not a string"},
		{`{"type":"chnages","version":1}`, CodeBadMessage, `unknown message type "chnages"`},
		{`{"type":"changes"}`, CodeBadMessage, `no numeric "version"`},
		{`{"type":"changes","version":null}`, CodeBadMessage, `no numeric "version"`},
		{`{"type":"changes","version":"3"}`, CodeBadMessage, "non-negative integer"},
		{`{"type":"changes","version":-1}`, CodeBadMessage, "non-negative integer"},
		{`{"type":"changes","version":1.5}`, CodeBadMessage, "non-negative integer"},
		{`{"type":"changes","version":1e30}`, CodeBadMessage, "non-negative integer"},
		{`{"type":"changes","version":1,"update":null}`, CodeBadMessage, `"update" of a changes message is null`},
		{`{"type":"changes","version":1,"delete":null}`, CodeBadMessage, `"delete" of a changes message is null`},
		{`{"type":"changes","version":1,"update":{}}`, CodeBadMessage, "not an array"},
		{`{"type":"changes","version":1,"update":[3]}`, CodeBadMessage, "update[0]"},
		{`{"type":"changes","version":1,"update":[{"type":"a","id":1,"version":1}]}`, CodeBadMessage, `update[0] of a changes message has no string "id"`},
		{`{"type":"changes","version":1,"update":[{"id":"1","version":1}]}`, CodeBadMessage, `no string "type"`},
		{`{"type":"changes","version":1,"update":[{"type":"a","id":"1"}]}`, CodeBadMessage, `no numeric "version"`},
		{`{"type":"changes","version":1,"update":[{"type":"a","id":"1","version":null}]}`, CodeBadMessage, `"version" null`},
		{`{"type":"changes","version":1,"update":[{"type":"a","id":"1","type":"b","version":1}]}`, CodeBadMessage, `has "type" twice`},
		{`{"type":"changes","version":1,"delete":[{"type":"a","id":"1","version":1,"version":2}]}`, CodeBadMessage, `has "version" twice`},
		{`{"type":"changes","version":1,"update":[{"type":"a","id":"1","version":1e300}]}`, CodeBadMessage, "non-negative integer"},
		{`{"type":"changes","version":1,"delete":[{"type":"a","id":"1"}]}`, CodeBadMessage, `delete[0] of a changes message has no numeric "version"`},
		{`{"type":"changes","version":1,"delete":[{"type":"a","id":"1","version":"2"}]}`, CodeBadMessage, "not a non-negative integer"},
		{`{"type":"changes","version":1,"delete":[{"type":"a","version":2}]}`, CodeBadMessage, `no string "id"`},
		{`{"type":"notify"}`, CodeBadMessage, `notify message has no numeric "version"`},
		{`{"type":"snapshot-page","version":1,"records":null}`, CodeBadMessage, `"records" of a snapshot-page message is null`},
		{`{"type":"snapshot","after":"user/1"}`, CodeBadMessage, `"after"`},
		{`{"type":"snapshot","limit":-5}`, CodeBadMessage, `"limit"`},
		{`{"type":"hello","features":"zstd"}`, CodeBadMessage, `"features"`},
		{`{"type":"welcome","resync":"yes"}`, CodeBadMessage, "true or false"},
		{`{"type":"ack","results":[{"status":1}]}`, CodeBadMessage, `"status"`},
		{`{"type":"ack","results":[{"status":"conflict","current":{"type":"a"}}]}`, CodeBadMessage, `results[0].current`},
	} {
		_, err := Decode([]byte(c.data), nil)
		if err == nil {
			t.Errorf("Decode(%s) succeeded, want %s", c.data, c.code)
			continue
		}
		ce := codeOf(t, err)
		if ce.Code != c.code || !strings.Contains(ce.Message, c.says) {
			t.Errorf("Decode(%s) = %v, want %s saying %q", c.data, ce, c.code, c.says)
		}
	}
}

func TestDecodeAcceptsNumbersAsJavaScriptSpellsThem(t *testing.T) {
	for data, want := range map[string]uint64{
		`{"type":"notify","version":7.0}`:                  7,
		`{"type":"notify","version":1e3}`:                  1000,
		`{"type":"notify","version":18446744073709551615}`: 1<<64 - 1,
		`{"type":"notify","version":-0}`:                   0,
	} {
		m, err := Decode([]byte(data), nil)
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		if got := m.(*Notify).Version; got != want {
			t.Errorf("Decode(%s) version %d, want %d", data, got, want)
		}
	}
}

func TestLimitMessageSize(t *testing.T) {
	body := strings.Repeat("x", DefaultMaxMessage)
	data := []byte(`{"type":"changes","version":1,"update":[{"type":"a","id":"b","version":1,"s":"` + body + `"}]}`)
	ce := codeOf(t, decodeErr(Decode(data, nil)))
	if ce.Code != CodeTooLarge || !strings.Contains(ce.Message, fmt.Sprintf("message of %d bytes is over the 4 MiB limit", len(data))) {
		t.Errorf("got %v", ce)
	}
	// A custom limit, and the boundary.
	small := []byte(`{"type":"notify","version":1}`)
	if _, err := Decode(small, &Limits{MaxMessage: int64(len(small))}); err != nil {
		t.Errorf("message at the limit refused: %v", err)
	}
	ce = codeOf(t, decodeErr(Decode(small, &Limits{MaxMessage: int64(len(small) - 1)})))
	if ce.Code != CodeTooLarge {
		t.Errorf("got %v", ce)
	}
}

func decodeErr(_ Message, err error) error {
	if err == nil {
		return errors.New("decode succeeded")
	}
	return err
}

func TestLimitDepth(t *testing.T) {
	start := time.Now()
	deep := []byte(strings.Repeat("[", 100_000))
	ce := codeOf(t, decodeErr(Decode(deep, nil)))
	if ce.Code != CodeTooDeep || !strings.Contains(ce.Message, "limit of 64") {
		t.Errorf("got %v", ce)
	}
	deepObj := []byte(`{"type":"changes","version":1,"update":[{"type":"a","id":"b","version":1,"x":` +
		strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000) + `}]}`)
	if ce := codeOf(t, decodeErr(Decode(deepObj, nil))); ce.Code != CodeTooDeep {
		t.Errorf("got %v", ce)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing deep messages took %v", d)
	}

	// The message object is level 1, the update array 2, a record 3: a
	// body may nest up to the limit and not beyond.
	nest := func(levels int) []byte {
		return []byte(`{"type":"changes","version":1,"update":[{"type":"a","id":"b","version":1,"x":` +
			strings.Repeat("[", levels-3) + strings.Repeat("]", levels-3) + `}]}`)
	}
	if _, err := Decode(nest(64), nil); err != nil {
		t.Errorf("64 levels refused: %v", err)
	}
	if ce := codeOf(t, decodeErr(Decode(nest(65), nil))); ce.Code != CodeTooDeep {
		t.Errorf("65 levels: %v", ce)
	}
	if _, err := Decode(nest(10), &Limits{MaxDepth: 9}); err == nil {
		t.Errorf("custom depth limit ignored")
	}

	// Brackets inside strings, escaped quotes included, do not count.
	str := `{"type":"changes","version":1,"update":[{"type":"a","id":"\"\\` + strings.Repeat("[{", 1000) + `","version":1}]}`
	m, err := Decode([]byte(str), nil)
	if err != nil {
		t.Fatalf("brackets in a string refused: %v", err)
	}
	if id := m.(*Changes).Update[0].ID; id != `"\`+strings.Repeat("[{", 1000) {
		t.Errorf("id %q", id)
	}
}

func TestLimitRecordsPerBatch(t *testing.T) {
	batch := func(n, d int) []byte {
		var b strings.Builder
		b.WriteString(`{"type":"changes","version":1,"update":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"t","id":"%d","version":1}`, i)
		}
		b.WriteString(`],"delete":[`)
		for i := range d {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"t","id":"d%d","version":1}`, i)
		}
		b.WriteString(`]}`)
		return []byte(b.String())
	}
	ce := codeOf(t, decodeErr(Decode(batch(12000, 0), nil)))
	if ce.Code != CodeTooMany || ce.Message != "batch of 12000 records is over the limit of 10000" {
		t.Errorf("got %v", ce)
	}
	m, err := Decode(batch(10000, 0), nil)
	if err != nil || len(m.(*Changes).Update) != 10000 {
		t.Fatalf("10000 records: %v", err)
	}
	lim := &Limits{MaxRecords: 5}
	if _, err := Decode(batch(3, 2), lim); err != nil {
		t.Errorf("3+2 under a limit of 5: %v", err)
	}
	ce = codeOf(t, decodeErr(Decode(batch(3, 3), lim)))
	if ce.Code != CodeTooMany || ce.Message != "batch of 6 records and deletes is over the limit of 5" {
		t.Errorf("got %v", ce)
	}
}

func TestLimitRecordSize(t *testing.T) {
	lim := &Limits{MaxRecord: 100}
	small := `{"type":"t","id":"1","version":1}`
	big := `{"type":"t","id":"2","version":1,"s":"` + strings.Repeat("y", 100) + `"}`
	_, err := Decode([]byte(`{"type":"changes","version":1,"update":[`+small+`,`+big+`]}`), lim)
	ce := codeOf(t, err)
	want := fmt.Sprintf("record update[1] of %d bytes is over the 100 bytes limit", len(big))
	if ce.Code != CodeTooLarge || ce.Message != want {
		t.Errorf("got %v, want %q", ce, want)
	}
	// The default limit is 1 MiB.
	huge := `{"type":"t","id":"2","version":1,"s":"` + strings.Repeat("y", 1<<20) + `"}`
	ce = codeOf(t, decodeErr(Decode([]byte(`{"type":"snapshot-page","version":1,"records":[`+huge+`]}`), nil)))
	if ce.Code != CodeTooLarge || !strings.Contains(ce.Message, "records[0]") || !strings.Contains(ce.Message, "1 MiB limit") {
		t.Errorf("got %v", ce)
	}
}

func TestEncodeRefusesNilAndBadBodies(t *testing.T) {
	if _, err := Encode(nil); err == nil {
		t.Error("Encode(nil) succeeded")
	}
	if _, err := Encode((*Changes)(nil)); err == nil {
		t.Error("Encode of a nil *Changes succeeded")
	}
	if _, err := Encode(&Changes{Update: []synkfs.Record{rec("a", "b", 1, `[1]`)}}); err == nil {
		t.Error("a body that is not an object was encoded")
	}
	if _, err := Encode(&Changes{Update: []synkfs.Record{rec("a", "b", 1, `{"x":}`)}}); err == nil {
		t.Error("a body that is not JSON was encoded")
	}
}

func TestSizeSentences(t *testing.T) {
	for n, want := range map[int64]string{1: "1 byte", 100: "100 bytes", 2048: "2 KiB", 1536: "1.5 KiB", 4 << 20: "4 MiB", 5<<20 + 1<<19: "5.5 MiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}

package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/synkfs/synkfs"
)

// Encode returns m as one JSON message. Arrays that synk's validating
// clients require (update, delete, records, features) are written as
// arrays even when nil. It fails only on a nil message or a record whose
// Body is not a JSON object.
func Encode(m Message) ([]byte, error) {
	if m == nil || reflect.ValueOf(m).IsNil() {
		return nil, errors.New("encode: nil message")
	}
	// Every Message implements json.Marshaler and produces compact,
	// validated JSON itself: calling it directly spares encoding/json a
	// second pass over the output.
	return m.(json.Marshaler).MarshalJSON()
}

// Decode parses one message, enforcing lim (nil means DefaultLimits) and
// the shapes of docs/PROTOCOL.md. Cheap checks come first, before any
// parsing builds values: the total size, then the nesting depth (a scan
// that never recurses), then the number of records and each record's
// size, and only then the records themselves.
//
// Every error is a *CodeError whose Message is a sentence fit to send
// back to the peer. Fields Decode does not know are ignored. Empty arrays
// decode as nil slices.
func Decode(data []byte, lim *Limits) (Message, error) {
	l := lim.withDefaults()
	if n := int64(len(data)); n > l.MaxMessage {
		return nil, codeErrorf(CodeTooLarge, "message of %d bytes is over the %s limit", n, size(l.MaxMessage))
	}
	if err := checkDepth(data, l.MaxDepth); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, codeErrorf(CodeBadMessage, "message is a JSON %s, not an object", te.Value)
		}
		return nil, codeErrorf(CodeBadMessage, "message is not valid JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if top == nil {
		return nil, codeErrorf(CodeBadMessage, "message is null, not an object")
	}
	raw, ok := top["type"]
	if !ok {
		return nil, codeErrorf(CodeBadMessage, `message has no "type" field`)
	}
	var typ string
	if err := json.Unmarshal(raw, &typ); err != nil {
		return nil, codeErrorf(CodeBadMessage, `message "type" is %s, not a string`, clip(raw))
	}
	d := decoder{typ: typ, f: top, l: l}
	switch typ {
	case TypeChanges:
		return d.changes()
	case TypeNotify:
		return d.notify()
	case TypeHello:
		return d.hello()
	case TypeWelcome:
		return d.welcome()
	case TypeAck:
		return d.ack()
	case TypeSnapshotRequest:
		return d.snapshotRequest()
	case TypeSnapshotPage:
		return d.snapshotPage()
	case TypeError:
		return d.error()
	}
	return nil, codeErrorf(CodeBadMessage, "unknown message type %q", clipString(typ))
}

// checkDepth refuses data nested deeper than max. It scans bytes with
// two states (in or out of a string) and a counter, so a hostile message
// of a million '[' costs a linear scan and no recursion. It does not
// validate JSON; json.Unmarshal does that afterwards.
func checkDepth(data []byte, max int) error {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			// Skip to the closing quote, stepping over escapes.
			for i++; i < len(data); i++ {
				j := bytes.IndexAny(data[i:], `"\`)
				if j < 0 {
					return nil // unterminated string: not JSON, Unmarshal says so
				}
				i += j
				if data[i] == '"' {
					break
				}
				i++ // the escaped byte
			}
		case '[', '{':
			depth++
			if depth > max {
				return codeErrorf(CodeTooDeep, "message nests deeper than the limit of %d levels", max)
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// decoder reads the fields of one top-level message.
type decoder struct {
	typ   string
	f     map[string]json.RawMessage
	l     Limits
	count int // records, deletes and results so far
}

func (d *decoder) changes() (Message, error) {
	m := &Changes{}
	if err := d.uint("version", &m.Version, true); err != nil {
		return nil, err
	}
	if err := d.uint("batch", &m.Batch, false); err != nil {
		return nil, err
	}
	update, err := d.array("update")
	if err != nil {
		return nil, err
	}
	deletes, err := d.array("delete")
	if err != nil {
		return nil, err
	}
	if n := len(update) + len(deletes); n > d.l.MaxRecords {
		what := "records"
		if len(deletes) > 0 {
			what = "records and deletes"
		}
		return nil, codeErrorf(CodeTooMany, "batch of %d %s is over the limit of %d", n, what, d.l.MaxRecords)
	}
	if m.Update, err = d.records("update", update); err != nil {
		return nil, err
	}
	if len(deletes) > 0 {
		m.Delete = make([]synkfs.Tombstone, len(deletes))
		for i, raw := range deletes {
			if err := d.tombstone(raw, loc{"delete", i, ""}, &m.Delete[i]); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (d *decoder) notify() (Message, error) {
	m := &Notify{}
	if err := d.uint("version", &m.Version, true); err != nil {
		return nil, err
	}
	return m, nil
}

func (d *decoder) hello() (Message, error) {
	m := &Hello{}
	err := errors.Join(
		d.int("protocol", &m.Protocol),
		d.string("client", &m.Client),
		d.string("epoch", &m.Epoch),
		d.uint("version", &m.Version, false),
		d.strings("features", &m.Features),
	)
	return firstError(m, err)
}

func (d *decoder) welcome() (Message, error) {
	m := &Welcome{}
	err := errors.Join(
		d.int("protocol", &m.Protocol),
		d.string("epoch", &m.Epoch),
		d.uint("version", &m.Version, false),
		d.uint("floor", &m.Floor, false),
		d.strings("features", &m.Features),
		d.bool("resync", &m.Resync),
		d.uint("lastBatch", &m.LastBatch, false),
	)
	return firstError(m, err)
}

func (d *decoder) ack() (Message, error) {
	m := &Ack{}
	if err := errors.Join(
		d.uint("batch", &m.Batch, false),
		d.uint("version", &m.Version, false),
		d.bool("duplicate", &m.Duplicate),
	); err != nil {
		return firstError(nil, err)
	}
	results, err := d.array("results")
	if err != nil {
		return nil, err
	}
	if len(results) > d.l.MaxRecords {
		return nil, codeErrorf(CodeTooMany, "ack of %d results is over the limit of %d", len(results), d.l.MaxRecords)
	}
	if len(results) > 0 {
		m.Results = make([]Result, len(results))
		for i, raw := range results {
			if err := d.result(raw, i, &m.Results[i]); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (d *decoder) snapshotRequest() (Message, error) {
	m := &SnapshotRequest{}
	err := errors.Join(
		d.key(d.f, "after", &m.After),
		d.int("limit", &m.Limit),
	)
	return firstError(m, err)
}

func (d *decoder) snapshotPage() (Message, error) {
	m := &SnapshotPage{}
	if err := errors.Join(
		d.string("epoch", &m.Epoch),
		d.uint("version", &m.Version, false),
		d.key(d.f, "next", &m.Next),
		d.bool("done", &m.Done),
		d.int("total", &m.Total),
	); err != nil {
		return firstError(nil, err)
	}
	records, err := d.array("records")
	if err != nil {
		return nil, err
	}
	if len(records) > d.l.MaxRecords {
		return nil, codeErrorf(CodeTooMany, "snapshot page of %d records is over the limit of %d", len(records), d.l.MaxRecords)
	}
	if m.Records, err = d.records("records", records); err != nil {
		return nil, err
	}
	return m, nil
}

func (d *decoder) error() (Message, error) {
	m := &Error{}
	err := errors.Join(
		d.string("code", &m.Code),
		d.string("message", &m.Message),
		d.uint("batch", &m.Batch, false),
	)
	return firstError(m, err)
}

// firstError returns m, or the first *CodeError joined in err.
func firstError(m Message, err error) (Message, error) {
	if err == nil {
		return m, nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return nil, j.Unwrap()[0]
	}
	return nil, err
}

// present returns the raw value of a top-level field, or nil when it is
// absent or null: optional fields treat null as absent.
func (d *decoder) present(name string) json.RawMessage {
	raw, ok := d.f[name]
	if !ok || isNull(raw) {
		return nil
	}
	return raw
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func (d *decoder) badField(name, want string, raw json.RawMessage) *CodeError {
	return codeErrorf(CodeBadMessage, "%q of a %s message is %s, not %s", name, d.typ, clip(raw), want)
}

// uint reads a non-negative integer field. A required field must be
// present and not null, as synk's clients insist for "version".
func (d *decoder) uint(name string, dst *uint64, required bool) error {
	raw := d.present(name)
	if raw == nil {
		if required {
			return codeErrorf(CodeBadMessage, "%s message has no numeric %q", d.typ, name)
		}
		return nil
	}
	v, ok := parseUint(raw)
	if !ok {
		return d.badField(name, "a non-negative integer", raw)
	}
	*dst = v
	return nil
}

func (d *decoder) int(name string, dst *int) error {
	raw := d.present(name)
	if raw == nil {
		return nil
	}
	v, ok := parseUint(raw)
	if !ok || v > math.MaxInt32 {
		return d.badField(name, "a non-negative integer", raw)
	}
	*dst = int(v)
	return nil
}

func (d *decoder) string(name string, dst *string) error {
	raw := d.present(name)
	if raw == nil {
		return nil
	}
	if raw[0] != '"' || json.Unmarshal(raw, dst) != nil {
		return d.badField(name, "a string", raw)
	}
	return nil
}

func (d *decoder) bool(name string, dst *bool) error {
	raw := d.present(name)
	if raw == nil {
		return nil
	}
	switch string(raw) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		return d.badField(name, "true or false", raw)
	}
	return nil
}

func (d *decoder) strings(name string, dst *[]string) error {
	raw := d.present(name)
	if raw == nil {
		return nil
	}
	var s []string
	if raw[0] != '[' || json.Unmarshal(raw, &s) != nil {
		return d.badField(name, "an array of strings", raw)
	}
	if len(s) > 0 {
		*dst = s
	}
	return nil
}

// key reads an optional {"type","id"} object from fields.
func (d *decoder) key(fields map[string]json.RawMessage, name string, dst **synkfs.Key) error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	var obj map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return d.badField(name, `an object with "type" and "id"`, raw)
	}
	var k synkfs.Key
	if !getString(obj, "type", &k.Type) || !getString(obj, "id", &k.ID) {
		return d.badField(name, `an object with string "type" and "id"`, raw)
	}
	*dst = &k
	return nil
}

// array reads an optional array field: absent gives nil, null is refused
// (synk's clients throw on it), anything else but an array is refused.
func (d *decoder) array(name string) ([]json.RawMessage, error) {
	raw, ok := d.f[name]
	if !ok {
		return nil, nil
	}
	if isNull(raw) {
		return nil, codeErrorf(CodeBadMessage, "%q of a %s message is null; send an array or leave it out", name, d.typ)
	}
	// The whole message was validated by json.Unmarshal: split the array
	// without decoding it again.
	elems, ok := elements(raw)
	if !ok {
		return nil, d.badField(name, "an array", raw)
	}
	return elems, nil
}

// records decodes the entries of a record array, checking each one's size
// before parsing it.
func (d *decoder) records(name string, elems []json.RawMessage) ([]synkfs.Record, error) {
	if len(elems) == 0 {
		return nil, nil
	}
	recs := make([]synkfs.Record, len(elems))
	for i, raw := range elems {
		if err := d.record(raw, loc{name, i, ""}, &recs[i]); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// record decodes one record in synk's flat form: string "type" and "id",
// numeric "version", each once; every other field, with its value's bytes
// as sent and in the order sent, becomes Body, as
// synkfs.Record.UnmarshalJSON makes it (FuzzRecord checks this).
func (d *decoder) record(raw json.RawMessage, at loc, dst *synkfs.Record) error {
	if len(raw) > d.l.MaxRecord {
		return codeErrorf(CodeTooLarge, "record %s of %d bytes is over the %s limit", at, len(raw), size(int64(d.l.MaxRecord)))
	}
	body := make([]byte, 1, len(raw))
	body[0] = '{'
	r, ok := d.reserved(raw, at, func(key string, val []byte) {
		if len(body) > 1 {
			body = append(body, ',')
		}
		body = appendKey(body, key)
		body = append(body, ':')
		body = append(body, val...)
	})
	if !ok {
		return codeErrorf(CodeBadMessage, "%s of a %s message is %s, not a record object", at, d.typ, clip(raw))
	}
	if err := d.keyVersion(r, at, &dst.Key, &dst.Version); err != nil {
		return err
	}
	dst.Body = append(body, '}')
	return nil
}

// tombstone decodes one delete entry {"type","id","version"}; other
// fields are ignored.
func (d *decoder) tombstone(raw json.RawMessage, at loc, dst *synkfs.Tombstone) error {
	if len(raw) > d.l.MaxRecord {
		return codeErrorf(CodeTooLarge, "entry %s of %d bytes is over the %s limit", at, len(raw), size(int64(d.l.MaxRecord)))
	}
	r, ok := d.reserved(raw, at, nil)
	if !ok {
		return codeErrorf(CodeBadMessage, "%s of a %s message is %s, not an object", at, d.typ, clip(raw))
	}
	return d.keyVersion(r, at, &dst.Key, &dst.Version)
}

// reservedFields holds the raw values of an entry's "type", "id" and
// "version" (nil when absent) and the first reserved name seen twice.
type reservedFields struct {
	typ, id, version []byte
	dup              string
}

// reserved walks the members of the object raw, collecting the reserved
// fields and handing every other member to body (when not nil).
func (d *decoder) reserved(raw []byte, at loc, body func(key string, val []byte)) (reservedFields, bool) {
	var r reservedFields
	set := func(dst *[]byte, name string, val []byte) {
		if *dst != nil && r.dup == "" {
			r.dup = name
		}
		*dst = val
	}
	ok := eachMember(raw, func(key, val []byte) {
		switch k, _ := unquote(key); k {
		case synkfs.FieldType:
			set(&r.typ, k, val)
		case synkfs.FieldID:
			set(&r.id, k, val)
		case synkfs.FieldVersion:
			set(&r.version, k, val)
		default:
			if body != nil {
				body(k, val)
			}
		}
	})
	return r, ok
}

// keyVersion checks and decodes the reserved fields of an entry.
func (d *decoder) keyVersion(r reservedFields, at loc, k *synkfs.Key, v *uint64) error {
	if r.dup != "" {
		return codeErrorf(CodeBadMessage, `%s of a %s message has %q twice`, at, d.typ, r.dup)
	}
	var ok bool
	if k.Type, ok = unquote(r.typ); !ok {
		return codeErrorf(CodeBadMessage, `%s of a %s message has no string "type"`, at, d.typ)
	}
	if k.ID, ok = unquote(r.id); !ok {
		return codeErrorf(CodeBadMessage, `%s of a %s message has no string "id"`, at, d.typ)
	}
	if r.version == nil {
		return codeErrorf(CodeBadMessage, `%s of a %s message has no numeric "version"`, at, d.typ)
	}
	if *v, ok = parseUint(r.version); !ok {
		return codeErrorf(CodeBadMessage, `%s of a %s message has "version" %s, not a non-negative integer`, at, d.typ, clip(r.version))
	}
	return nil
}

// result decodes one entry of an ack's results.
func (d *decoder) result(raw json.RawMessage, i int, dst *Result) error {
	if len(raw) > d.l.MaxRecord {
		return codeErrorf(CodeTooLarge, "entry results[%d] of %d bytes is over the %s limit", i, len(raw), size(int64(d.l.MaxRecord)))
	}
	var fields map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
		return codeErrorf(CodeBadMessage, "results[%d] of an ack message is %s, not an object", i, clip(raw))
	}
	sub := decoder{typ: d.typ, f: fields, l: d.l}
	if err := errors.Join(
		sub.string("type", &dst.Type),
		sub.string("id", &dst.ID),
		sub.string("status", &dst.Status),
		sub.bool("deleted", &dst.Deleted),
		sub.uint("currentVersion", &dst.CurrentVersion, false),
		sub.string("code", &dst.Code),
		sub.string("message", &dst.Message),
	); err != nil {
		_, err = firstError(nil, err)
		return err
	}
	if cur := sub.present("current"); cur != nil {
		dst.Current = new(synkfs.Record)
		if err := d.record(cur, loc{"results", i, ".current"}, dst.Current); err != nil {
			return err
		}
	}
	return nil
}

// loc names an entry of a message for error sentences: "update[3]",
// "results[0].current". It is formatted only when an error is reported.
type loc struct {
	name   string
	i      int
	suffix string
}

func (l loc) String() string { return l.name + "[" + strconv.Itoa(l.i) + "]" + l.suffix }

// getString reads a string field; false when absent or not a string.
func getString(fields map[string]json.RawMessage, name string, dst *string) bool {
	raw, ok := fields[name]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return false
	}
	return json.Unmarshal(raw, dst) == nil
}

// parseUint reads a JSON number that is a non-negative integer: exactly
// up to 2^64-1 when spelled as an integer, and up to 2^53 when spelled as
// a float (1e3, 7.0), as JavaScript peers may; as synkfs.Record does.
func parseUint(raw json.RawMessage) (uint64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	s := string(raw)
	if v, err := strconv.ParseUint(s, 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return 0, false
	}
	return uint64(f), true
}

// clip quotes at most 40 bytes of a raw value for an error sentence.
func clip(raw json.RawMessage) string {
	if len(raw) > 40 {
		return string(raw[:37]) + "..."
	}
	return string(raw)
}

func clipString(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

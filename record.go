// Package synkfs holds the vocabulary shared by every part of synkfs:
// records and their keys, versions, batches of changes, tombstones and the
// Store contract that the in-memory and file-backed stores both keep.
//
// It depends on the standard library only, so that every other package can
// import it without pulling in storage, transport or FUSE code.
package synkfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Reserved field names of a record on the wire. Everything else is body.
const (
	FieldType    = "type"
	FieldID      = "id"
	FieldVersion = "version"
)

// Key identifies a record: its type and its id.
// The zero Key is invalid.
type Key struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// String returns the key as synk spells it, "type::id".
func (k Key) String() string { return k.Type + "::" + k.ID }

// Path returns the key as users write it on the command line, "type/id".
// It is for messages only: it is not escaped.
func (k Key) Path() string { return k.Type + "/" + k.ID }

// Compare orders keys by type, then id, returning -1, 0 or +1 (for
// slices.SortFunc and ordered indexes). Snapshots page in this order.
func (k Key) Compare(o Key) int {
	if c := strings.Compare(k.Type, o.Type); c != 0 {
		return c
	}
	return strings.Compare(k.ID, o.ID)
}

// Less reports whether k orders before o (see Compare).
func (k Key) Less(o Key) bool { return k.Compare(o) < 0 }

// Validate reports whether k can name a record.
func (k Key) Validate() error {
	if k.Type == "" {
		return fmt.Errorf("record %q: empty type", k.String())
	}
	if k.ID == "" {
		return fmt.Errorf("record %q: empty id", k.String())
	}
	return nil
}

// Record is one JSON record: a key, the server version that last wrote it,
// and a body holding every other field.
//
// Body is a JSON object without the reserved fields. Stores keep it in
// canonical form (see package merge) so that equal bodies compare equal as
// bytes; a nil Body means the empty object.
type Record struct {
	Key
	Version uint64
	Body    json.RawMessage
}

// Tombstone records that a key was deleted at Version.
type Tombstone struct {
	Key
	Version uint64 `json:"version"`
}

// MarshalJSON writes the record in synk's flat wire form:
// {"type":..,"id":..,"version":..,<body fields>}.
func (r Record) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"type":`)
	writeJSONString(&buf, r.Type)
	buf.WriteString(`,"id":`)
	writeJSONString(&buf, r.ID)
	fmt.Fprintf(&buf, `,"version":%d`, r.Version)
	body := bytes.TrimSpace(r.Body)
	if len(body) > 2 {
		if body[0] != '{' || body[len(body)-1] != '}' {
			return nil, fmt.Errorf("record %s: body is not a JSON object", r.Key)
		}
		inner := bytes.TrimSpace(body[1 : len(body)-1])
		if len(inner) > 0 {
			buf.WriteByte(',')
			buf.Write(inner)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads synk's flat wire form. The reserved fields fill Key and
// Version; every other field, with its bytes as sent and in the order sent,
// becomes Body. It does not canonicalize: callers that compare or store
// bodies run them through merge.CanonicalObject, which also refuses
// duplicate keys.
func (r *Record) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("record: not a JSON object")
	}
	var (
		rec             Record
		body            bytes.Buffer
		seenT, seenI, v bool
	)
	body.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("record: %w", err)
		}
		name := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("record: field %q: %w", name, err)
		}
		switch name {
		case FieldType, FieldID:
			dst, seen := &rec.Type, &seenT
			if name == FieldID {
				dst, seen = &rec.ID, &seenI
			}
			if *seen {
				return fmt.Errorf("record: duplicate %q", name)
			}
			*seen = true
			if err := json.Unmarshal(raw, dst); err != nil || string(raw) == "null" {
				return fmt.Errorf("record: %q is not a string", name)
			}
		case FieldVersion:
			if v {
				return fmt.Errorf("record: duplicate %q", name)
			}
			v = true
			n, err := parseVersion(raw)
			if err != nil {
				return fmt.Errorf("record %s: %w", rec.Key, err)
			}
			rec.Version = n
		default:
			if body.Len() > 1 {
				body.WriteByte(',')
			}
			writeJSONString(&body, name)
			body.WriteByte(':')
			body.Write(raw)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if !seenT {
		return fmt.Errorf("record: missing %q", FieldType)
	}
	if !seenI {
		return fmt.Errorf("record: missing %q", FieldID)
	}
	body.WriteByte('}')
	rec.Body = body.Bytes()
	*r = rec
	return nil
}

// parseVersion reads a version number exactly: integers up to 2^64-1 keep
// every digit; an integral float spelling such as 7.0 or 1e3 is accepted;
// null means 0.
func parseVersion(raw json.RawMessage) (uint64, error) {
	s := string(raw)
	if s == "null" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1<<53 || f != math.Trunc(f) {
		return 0, fmt.Errorf("version %s is not a non-negative integer", s)
	}
	return uint64(f), nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

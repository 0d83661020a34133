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

// Less orders keys by type, then id. Snapshots page in this order.
func (k Key) Less(o Key) bool {
	if k.Type != o.Type {
		return k.Type < o.Type
	}
	return k.ID < o.ID
}

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
	Version uint64
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
// Version; the remaining fields become Body, as a JSON object with its
// keys sorted. Callers that compare bodies canonicalize them (package merge).
func (r *Record) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if fields == nil {
		return errors.New("record: not a JSON object")
	}
	var rec Record
	if err := decodeString(fields, FieldType, &rec.Type); err != nil {
		return err
	}
	if err := decodeString(fields, FieldID, &rec.ID); err != nil {
		return err
	}
	if raw, ok := fields[FieldVersion]; ok && string(raw) != "null" {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f < 0 || f != float64(uint64(f)) {
			return fmt.Errorf("record %s: version %s is not a non-negative integer", rec.Key, raw)
		}
		rec.Version = uint64(f)
	}
	delete(fields, FieldType)
	delete(fields, FieldID)
	delete(fields, FieldVersion)
	body, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("record %s: %w", rec.Key, err)
	}
	rec.Body = body
	*r = rec
	return nil
}

func decodeString(fields map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := fields[name]
	if !ok {
		return fmt.Errorf("record: missing %q", name)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("record: %q is not a string", name)
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

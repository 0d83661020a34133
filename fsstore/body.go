package fsstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/merge"
)

// errBadEntry is wrapped by the errors parseBody returns: the file is not a
// valid record. Its message is the human reason.
var errBadEntry = errors.New("bad entry")

// badReason is an error whose text is a human reason a file is not a valid
// record.
type badReason struct{ msg string }

func (b *badReason) Error() string { return b.msg }
func (b *badReason) Unwrap() error { return errBadEntry }

func bad(format string, args ...any) error { return &badReason{fmt.Sprintf(format, args...)} }

// parseBody turns the contents of k's record file into its canonical body:
// the JSON object without "type", "id" and "version". It refuses, with an
// error wrapping errBadEntry, a file over max bytes, one that is not a JSON
// object, and one whose "type" or "id" contradicts k.
func parseBody(data []byte, k synkfs.Key, max int64) ([]byte, error) {
	if max > 0 && int64(len(data)) > max {
		return nil, bad("file is %d bytes, over the %d byte limit", len(data), max)
	}
	body, err := merge.CanonicalObject(data)
	if err != nil {
		if errors.Is(err, merge.ErrNotObject) {
			return nil, bad("not a JSON object")
		}
		return nil, bad("invalid JSON: %v", err)
	}
	if !bytes.Contains(body, []byte(`"type":`)) && !bytes.Contains(body, []byte(`"id":`)) &&
		!bytes.Contains(body, []byte(`"version":`)) {
		return body, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, bad("invalid JSON: %v", err)
	}
	reserved := false
	for _, f := range []struct{ name, want string }{{synkfs.FieldType, k.Type}, {synkfs.FieldID, k.ID}} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		reserved = true
		var got string
		if err := json.Unmarshal(raw, &got); err != nil || got != f.want {
			return nil, bad("field %q is %s but the file's path says %q", f.name, raw, f.want)
		}
		delete(fields, f.name)
	}
	if _, ok := fields[synkfs.FieldVersion]; ok {
		reserved = true
		delete(fields, synkfs.FieldVersion)
	}
	if !reserved {
		return body, nil // the substrings were inside values
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return nil, bad("invalid JSON: %v", err)
	}
	return merge.CanonicalObject(out) // undo Marshal's HTML escapes
}

// bodyHash is the content hash the index keeps of a canonical body.
func bodyHash(body []byte) [hashLen]byte {
	sum := sha256.Sum256(body)
	return [hashLen]byte(sum[:hashLen])
}

// canonicalBody returns a put's body in canonical form, nil meaning {}.
// It refuses reserved fields inside the body.
func canonicalBody(r synkfs.Record) ([]byte, error) {
	if len(bytes.TrimSpace(r.Body)) == 0 {
		return []byte("{}"), nil
	}
	body, err := parseBody(r.Body, r.Key, 0)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", r.Key, err)
	}
	return body, nil
}

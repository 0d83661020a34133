package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Conflict is a field that both sides changed, each in its own way.
//
// Path names the field from the top-level object down, one key per element.
// Base, Ours and Theirs hold the field's canonical value in each version,
// nil where the field is absent.
type Conflict struct {
	Path   []string
	Base   json.RawMessage
	Ours   json.RawMessage
	Theirs json.RawMessage
}

// Kind says how a field changed between the base and the two sides.
type Kind uint8

const (
	Unchanged     Kind = iota // the same in all three versions
	ChangedOurs               // changed (added, removed) on our side only
	ChangedTheirs             // changed on their side only
	ChangedBoth               // changed on both sides to the same value
	Conflicting               // changed on both sides to different values
)

func (k Kind) String() string {
	switch k {
	case Unchanged:
		return "unchanged"
	case ChangedOurs:
		return "ours"
	case ChangedTheirs:
		return "theirs"
	case ChangedBoth:
		return "both"
	case Conflicting:
		return "conflict"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// FieldDiff is one field of a three-way comparison: how it changed and its
// canonical value in each version (nil where absent).
type FieldDiff struct {
	Path   []string
	Kind   Kind
	Base   json.RawMessage
	Ours   json.RawMessage
	Theirs json.RawMessage
}

// Merge merges two versions of a JSON object, ours and theirs, that both
// derive from base. base may be nil or empty, meaning there is no common
// ancestor; it is then treated as {}, so a field present on both sides
// merges cleanly only if both hold the same value.
//
// The merge works field by field and recurses into objects present on both
// sides; arrays and scalars are atomic. For each field:
//
//   - changed (including added or removed) on one side only: that side's
//     value is taken;
//   - changed identically on both sides: that value is taken;
//   - changed differently on both sides: a Conflict is reported and ours is
//     taken (a field removed on our side stays removed). A removal on one
//     side and an edit on the other is a conflict.
//
// When both sides hold objects for a field that differ, the merge recurses
// into them, with the base's object for that field, or {} if the base held
// something else or nothing.
//
// merged is in canonical form. conflicts are ordered by path. Callers decide
// what to do with conflicts: merged is a usable body either way. err is set
// only when an input is not a canonicalizable JSON object.
func Merge(base, ours, theirs []byte) (merged []byte, conflicts []Conflict, err error) {
	b, o, t, err := parseThree(base, ours, theirs)
	if err != nil {
		return nil, nil, err
	}
	w := walker{}
	m := w.object(nil, &b, &o, &t)
	return appendCompact(make([]byte, 0, len(ours)), &m), w.conflicts, nil
}

// Diff compares two versions of a JSON object with their base, field by
// field, as Merge sees them: it reports every field of the three versions,
// ordered by path, recursing into objects where Merge would. Each
// conflict Merge reports appears here with Kind Conflicting.
func Diff(base, ours, theirs []byte) ([]FieldDiff, error) {
	b, o, t, err := parseThree(base, ours, theirs)
	if err != nil {
		return nil, err
	}
	w := walker{diff: true}
	w.object(nil, &b, &o, &t)
	return w.diffs, nil
}

func parseThree(base, ours, theirs []byte) (b, o, t value, err error) {
	b = value{kind: kindObject}
	if len(bytes.TrimSpace(base)) > 0 {
		if b, err = parseObject(base); err != nil {
			return b, o, t, fmt.Errorf("base: %w", err)
		}
	}
	if o, err = parseObject(ours); err != nil {
		return b, o, t, fmt.Errorf("ours: %w", err)
	}
	if t, err = parseObject(theirs); err != nil {
		return b, o, t, fmt.Errorf("theirs: %w", err)
	}
	return b, o, t, nil
}

// walker carries the results of one merge or diff.
type walker struct {
	conflicts []Conflict
	diff      bool // collect diffs as well
	diffs     []FieldDiff
}

var emptyObject = value{kind: kindObject}

// object merges three objects (members sorted by key) at path.
func (w *walker) object(path []string, b, o, t *value) value {
	var out []member
	i, j, k := 0, 0, 0
	for i < len(b.kids) || j < len(o.kids) || k < len(t.kids) {
		// The next key is the smallest among the three cursors.
		key, set := "", false
		for _, c := range []struct {
			v *value
			n int
		}{{b, i}, {o, j}, {t, k}} {
			if c.n < len(c.v.kids) && (!set || c.v.kids[c.n].key < key) {
				key, set = c.v.kids[c.n].key, true
			}
		}
		bv, ov, tv := take(b, &i, key), take(o, &j, key), take(t, &k, key)
		fieldPath := append(path[:len(path):len(path)], key)
		if m := w.field(fieldPath, bv, ov, tv); m != nil {
			out = append(out, member{key: key, val: *m})
		}
	}
	return value{kind: kindObject, kids: out}
}

// take returns the member value at *i if it has key, advancing *i, or nil.
func take(obj *value, i *int, key string) *value {
	if *i < len(obj.kids) && obj.kids[*i].key == key {
		*i++
		return &obj.kids[*i-1].val
	}
	return nil
}

// field merges one field; nil arguments and result mean absent.
func (w *walker) field(path []string, bv, ov, tv *value) *value {
	var kind Kind
	var out *value
	switch {
	case equal(ov, tv):
		kind, out = ChangedBoth, ov
		if equal(bv, ov) {
			kind = Unchanged
		}
	case ov != nil && tv != nil && ov.kind == kindObject && tv.kind == kindObject:
		sub := &emptyObject
		if bv != nil && bv.kind == kindObject {
			sub = bv
		}
		m := w.object(path, sub, ov, tv)
		return &m
	case equal(bv, ov):
		kind, out = ChangedTheirs, tv
	case equal(bv, tv):
		kind, out = ChangedOurs, ov
	default:
		kind, out = Conflicting, ov
		w.conflicts = append(w.conflicts, Conflict{
			Path: path, Base: raw(bv), Ours: raw(ov), Theirs: raw(tv),
		})
	}
	if w.diff {
		w.diffs = append(w.diffs, FieldDiff{
			Path: path, Kind: kind, Base: raw(bv), Ours: raw(ov), Theirs: raw(tv),
		})
	}
	return out
}

func raw(v *value) json.RawMessage {
	if v == nil {
		return nil
	}
	return appendCompact(nil, v)
}

// PathString joins a field path for display: keys separated by dots, each
// key quoted if it is empty or holds a dot, a quote, a space or a control
// character.
func PathString(path []string) string {
	var b strings.Builder
	for i, key := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if key == "" || strings.ContainsFunc(key, func(r rune) bool {
			return r <= ' ' || r == '.' || r == '"' || r == 0x7f
		}) {
			b.Write(appendString(nil, key))
		} else {
			b.WriteString(key)
		}
	}
	return b.String()
}

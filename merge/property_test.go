package merge

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// Generators. Keys come from a small set so that versions overlap; numbers
// come in several spellings so that canonicalization is exercised.

var genKey = rapid.SampledFrom([]string{"a", "b", "c", "d", "é", "a.b", "", "<&>", "\n"})

var genScalar = rapid.OneOf(
	rapid.Just[any](nil),
	rapid.Map(rapid.Bool(), func(b bool) any { return b }),
	rapid.Map(rapid.SampledFrom([]string{
		"0", "-0", "1", "1.0", "1e0", "10e-1", "-2.5", "2.50", "1e22", "123456789012345678901234567890",
		"0.000001", "1e-7", "3.14159265358979323846", "-1E+3",
	}), func(s string) any { return json.Number(s) }),
	rapid.Map(rapid.Int64(), func(i int64) any { return json.Number(strconv.FormatInt(i, 10)) }),
	rapid.Map(rapid.StringOf(rapid.SampledFrom([]rune{'x', 'é', '"', '\\', '\n', '\x01', '<', '\u2028', '😀'})),
		func(s string) any { return s }),
)

func genValue(depth int) *rapid.Generator[any] {
	if depth <= 0 {
		return genScalar
	}
	return rapid.OneOf(
		genScalar,
		genScalar,
		rapid.Map(rapid.SliceOfN(rapid.Deferred(func() *rapid.Generator[any] { return genValue(depth - 1) }), 0, 3),
			func(s []any) any { return s }),
		rapid.Map(genObject(depth-1), func(m map[string]any) any { return m }),
	)
}

func genObject(depth int) *rapid.Generator[map[string]any] {
	return rapid.MapOfN(genKey, rapid.Deferred(func() *rapid.Generator[any] { return genValue(depth) }), 0, 5)
}

// mutate returns a copy of obj with some fields kept, some removed, some
// replaced, some added and some nested objects mutated in turn.
func mutate(t *rapid.T, obj map[string]any, depth int, label string) map[string]any {
	out := map[string]any{}
	keys := sortedKeys(obj)
	for _, k := range keys {
		v := obj[k]
		switch rapid.IntRange(0, 3).Draw(t, label+" op "+k) {
		case 0:
			out[k] = v
		case 1: // removed
		case 2:
			out[k] = genValue(depth).Draw(t, label+" new "+k)
		case 3:
			if m, ok := v.(map[string]any); ok && depth > 0 {
				out[k] = mutate(t, m, depth-1, label+"."+k)
			} else {
				out[k] = v
			}
		}
	}
	for range rapid.IntRange(0, 2).Draw(t, label+" additions") {
		out[genKey.Draw(t, label+" added key")] = genValue(depth).Draw(t, label+" added")
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeLoose writes v as JSON with object members in a drawn order, drawn
// whitespace and strings escaped in a drawn way.
func writeLoose(t *rapid.T, b *bytes.Buffer, v any) {
	space := func() {
		b.WriteString(rapid.SampledFrom([]string{"", "", " ", "\n  ", "\t", "\r\n"}).Draw(t, "space"))
	}
	space()
	switch v := v.(type) {
	case map[string]any:
		keys := sortedKeys(v)
		perm := rapid.Permutation(keys).Draw(t, "order")
		b.WriteByte('{')
		for i, k := range perm {
			if i > 0 {
				b.WriteByte(',')
			}
			space()
			writeLooseString(t, b, k)
			space()
			b.WriteByte(':')
			writeLoose(t, b, v[k])
		}
		space()
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeLoose(t, b, e)
		}
		space()
		b.WriteByte(']')
	case string:
		writeLooseString(t, b, v)
	default:
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(enc)
	}
	space()
}

func writeLooseString(t *rapid.T, b *bytes.Buffer, s string) {
	if rapid.Bool().Draw(t, "escape all") {
		b.WriteByte('"')
		for _, r := range s {
			if r > 0xffff {
				hi, lo := 0xd800+(r-0x10000)>>10, 0xdc00+(r-0x10000)&0x3ff
				b.WriteString(`\u` + hex4str(hi) + `\u` + hex4str(lo))
			} else {
				b.WriteString(`\u` + hex4str(r))
			}
		}
		b.WriteByte('"')
		return
	}
	enc, _ := json.Marshal(s) // HTML-escaped, \u2028 escaped
	b.Write(enc)
}

func hex4str(r rune) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[r>>12&0xf], digits[r>>8&0xf], digits[r>>4&0xf], digits[r&0xf]})
}

// tester is what the checks need from *testing.T and *rapid.T alike.
type tester interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func mustMarshal(t tester, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCanonicalProperties: every way of writing a value has one canonical
// form, the form is stable and valid, and it means what the input meant.
func TestCanonicalProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genValue(3).Draw(t, "value")
		var loose1, loose2 bytes.Buffer
		writeLoose(t, &loose1, v)
		writeLoose(t, &loose2, v)
		c1, err := Canonical(loose1.Bytes())
		if err != nil {
			t.Fatalf("Canonical(%q): %v", loose1.Bytes(), err)
		}
		c2, err := Canonical(loose2.Bytes())
		if err != nil {
			t.Fatalf("Canonical(%q): %v", loose2.Bytes(), err)
		}
		if !bytes.Equal(c1, c2) {
			t.Fatalf("two spellings of one value differ:\n%q -> %q\n%q -> %q", loose1.Bytes(), c1, loose2.Bytes(), c2)
		}
		checkCanonicalOutput(t, loose1.Bytes(), c1)
		if !Equal(loose1.Bytes(), mustMarshal(t, v)) {
			t.Fatalf("Equal(%q, json.Marshal) = false", loose1.Bytes())
		}
		pretty, err := Pretty(loose1.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if back, err := Canonical(pretty); err != nil || !bytes.Equal(back, c1) {
			t.Fatalf("Canonical(Pretty(x)) = %q, %v; want %q", back, err, c1)
		}
	})
}

// checkCanonicalOutput checks what must hold of c = Canonical(in).
func checkCanonicalOutput(t tester, in, c []byte) {
	t.Helper()
	if !json.Valid(c) {
		t.Fatalf("Canonical(%q) = %q is not valid JSON", in, c)
	}
	again, err := Canonical(c)
	if err != nil || !bytes.Equal(again, c) {
		t.Fatalf("Canonical not idempotent: %q -> %q, %v", c, again, err)
	}
	// Same meaning as decoded by encoding/json (numbers as float64 here:
	// equal exact values give equal floats).
	var a, b any
	if err := json.Unmarshal(in, &a); err != nil {
		return // e.g. a number beyond float64: encoding/json refuses it
	}
	if err := json.Unmarshal(c, &b); err != nil {
		t.Fatalf("encoding/json refuses Canonical(%q) = %q: %v", in, c, err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("Canonical(%q) = %q changes the value: %#v vs %#v", in, c, a, b)
	}
}

// TestMergeProperties draws a base and two independent edits of it.
func TestMergeProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := genObject(2).Draw(t, "base")
		ours := mutate(t, base, 2, "ours")
		theirs := mutate(t, base, 2, "theirs")
		b, o, th := mustMarshal(t, base), mustMarshal(t, ours), mustMarshal(t, theirs)
		if rapid.IntRange(0, 9).Draw(t, "no base") == 0 {
			b = nil
		}
		checkMerge(t, b, o, th)
	})
}

// checkMerge checks the properties of Merge(base, ours, theirs) that must
// hold for any input. It reports whether all inputs were valid objects.
func checkMerge(t tester, base, ours, theirs []byte) bool {
	t.Helper()
	merged, conflicts, err := Merge(base, ours, theirs)
	validBase := len(bytes.TrimSpace(base)) == 0
	if !validBase {
		_, err := CanonicalObject(base)
		validBase = err == nil
	}
	_, errO := CanonicalObject(ours)
	_, errT := CanonicalObject(theirs)
	valid := validBase && errO == nil && errT == nil
	if err != nil {
		if valid {
			t.Fatalf("Merge refused valid objects: %v", err)
		}
		return false
	}
	if !valid {
		t.Fatalf("Merge accepted invalid input: %q %q %q", base, ours, theirs)
	}
	if c, err := CanonicalObject(merged); err != nil || !bytes.Equal(c, merged) {
		t.Fatalf("merged %q is not a canonical object: %v", merged, err)
	}

	// The field-by-field rules, checked on encoding/json's decoding.
	bm := map[string]any{}
	if len(bytes.TrimSpace(base)) > 0 {
		bm = decodeObject(t, base)
	}
	var want []string
	checkObject(t, nil, bm, decodeObject(t, ours), decodeObject(t, theirs), decodeObject(t, merged), &want)
	var got []string
	for _, c := range conflicts {
		got = append(got, PathString(c.Path))
		if bytes.Equal(c.Ours, c.Theirs) {
			t.Fatalf("conflict at %s with equal sides %s", PathString(c.Path), c.Ours)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Merge(%s, %s, %s): conflicts %q, want %q", base, ours, theirs, got, want)
	}

	// Swapping sides gives the same conflicts, and the same result when
	// there are none.
	swapped, swappedConflicts, err := Merge(base, theirs, ours)
	if err != nil {
		t.Fatal(err)
	}
	if len(swappedConflicts) != len(conflicts) {
		t.Fatalf("swapped sides: %d conflicts, want %d", len(swappedConflicts), len(conflicts))
	}
	if len(conflicts) == 0 && !bytes.Equal(swapped, merged) {
		t.Fatalf("swapped sides without conflicts: %s, want %s", swapped, merged)
	}

	// One side unchanged: the result is the other side. Both sides equal:
	// the result is that side.
	canonOurs, _ := CanonicalObject(ours)
	canonTheirs, _ := CanonicalObject(theirs)
	if len(bytes.TrimSpace(base)) > 0 {
		expectMerge(t, "Merge(b, b, t)", base, base, theirs, canonTheirs)
		expectMerge(t, "Merge(b, o, b)", base, ours, base, canonOurs)
	}
	expectMerge(t, "Merge(b, o, o)", base, ours, ours, canonOurs)
	expectMerge(t, "Merge(b, t, t)", base, theirs, theirs, canonTheirs)
	expectMerge(t, "Merge(nil, o, o)", nil, ours, ours, canonOurs)
	return true
}

func expectMerge(t tester, name string, base, ours, theirs, want []byte) {
	t.Helper()
	got, conflicts, err := Merge(base, ours, theirs)
	if err != nil || len(conflicts) != 0 || !bytes.Equal(got, want) {
		t.Fatalf("%s = %s, %v, %v; want %s without conflicts", name, got, conflicts, err, want)
	}
}

func decodeObject(t tester, data []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return m
}

// checkObject checks merged object m against base b and sides o and t,
// field by field, and collects the paths that must conflict.
func checkObject(tb tester, path []string, b, o, t, m map[string]any, conflicts *[]string) {
	tb.Helper()
	keys := map[string]bool{}
	for _, obj := range []map[string]any{b, o, t} {
		for k := range obj {
			keys[k] = true
		}
	}
	for k := range m {
		if !keys[k] {
			tb.Fatalf("merged has field %q that no version has", PathString(append(path, k)))
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		p := append(path[:len(path):len(path)], k)
		bv, bok := b[k]
		ov, ook := o[k]
		tv, tok := t[k]
		mv, mok := m[k]
		same := func(x any, xok bool, y any, yok bool) bool {
			if !xok || !yok {
				return xok == yok
			}
			return Equal(mustMarshal(tb, x), mustMarshal(tb, y))
		}
		// The promise: a field changed on one side only has that side's
		// value in the result, whatever else happened.
		if same(bv, bok, ov, ook) && !same(mv, mok, tv, tok) {
			tb.Fatalf("field %s changed only by theirs: merged %v, want %v", PathString(p), mv, tv)
		}
		if same(bv, bok, tv, tok) && !same(mv, mok, ov, ook) {
			tb.Fatalf("field %s changed only by ours: merged %v, want %v", PathString(p), mv, ov)
		}
		om, oIsObj := ov.(map[string]any)
		tm, tIsObj := tv.(map[string]any)
		switch {
		case same(ov, ook, tv, tok):
			if !same(mv, mok, ov, ook) {
				tb.Fatalf("field %s equal on both sides: merged %v, want %v", PathString(p), mv, ov)
			}
		case oIsObj && tIsObj:
			sub, ok := bv.(map[string]any)
			if !ok {
				sub = map[string]any{}
			}
			mm, ok := mv.(map[string]any)
			if !ok {
				tb.Fatalf("field %s: objects on both sides merged into %v", PathString(p), mv)
			}
			checkObject(tb, p, sub, om, tm, mm, conflicts)
		case same(bv, bok, ov, ook) || same(bv, bok, tv, tok):
			// checked above
		default:
			*conflicts = append(*conflicts, PathString(p))
			if !same(mv, mok, ov, ook) {
				tb.Fatalf("conflict at %s: merged %v, want ours %v", PathString(p), mv, ov)
			}
		}
	}
}

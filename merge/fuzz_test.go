package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzCanonical checks that Canonical accepts only valid JSON, refuses valid
// JSON only for the documented reasons, and returns valid, stable output
// that means what the input meant.
func FuzzCanonical(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Canonical(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(data) {
				t.Fatalf("Canonical(%q): error %v without a valid offset", data, err)
			}
			if json.Valid(data) && !errors.Is(err, ErrDuplicateKey) && !errors.Is(err, ErrInvalidUTF8) &&
				!errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrNumberRange) {
				t.Fatalf("Canonical refused valid JSON %q: %v", data, err)
			}
			if Equal(data, data) {
				t.Fatalf("Equal(x, x) for refused input %q", data)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Canonical accepted invalid JSON %q as %q", data, c)
		}
		checkCanonicalOutput(t, data, c)
		if !Equal(data, c) {
			t.Fatalf("Equal(%q, Canonical) = false", data)
		}
		pretty, err := Pretty(data)
		if err != nil {
			t.Fatalf("Pretty refused what Canonical took: %v", err)
		}
		if back, err := Canonical(pretty); err != nil || !bytes.Equal(back, c) {
			t.Fatalf("Canonical(Pretty(%q)) = %q, %v; want %q", data, back, err, c)
		}
		if Depth(data) > MaxDepth {
			t.Fatalf("Canonical accepted depth %d", Depth(data))
		}
	})
}

// FuzzMerge checks Merge's promises (see checkMerge) on arbitrary inputs.
func FuzzMerge(f *testing.F) {
	f.Fuzz(func(t *testing.T, base, ours, theirs []byte) {
		checkMerge(t, base, ours, theirs)
	})
}

// Package merge compares and merges JSON record bodies.
//
// It has two jobs. The first is a canonical form: one byte sequence per JSON
// value, so that stores can tell whether a record really changed by comparing
// bytes, whatever key order, whitespace or escapes an editor wrote. The second
// is a field-level three-way merge of JSON objects, with a field-level diff
// for display.
//
// # Canonical form
//
// Canonical returns the compact form of a JSON value with these rules:
//
//   - no whitespace outside strings;
//   - object members sorted by the byte order of their UTF-8 keys (keys are
//     compared after unescaping, so "a" and "\u0061" are the same key);
//   - a key repeated within one object is an error ([ErrDuplicateKey]);
//   - strings are written with the fewest escapes: only '"', '\\' and the
//     control characters U+0000..U+001F are escaped (as \" \\ \b \f \n \r \t,
//     otherwise \u00xx with lower-case hex); everything else, including
//     '<', '>', '&', U+2028 and U+2029, is written as UTF-8;
//   - input that is not valid UTF-8, and \u escapes naming a lone UTF-16
//     surrogate, are errors ([ErrInvalidUTF8]): neither can be written back
//     as UTF-8 without losing what was there;
//   - numbers keep their exact decimal value (never through float64, so big
//     integers and long fractions keep every digit) and are written in one
//     way per value. 1.0, 1.00, 1e0 and 10e-1 are all written 1, -0 is
//     written 0. See "Numbers" below;
//   - nesting deeper than [MaxDepth] is an error ([ErrTooDeep]), so hostile
//     input cannot exhaust the stack.
//
// [Pretty] writes the same value indented by two spaces with a trailing
// newline: the form stores write to disk.
//
// # Numbers
//
// A number's value is d × 10^q with d an integer without trailing zeros. It
// is written:
//
//   - as an integer (d followed by q zeros) when 0 <= q <= 21, so integers as
//     people write them stay as they are: 42, 100, 12345678901234567890123;
//   - with a decimal point when it has a fraction and fewer than six zeros
//     follow the point: 1.5, 0.25, 0.000001;
//   - otherwise in exponent form with one digit before the point and a signed
//     exponent: 1e+22, 1.5e-7.
//
// This follows the layout JavaScript uses for its numbers, applied to the
// exact decimal value. Exponents beyond ±1,000,000,000 are refused
// ([ErrNumberRange]) rather than expanded.
//
// # Concurrency
//
// Every function in the package is pure and safe for concurrent use.
package merge

import (
	"bytes"
	"errors"
	"fmt"
)

// MaxDepth is the deepest nesting of arrays and objects accepted. A value at
// the top level is at depth 0; each enclosing array or object adds one.
const MaxDepth = 1000

// Errors wrapped by the *Error values this package returns; test them with
// errors.Is.
var (
	ErrSyntax       = errors.New("invalid JSON")
	ErrDuplicateKey = errors.New("duplicate key")
	ErrInvalidUTF8  = errors.New("invalid UTF-8")
	ErrTooDeep      = errors.New("nested too deeply")
	ErrNumberRange  = errors.New("number out of range")
	ErrNotObject    = errors.New("not a JSON object")
)

// Error describes why input was refused and where.
type Error struct {
	Offset int    // byte offset in the input where the problem was found
	Err    error  // one of the Err* values above
	Msg    string // what was found, for people
}

func (e *Error) Error() string {
	return fmt.Sprintf("json at offset %d: %s", e.Offset, e.Msg)
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// Canonical parses one JSON value (surrounding whitespace allowed) and
// returns its canonical compact form, described in the package comment.
// The result never aliases data.
func Canonical(data []byte) ([]byte, error) {
	v, err := parse(data)
	if err != nil {
		return nil, err
	}
	return appendCompact(make([]byte, 0, len(data)), &v), nil
}

// CanonicalObject is Canonical for input that must be a JSON object, such as
// a record body. Any other value is refused with ErrNotObject.
func CanonicalObject(data []byte) ([]byte, error) {
	v, err := parseObject(data)
	if err != nil {
		return nil, err
	}
	return appendCompact(make([]byte, 0, len(data)), &v), nil
}

// Pretty returns the on-disk form of a JSON value: canonical, but indented by
// two spaces, with ": " after keys and a trailing newline. Empty objects and
// arrays are written {} and []. Canonical(Pretty(x)) equals Canonical(x).
func Pretty(data []byte) ([]byte, error) {
	v, err := parse(data)
	if err != nil {
		return nil, err
	}
	b := appendIndent(make([]byte, 0, len(data)+len(data)/2), &v, 0)
	return append(b, '\n'), nil
}

// Equal reports whether a and b are valid JSON with the same canonical form.
// Input that Canonical refuses is equal to nothing, not even to itself.
func Equal(a, b []byte) bool {
	if bytes.Equal(a, b) {
		_, err := parse(a)
		return err == nil
	}
	va, err := parse(a)
	if err != nil {
		return false
	}
	vb, err := parse(b)
	if err != nil {
		return false
	}
	return equal(&va, &vb)
}

// Depth returns the deepest nesting of arrays and objects in data, scanning
// without recursion, so it is safe on any input. It does not validate data:
// brackets inside strings are skipped, everything else is counted.
func Depth(data []byte) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth = max(depth-1, 0)
		}
	}
	return deepest
}

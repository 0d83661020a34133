package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// structure and whitespace
		{"scalar true", "true", "true"},
		{"scalar null", " \t\r\nnull \n", "null"},
		{"empty object", "{ }", "{}"},
		{"empty array", "[\n]", "[]"},
		{"key order", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"key order bytes", `{"é":1,"z":2,"Z":3,"":4,"aa":5,"a":6}`, `{"":4,"Z":3,"a":6,"aa":5,"z":2,"é":1}`},
		{"key order after unescape", `{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
		{"nested sort", `{"z":{"y":[{"b":1,"a":0}],"x":null},"a":[3,2,1]}`, `{"a":[3,2,1],"z":{"x":null,"y":[{"a":0,"b":1}]}}`},
		{"whitespace", "{ \"a\" :\t[ 1 ,\n2 ] ,\r\n\"b\" : { } }", `{"a":[1,2],"b":{}}`},
		// strings
		{"no html escaping", `"<a href=\"x\">&amp;</a>"`, `"<a href=\"x\">&amp;</a>"`},
		{"html escapes undone", `"\u003c\u003e\u0026"`, `"<>&"`},
		{"solidus", `"a\/b"`, `"a/b"`},
		{"short escapes", `"\b\f\n\r\t\"\\"`, `"\b\f\n\r\t\"\\"`},
		{"long form of short escapes", `"\u0008\u000C\u000a\u000D\u0009\u0022\u005c"`, `"\b\f\n\r\t\"\\"`},
		{"other controls", `"\u0000\u001F\u0001"`, `"\u0000\u001f\u0001"`},
		{"del stays raw", `"\u007f"`, "\"\x7f\""},
		{"non-ascii unescaped", `"\u00e9\u4e2d"`, `"é中"`},
		{"utf8 kept", `"é中😀"`, `"é中😀"`},
		{"surrogate pair", `"\ud83d\ude00"`, `"😀"`},
		{"line separators raw", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"upper hex", `"\u00C9"`, `"É"`},
		// numbers
		{"integer", "42", "42"},
		{"negative", "-17", "-17"},
		{"zero", "0", "0"},
		{"minus zero", "-0", "0"},
		{"minus zero fraction", "-0.0e5", "0"},
		{"big integer", "123456789012345678901234567890", "123456789012345678901234567890"},
		{"big negative", "-98765432109876543210987654321", "-98765432109876543210987654321"},
		{"beyond uint64", "18446744073709551617", "18446744073709551617"},
		{"float64 inexact", "9007199254740993", "9007199254740993"},
		{"one point zero", "1.0", "1"},
		{"trailing zeros", "1.500", "1.5"},
		{"exponent to integer", "1e2", "100"},
		{"upper exponent", "1E+2", "100"},
		{"fraction exponent", "12.5e1", "125"},
		{"negative exponent", "125e-2", "1.25"},
		{"small", "0.000001", "0.000001"},
		{"smaller", "0.0000001", "1e-7"},
		{"small long", "0.00000012345", "1.2345e-7"},
		{"leading zeros in fraction", "0.25", "0.25"},
		{"21 zeros", "1000000000000000000000", "1000000000000000000000"},
		{"22 zeros", "10000000000000000000000", "1e+22"},
		{"22 zeros from exponent", "1e22", "1e+22"},
		{"many zeros with digits", "12300000000000000000000000", "1.23e+25"},
		{"huge exponent", "1.5e400", "1.5e+400"},
		{"tiny exponent", "-2.50e-400", "-2.5e-400"},
		{"long fraction", "3.14159265358979323846264338327950288", "3.14159265358979323846264338327950288"},
		{"zero huge exponent", "0e99999999999999999999", "0"},
		{"negative fraction", "-0.5", "-0.5"},
		{"array of numbers", "[1.0, 2.50, -0, 3e0]", "[1,2.5,0,3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonical(%q): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := Canonical(got)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("Canonical not idempotent: %q -> %q, %v", got, again, err)
			}
			if !json.Valid(got) {
				t.Fatalf("Canonical(%q) = %q is not valid JSON", tt.in, got)
			}
		})
	}
}

// TestCanonicalNumbersKeepValue checks that numbers written differently but
// with the same value meet, and that different values stay apart.
func TestCanonicalNumbersKeepValue(t *testing.T) {
	same := [][]string{
		{"1", "1.0", "1.000", "1e0", "10e-1", "0.1e1", "100E-2"},
		{"1500", "1.5e3", "1.50E+3", "15e2", "1500.00"},
		{"0", "-0", "0.0", "0e10", "-0.000e-5"},
		{"1e+22", "10000000000000000000000", "1e22", "0.1e23"},
		{"-0.001", "-1e-3", "-0.0010"},
	}
	for _, group := range same {
		want, err := Canonical([]byte(group[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range group[1:] {
			got, err := Canonical([]byte(in))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("Canonical(%s) = %s, %v; want %s like %s", in, got, err, want, group[0])
			}
		}
	}
	different := [][2]string{
		{"9007199254740993", "9007199254740992"}, // equal as float64
		{"0.1", "0.10000000000000001"},           // equal as float64
		{"1", "-1"},
		{"1e-7", "1e7"},
	}
	for _, p := range different {
		if Equal([]byte(p[0]), []byte(p[1])) {
			t.Errorf("Equal(%s, %s) = true, want false", p[0], p[1])
		}
	}
}

func TestCanonicalErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
		offset   int
	}{
		{"empty", "", ErrSyntax, 0},
		{"only space", "  ", ErrSyntax, 2},
		{"trailing data", `{} x`, ErrSyntax, 3},
		{"two values", `1 2`, ErrSyntax, 2},
		{"trailing comma object", `{"a":1,}`, ErrSyntax, 7},
		{"trailing comma array", `[1,]`, ErrSyntax, 3},
		{"unquoted key", `{a:1}`, ErrSyntax, 1},
		{"missing colon", `{"a" 1}`, ErrSyntax, 5},
		{"single quotes", `'a'`, ErrSyntax, 0},
		{"unterminated string", `"abc`, ErrSyntax, 0},
		{"unterminated escape", `"abc\`, ErrSyntax, 0},
		{"bad escape", `"\x41"`, ErrSyntax, 1},
		{"short unicode escape", `"\u12"`, ErrSyntax, 1},
		{"raw newline in string", "\"a\nb\"", ErrSyntax, 2},
		{"leading zero", `01`, ErrSyntax, 1},
		{"plus sign", `+1`, ErrSyntax, 0},
		{"bare point", `1.`, ErrSyntax, 2},
		{"bare exponent", `1e`, ErrSyntax, 2},
		{"NaN", `NaN`, ErrSyntax, 0},
		{"truncated literal", `tru`, ErrSyntax, 0},
		{"unclosed array", `[1`, ErrSyntax, 2},
		{"unclosed object", `{"a":1`, ErrSyntax, 6},
		{"duplicate key", `{"a":1,"b":2,"a":3}`, ErrDuplicateKey, 0},
		{"duplicate after unescape", `{"x":{"a":1,"\u0061":1}}`, ErrDuplicateKey, 5},
		{"invalid utf8 in string", "\"a\xffb\"", ErrInvalidUTF8, 2},
		{"invalid utf8 in key", "{\"\xc3\":1}", ErrInvalidUTF8, 2},
		{"invalid utf8 after escape", "\"\\n\xe2\x82\"", ErrInvalidUTF8, 3},
		{"utf8 encoded surrogate", "\"\xed\xa0\x80\"", ErrInvalidUTF8, 1},
		{"overlong utf8", "\"\xc0\xaf\"", ErrInvalidUTF8, 1},
		{"lone high surrogate", `"\ud800"`, ErrInvalidUTF8, 1},
		{"lone low surrogate", `"\udc00x"`, ErrInvalidUTF8, 1},
		{"high then non-low", `"\ud800\u0041"`, ErrInvalidUTF8, 1},
		{"exponent too large", `1e1000000001`, ErrNumberRange, 0},
		{"exponent far too large", `[2.5E-99999999999999999999]`, ErrNumberRange, 1},
		{"too deep arrays", strings.Repeat("[", 100_000), ErrTooDeep, MaxDepth},
		{"too deep objects", strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1), ErrTooDeep, 5 * MaxDepth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical([]byte(tt.in))
			if err == nil {
				t.Fatalf("Canonical(%q) = %q, want error %v", tt.in, got, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Canonical(%q) error %v, want %v", tt.in, err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Offset != tt.offset {
				t.Fatalf("Canonical(%q) error %v: offset %d, want %d", tt.in, err, e.Offset, tt.offset)
			}
		})
	}
}

func TestDuplicateKeyMessage(t *testing.T) {
	_, err := Canonical([]byte(`{"name":1, "name":2}`))
	if err == nil || !strings.Contains(err.Error(), `duplicate key "name"`) {
		t.Fatalf("error %v does not name the duplicate key", err)
	}
}

func TestDepthLimit(t *testing.T) {
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := Canonical([]byte(ok)); err != nil {
		t.Fatalf("nesting of exactly MaxDepth refused: %v", err)
	}
	if got := Depth([]byte(ok)); got != MaxDepth {
		t.Fatalf("Depth = %d, want %d", got, MaxDepth)
	}
	deeper := "[" + ok + "]"
	if _, err := Canonical([]byte(deeper)); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("nesting of MaxDepth+1: error %v, want ErrTooDeep", err)
	}
}

func TestDepth(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{``, 0},
		{`1`, 0},
		{`[]`, 1},
		{`{"a":[{"b":[]}]}`, 4},
		{`["[[[[", "\"[["]`, 1},
		{`[[]][[[]]]`, 3},
		{`]]]]]][`, 1},
		{strings.Repeat("[", 100_000), 100_000},
	}
	for _, tt := range tests {
		if got := Depth([]byte(tt.in)); got != tt.want {
			t.Errorf("Depth(%.20q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestCanonicalObject(t *testing.T) {
	got, err := CanonicalObject([]byte(` {"b":[],"a":1.0} `))
	if err != nil || string(got) != `{"a":1,"b":[]}` {
		t.Fatalf("CanonicalObject = %q, %v", got, err)
	}
	for _, in := range []string{`[]`, `"{}"`, `1`, `null`, `  true`} {
		_, err := CanonicalObject([]byte(in))
		if !errors.Is(err, ErrNotObject) {
			t.Errorf("CanonicalObject(%s): error %v, want ErrNotObject", in, err)
		}
	}
	if _, err := CanonicalObject([]byte(`{"a":1,"a":1}`)); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("CanonicalObject with duplicate: error %v, want ErrDuplicateKey", err)
	}
}

func TestCanonicalDoesNotAlias(t *testing.T) {
	in := []byte(`{"a":"x"}`)
	out, err := Canonical(in)
	if err != nil {
		t.Fatal(err)
	}
	in[6] = 'y'
	if string(out) != `{"a":"x"}` {
		t.Fatalf("output changed with input: %s", out)
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":2}`, `{ "b" : 2.0, "a" : 1 }`, true},
		{`"\u00e9"`, `"é"`, true},
		{`[1,2]`, `[2,1]`, false},
		{`{"a":null}`, `{}`, false},
		{`{"a":1}`, `{"a":"1"}`, false},
		{`{"a":{"b":[true]}}`, `{"a":{"b":[true]}}`, true},
		{`{"a":1,"a":1}`, `{"a":1,"a":1}`, false}, // invalid equals nothing
		{`{`, `{`, false},
		{`{}`, `{`, false},
		{``, ``, false},
	}
	for _, tt := range tests {
		if got := Equal([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("Equal(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Equal([]byte(tt.b), []byte(tt.a)); got != tt.want {
			t.Errorf("Equal(%s, %s) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestPretty(t *testing.T) {
	in := `{"name":"Ada","tags":["x",{"z":1,"y":[]}],"empty":{},"n":1.50}`
	want := `{
  "empty": {},
  "n": 1.5,
  "name": "Ada",
  "tags": [
    "x",
    {
      "y": [],
      "z": 1
    }
  ]
}
`
	got, err := Pretty([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("Pretty:\n%s\nwant:\n%s", got, want)
	}
	canon, _ := Canonical([]byte(in))
	back, err := Canonical(got)
	if err != nil || !bytes.Equal(back, canon) {
		t.Fatalf("Canonical(Pretty(x)) = %s, %v; want %s", back, err, canon)
	}
	if got, _ := Pretty([]byte(`"x"`)); string(got) != "\"x\"\n" {
		t.Fatalf("Pretty scalar = %q", got)
	}
	if _, err := Pretty([]byte(`{"a":1,"a":2}`)); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("Pretty duplicate: %v", err)
	}
}

package merge

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs string
		want               string
		conflicts          []string // paths joined by PathString
	}{
		{"nothing changed", `{"a":1}`, `{"a":1}`, `{"a":1}`, `{"a":1}`, nil},
		{"ours changed", `{"a":1,"b":2}`, `{"a":5,"b":2}`, `{"a":1,"b":2}`, `{"a":5,"b":2}`, nil},
		{"theirs changed", `{"a":1,"b":2}`, `{"a":1,"b":2}`, `{"a":1,"b":7}`, `{"a":1,"b":7}`, nil},
		{"different fields", `{"a":1,"b":2}`, `{"a":5,"b":2}`, `{"a":1,"b":7}`, `{"a":5,"b":7}`, nil},
		{"same change", `{"a":1}`, `{"a":2}`, `{"a":2.0}`, `{"a":2}`, nil},
		{"conflict takes ours", `{"a":1}`, `{"a":2}`, `{"a":3}`, `{"a":2}`, []string{"a"}},
		{"added ours", `{}`, `{"n":"x"}`, `{}`, `{"n":"x"}`, nil},
		{"added theirs", `{}`, `{}`, `{"n":"x"}`, `{"n":"x"}`, nil},
		{"added both same", `{}`, `{"n":[1]}`, `{"n":[1]}`, `{"n":[1]}`, nil},
		{"added both differently", `{}`, `{"n":1}`, `{"n":2}`, `{"n":1}`, []string{"n"}},
		{"removed ours", `{"a":1,"b":2}`, `{"b":2}`, `{"a":1,"b":2}`, `{"b":2}`, nil},
		{"removed theirs", `{"a":1,"b":2}`, `{"a":1,"b":2}`, `{"a":1}`, `{"a":1}`, nil},
		{"removed both", `{"a":1,"b":2}`, `{"b":2}`, `{"b":2}`, `{"b":2}`, nil},
		{"removed ours edited theirs", `{"a":1}`, `{}`, `{"a":2}`, `{}`, []string{"a"}},
		{"edited ours removed theirs", `{"a":1}`, `{"a":2}`, `{}`, `{"a":2}`, []string{"a"}},
		{"null is a value", `{"a":1}`, `{"a":null}`, `{}`, `{"a":null}`, []string{"a"}},
		{"arrays are atomic", `{"l":[1,2]}`, `{"l":[1,2,3]}`, `{"l":[0,1,2]}`, `{"l":[1,2,3]}`, []string{"l"}},
		{"array changed one side", `{"l":[1,2]}`, `{"l":[1,2]}`, `{"l":[2]}`, `{"l":[2]}`, nil},
		{"nested different fields",
			`{"addr":{"city":"A","zip":"1"},"n":1}`,
			`{"addr":{"city":"B","zip":"1"},"n":1}`,
			`{"addr":{"city":"A","zip":"2"},"n":1}`,
			`{"addr":{"city":"B","zip":"2"},"n":1}`, nil},
		{"nested conflict",
			`{"addr":{"city":"A","zip":"1"}}`,
			`{"addr":{"city":"B","zip":"1"}}`,
			`{"addr":{"city":"C","zip":"2"}}`,
			`{"addr":{"city":"B","zip":"2"}}`, []string{"addr.city"}},
		{"deep nesting",
			`{"a":{"b":{"c":1,"d":1}}}`,
			`{"a":{"b":{"c":2,"d":1}}}`,
			`{"a":{"b":{"c":1,"d":3,"e":4}}}`,
			`{"a":{"b":{"c":2,"d":3,"e":4}}}`, nil},
		{"object removed ours edited inside theirs",
			`{"o":{"x":1}}`, `{}`, `{"o":{"x":2}}`, `{}`, []string{"o"}},
		{"object replaced by scalar vs edited inside",
			`{"o":{"x":1}}`, `{"o":"gone"}`, `{"o":{"x":2}}`, `{"o":"gone"}`, []string{"o"}},
		{"object added both sides merges fields",
			`{}`, `{"o":{"x":1}}`, `{"o":{"y":2}}`, `{"o":{"x":1,"y":2}}`, nil},
		{"object added both sides clash inside",
			`{}`, `{"o":{"x":1}}`, `{"o":{"x":2}}`, `{"o":{"x":1}}`, []string{"o.x"}},
		{"scalar became objects on both sides",
			`{"o":5}`, `{"o":{"x":1}}`, `{"o":{"y":2}}`, `{"o":{"x":1,"y":2}}`, nil},
		{"nested field emptied",
			`{"o":{"x":1}}`, `{"o":{}}`, `{"o":{"x":1,"y":2}}`, `{"o":{"y":2}}`, nil},
		{"several conflicts in path order",
			`{"b":1,"a":{"z":1,"c":1}}`, `{"b":2,"a":{"z":2,"c":2}}`, `{"b":3,"a":{"z":3,"c":3}}`,
			`{"a":{"c":2,"z":2},"b":2}`, []string{"a.c", "a.z", "b"}},
		{"no base: equal values fine", ``, `{"a":1,"b":2}`, `{"a":1.0,"c":3}`, `{"a":1,"b":2,"c":3}`, nil},
		{"no base: different values clash", ``, `{"a":1}`, `{"a":2}`, `{"a":1}`, []string{"a"}},
		{"canonical output", `{ }`, `{"z" : "\u00e9", "a": 1.50}`, `{}`, `{"a":1.5,"z":"é"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var base []byte
			if tt.base != "" {
				base = []byte(tt.base)
			}
			got, conflicts, err := Merge(base, []byte(tt.ours), []byte(tt.theirs))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("merged = %s, want %s", got, tt.want)
			}
			var paths []string
			for _, c := range conflicts {
				paths = append(paths, PathString(c.Path))
			}
			if !reflect.DeepEqual(paths, tt.conflicts) {
				t.Errorf("conflicts at %q, want %q", paths, tt.conflicts)
			}
		})
	}
}

func TestMergeConflictValues(t *testing.T) {
	_, conflicts, err := Merge([]byte(`{"a":{"x":1,"k":"b"}}`), []byte(`{"a":{"k":"o"}}`), []byte(`{"a":{"x":2,"k":"t"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Conflict{
		{Path: []string{"a", "k"}, Base: []byte(`"b"`), Ours: []byte(`"o"`), Theirs: []byte(`"t"`)},
		{Path: []string{"a", "x"}, Base: []byte(`1`), Ours: nil, Theirs: []byte(`2`)},
	}
	if !reflect.DeepEqual(conflicts, want) {
		t.Fatalf("conflicts = %+v, want %+v", conflicts, want)
	}
	_, conflicts, _ = Merge(nil, []byte(`{"a":{"q":1}}`), []byte(`{"a":[]}`))
	if len(conflicts) != 1 || conflicts[0].Base != nil || string(conflicts[0].Ours) != `{"q":1}` {
		t.Fatalf("no-base conflict = %+v", conflicts)
	}
}

func TestMergeErrors(t *testing.T) {
	tests := []struct {
		name, base, ours, theirs, side string
		want                           error
	}{
		{"base not object", `[]`, `{}`, `{}`, "base", ErrNotObject},
		{"ours not object", `{}`, `1`, `{}`, "ours", ErrNotObject},
		{"theirs invalid", `{}`, `{}`, `{`, "theirs", ErrSyntax},
		{"ours duplicate", `{}`, `{"a":1,"a":2}`, `{}`, "ours", ErrDuplicateKey},
		{"ours empty", `{}`, ``, `{}`, "ours", ErrSyntax},
	}
	for _, tt := range tests {
		_, _, err := Merge([]byte(tt.base), []byte(tt.ours), []byte(tt.theirs))
		if !errors.Is(err, tt.want) || !strings.HasPrefix(err.Error(), tt.side+": ") {
			t.Errorf("%s: Merge error %v, want %v for %s", tt.name, err, tt.want, tt.side)
		}
		if _, err := Diff([]byte(tt.base), []byte(tt.ours), []byte(tt.theirs)); !errors.Is(err, tt.want) {
			t.Errorf("%s: Diff error %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestDiff(t *testing.T) {
	base := `{"name":"Ada","age":36,"city":"London","tags":["a"],"old":true,"addr":{"zip":"1","street":"x"}}`
	ours := `{"name":"Ada L.","age":37,"city":"London","tags":["a","b"],"new":1,"addr":{"zip":"2","street":"x"}}`
	theirs := `{"name":"Ada S.","age":36,"city":"Paris","tags":["a","b"],"new":1,"addr":{"zip":"1","street":"y"}}`
	got, err := Diff([]byte(base), []byte(ours), []byte(theirs))
	if err != nil {
		t.Fatal(err)
	}
	want := []FieldDiff{
		{[]string{"addr", "street"}, ChangedTheirs, []byte(`"x"`), []byte(`"x"`), []byte(`"y"`)},
		{[]string{"addr", "zip"}, ChangedOurs, []byte(`"1"`), []byte(`"2"`), []byte(`"1"`)},
		{[]string{"age"}, ChangedOurs, []byte(`36`), []byte(`37`), []byte(`36`)},
		{[]string{"city"}, ChangedTheirs, []byte(`"London"`), []byte(`"London"`), []byte(`"Paris"`)},
		{[]string{"name"}, Conflicting, []byte(`"Ada"`), []byte(`"Ada L."`), []byte(`"Ada S."`)},
		{[]string{"new"}, ChangedBoth, nil, []byte(`1`), []byte(`1`)},
		{[]string{"old"}, ChangedBoth, []byte(`true`), nil, nil},
		{[]string{"tags"}, ChangedBoth, []byte(`["a"]`), []byte(`["a","b"]`), []byte(`["a","b"]`)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff =\n%v\nwant\n%v", got, want)
	}

	// Unchanged fields are listed too, and an unchanged object is one row.
	got, err = Diff([]byte(`{"o":{"x":1},"s":"v"}`), []byte(`{"o":{"x":1},"s":"v"}`), []byte(`{"o":{"x":1},"s":"w"}`))
	if err != nil {
		t.Fatal(err)
	}
	want = []FieldDiff{
		{[]string{"o"}, Unchanged, []byte(`{"x":1}`), []byte(`{"x":1}`), []byte(`{"x":1}`)},
		{[]string{"s"}, ChangedTheirs, []byte(`"v"`), []byte(`"v"`), []byte(`"w"`)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff =\n%v\nwant\n%v", got, want)
	}
}

// TestDiffAgreesWithMerge checks that Diff's conflicting rows are exactly
// Merge's conflicts.
func TestDiffAgreesWithMerge(t *testing.T) {
	base := []byte(`{"a":{"b":1,"c":2},"d":[1],"e":"x"}`)
	ours := []byte(`{"a":{"b":5,"c":2},"d":[2],"f":1}`)
	theirs := []byte(`{"a":{"b":6},"d":[3],"e":"y","f":1}`)
	_, conflicts, err := Merge(base, ours, theirs)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := Diff(base, ours, theirs)
	if err != nil {
		t.Fatal(err)
	}
	var fromDiff []Conflict
	for _, d := range diffs {
		if d.Kind == Conflicting {
			fromDiff = append(fromDiff, Conflict{d.Path, d.Base, d.Ours, d.Theirs})
		}
	}
	if len(conflicts) != 3 || !reflect.DeepEqual(fromDiff, conflicts) {
		t.Fatalf("Diff conflicts %v, Merge conflicts %v", fromDiff, conflicts)
	}
}

func TestFormatDiff(t *testing.T) {
	diffs, err := Diff(
		[]byte(`{"name":"Ada","age":36,"x":1}`),
		[]byte(`{"name":"Ada L.","age":37,"x":1}`),
		[]byte(`{"name":"Ada S.","age":36,"x":1,"y":null}`))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := FormatDiff(&buf, diffs); err != nil {
		t.Fatal(err)
	}
	want := `  age   base: 36     local: 37        server: 36        local
  name  base: "Ada"  local: "Ada L."  server: "Ada S."  CONFLICT
  x     base: 1      local: 1         server: 1
  y     base: -      local: -         server: null      server
`
	if buf.String() != want {
		t.Fatalf("FormatDiff:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestFormatDiffLongValues(t *testing.T) {
	long := strings.Repeat("é", 100)
	diffs := []FieldDiff{{Path: []string{"a.b", ""}, Kind: Conflicting,
		Base: []byte(`"` + long + `"`), Ours: []byte(`1`), Theirs: nil}}
	var buf bytes.Buffer
	if err := FormatDiff(&buf, diffs); err != nil {
		t.Fatal(err)
	}
	want := `  "a.b".""  base: "` + strings.Repeat("é", maxCell-4) + `...  local: 1  server: -  CONFLICT` + "\n"
	if buf.String() != want {
		t.Fatalf("FormatDiff:\n%q\nwant:\n%q", buf.String(), want)
	}
}

func TestPathString(t *testing.T) {
	tests := []struct {
		path []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a.b"},
		{[]string{"a.b"}, `"a.b"`},
		{[]string{"", "x y", "é"}, `"".` + `"x y".é`},
		{[]string{`q"`}, `"q\""`},
	}
	for _, tt := range tests {
		if got := PathString(tt.path); got != tt.want {
			t.Errorf("PathString(%q) = %s, want %s", tt.path, got, tt.want)
		}
	}
}

func TestKindString(t *testing.T) {
	names := map[Kind]string{Unchanged: "unchanged", ChangedOurs: "ours", ChangedTheirs: "theirs",
		ChangedBoth: "both", Conflicting: "conflict", Kind(9): "Kind(9)"}
	for k, want := range names {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %s, want %s", k, k.String(), want)
		}
	}
}

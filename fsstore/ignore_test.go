package fsstore

import "testing"

func TestBuiltinIgnore(t *testing.T) {
	var m *Matcher // nil: built-in rules only
	records := []string{"user/1.json", "notes/a.b.json", "t/%2Ex.json", "t/#x.json", "t/x.tmp.json",
		"t/a%2Econflict-h-20260102T030405.json", "t/a.conflict.json"}
	for _, p := range records {
		if m.IsIgnored(p) {
			t.Errorf("IsIgnored(%q) = true, want a record", p)
		}
	}
	ignored := []string{
		"user/1.txt", "user/1.json.swp", "user/.1.json.swp", "user/1.json.swo",
		"user/4913", "user/1.json~", "user/#1.json#", "user/.#1.json",
		"user/1.json.tmp", "user/1.json.part", ".synk/index.json", "top.json",
		"user/sub/1.json", ".hidden/1.json", "user/.json", "user/x.swp",
		"user/1.conflict-host-20260102T030405.json", "user/a%2Fb.conflict-h.x-20260102T030405-2.json",
	}
	for _, p := range ignored {
		if !m.IsIgnored(p) {
			t.Errorf("IsIgnored(%q) = false, want ignored", p)
		}
	}
	if m.IsIgnoredDir("user") || m.IsIgnoredDir("") || !m.IsIgnoredDir(".synk") || !m.IsIgnoredDir("user/sub") {
		t.Error("IsIgnoredDir built-in rules wrong")
	}
}

func TestSynkignorePatterns(t *testing.T) {
	m, err := ParseIgnore([]byte(`
# comment
drafts/
*.bak.json
/log/x?.json
secret*
!secret-ok.json
**/tmp-*.json
cache/**
!drafts/keep.json
\#hash.json
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		"drafts/a.json":        true,  // dir-only pattern excludes the folder
		"drafts/keep.json":     true,  // cannot re-include inside an excluded dir
		"notes/a.bak.json":     true,  // unanchored glob matches at any depth
		"notes/a.json":         false, // untouched
		"log/x1.json":          true,  // anchored pattern matches
		"log/x12.json":         false,
		"notes/secret.json":    true,
		"notes/secret-ok.json": false, // negated
		"secrets/a.json":       true,  // unanchored secret* matches the dir
		"a/tmp-1.json":         true,
		"cache/1.json":         true,
		"a/#hash.json":         true,
		"a/hash.json":          false,
	}
	for p, want := range cases {
		if got := m.IsIgnored(p); got != want {
			t.Errorf("IsIgnored(%q) = %v, want %v", p, got, want)
		}
	}
	if !m.IsIgnoredDir("drafts") || m.IsIgnoredDir("notes") {
		t.Error("IsIgnoredDir with patterns wrong")
	}

	m, err = ParseIgnore([]byte("/x.json\nlog/x?.json\nlog/[\n"))
	if err == nil {
		t.Error("malformed pattern not reported")
	}
	// "log/x?.json" is anchored: it matches log/x1.json and nothing deeper.
	if !m.IsIgnored("log/x1.json") || m.IsIgnored("log/x12.json") {
		t.Error("anchored pattern wrong")
	}
}

package fsstore

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/synkfs/synkfs"
	"pgregory.net/rapid"
)

func TestEscapeExamples(t *testing.T) {
	cases := []struct{ in, want string }{
		{"user", "user"},
		{"a/b", "a%2Fb"},
		{".hidden", "%2Ehidden"},
		{"..", "%2E."},
		{"a.b", "a.b"},
		{"100%", "100%25"},
		{"tab\there", "tab%09here"},
		{"nul\x00", "nul%00"},
		{"del\x7f", "del%7F"},
		{"ünïcödé ✓", "ünïcödé ✓"},
		{"#x#", "#x#"},
		{"a.conflict-h-20260102T030405", "a%2Econflict-h-20260102T030405"},
		{".conflict-", "%2Econflict-"},
		{"a.conflict", "a.conflict"},
		{"a..conflict-", "a.%2Econflict-"},
	}
	for _, c := range cases {
		if got := EscapeName(c.in); got != c.want {
			t.Errorf("EscapeName(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := UnescapeName(c.want)
		if err != nil || back != c.in {
			t.Errorf("UnescapeName(%q) = %q, %v; want %q", c.want, back, err, c.in)
		}
	}
}

func TestUnescapeRefusesNonCanonical(t *testing.T) {
	for _, name := range []string{"", "%41", "%2e", "%2", "%", "%GG", ".x", "a\x01", "x%2E",
		"a.conflict-h", "a%2Econflict", "a%2E%63onflict-"} {
		if got, err := UnescapeName(name); err == nil {
			t.Errorf("UnescapeName(%q) = %q, want an error", name, got)
		}
	}
}

func TestKeyPath(t *testing.T) {
	p, err := KeyPath(synkfs.Key{Type: "notes/2024", ID: ".plan"})
	if err != nil || p != "notes%2F2024/%2Eplan.json" {
		t.Fatalf("KeyPath = %q, %v", p, err)
	}
	k, err := PathKey(p)
	if err != nil || k != (synkfs.Key{Type: "notes/2024", ID: ".plan"}) {
		t.Fatalf("PathKey = %v, %v", k, err)
	}
	long := synkfs.Key{Type: "t", ID: strings.Repeat("x", MaxNameLen-len(Ext)+1)}
	_, err = KeyPath(long)
	if !errors.Is(err, ErrNameTooLong) || !strings.Contains(err.Error(), "t::x") {
		t.Fatalf("KeyPath(too long) = %v, want ErrNameTooLong naming the record", err)
	}
	fits := synkfs.Key{Type: "t", ID: strings.Repeat("x", MaxNameLen-len(Ext))}
	if _, err := KeyPath(fits); err != nil {
		t.Fatalf("KeyPath(255 bytes) = %v", err)
	}
	for _, bad := range []string{"t", "t/x.txt", "t/a/b.json", ".synk/x.json", "t/.x.json", "/x.json", "t/.json"} {
		if k, err := PathKey(bad); err == nil {
			t.Errorf("PathKey(%q) = %v, want an error", bad, k)
		}
	}
	if _, err := KeyPath(synkfs.Key{Type: "t"}); err == nil {
		t.Error("KeyPath with an empty id succeeded")
	}
}

// checkKeyRoundTrip is the property: a key either maps to a path that maps
// back to it, or is refused with an error.
func checkKeyRoundTrip(t interface{ Fatalf(string, ...any) }, k synkfs.Key) {
	p, err := KeyPath(k)
	if err != nil {
		if k.Validate() == nil && !errors.Is(err, ErrNameTooLong) {
			t.Fatalf("KeyPath(%q) refused a valid key: %v", k, err)
		}
		return
	}
	dir, file, _ := strings.Cut(p, "/")
	if len(dir) > MaxNameLen || len(file) > MaxNameLen || dir == "" || dir[0] == '.' || file[0] == '.' {
		t.Fatalf("KeyPath(%q) = %q: not a valid file name", k, p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			t.Fatalf("KeyPath(%q) = %q holds a control byte", k, p)
		}
	}
	back, err := PathKey(p)
	if err != nil || back != k {
		t.Fatalf("PathKey(KeyPath(%q)) = %q, %v", k, back, err)
	}
	// A record's file is never taken for a conflict copy, nor ignored.
	if IsConflictCopyName(file) || strings.Contains(file, ConflictInfix) {
		t.Fatalf("KeyPath(%q) = %q looks like a conflict copy", k, p)
	}
	if (*Matcher)(nil).IsIgnored(p) {
		t.Fatalf("KeyPath(%q) = %q is ignored", k, p)
	}
}

func TestKeyRoundTripProperty(t *testing.T) {
	// Bias towards the bytes that matter: escapes, dots, slashes, controls.
	special := rapid.SampledFrom([]string{"%", "/", ".", "\x00", "\x1f", "\x7f", "a", "é", "%2F", "~", "#", " ",
		".conflict-", "conflict-", "%2E", "-20260102T030405", ".json"})
	gen := rapid.OneOf(
		rapid.String(),
		rapid.Custom(func(t *rapid.T) string {
			n := rapid.IntRange(0, 100).Draw(t, "n")
			var b strings.Builder
			for range n {
				b.WriteString(special.Draw(t, "s"))
			}
			return b.String()
		}),
		rapid.Custom(func(t *rapid.T) string {
			return string(rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "bytes"))
		}),
	)
	rapid.Check(t, func(t *rapid.T) {
		k := synkfs.Key{Type: gen.Draw(t, "type"), ID: gen.Draw(t, "id")}
		checkKeyRoundTrip(t, k)
	})
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"user", "a/b", ".x", "%", "%41", "\x00", "ü", strings.Repeat("/", 90),
		"a.conflict-h-20260102T030405", ".conflict-", "a%2Econflict-b", "x..conflict-"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, typ, id string) {
		checkKeyRoundTrip(t, synkfs.Key{Type: typ, ID: id})
		// Unescape in turn: whatever it accepts must escape back to itself.
		if s, err := UnescapeName(id); err == nil {
			if EscapeName(s) != id {
				t.Fatalf("EscapeName(UnescapeName(%q)) = %q", id, EscapeName(s))
			}
			if utf8.ValidString(id) && !utf8.ValidString(s) {
				t.Fatalf("unescaping %q made invalid UTF-8", id)
			}
		}
	})
}

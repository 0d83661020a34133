package fsstore

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// IgnoreFile is the name of the file, at the store root, whose
// gitignore-style patterns exclude more paths from being records.
const IgnoreFile = ".synkignore"

// Matcher decides which paths under a store root are never records. The
// zero Matcher (or nil) applies only the built-in rules:
//
//   - any path component starting with '.' (the state folder, dot files,
//     vim swap files, emacs ".#x" locks),
//   - a file that is not <type>/<id>.json, i.e. not exactly two levels deep
//     or not ending in ".json",
//   - editor leftovers: "*.swp", "*.swo", "4913", "*~", "#*#", "*.tmp",
//     "*.part" (most already fail the ".json" rule; they are listed so the
//     watcher can drop their events early),
//   - conflict copies, "<id>.conflict-<host>-<time>.json" (see
//     IsConflictCopyName).
//
// Patterns from a .synkignore file add to these: one per line, blank lines
// and lines starting with '#' skipped, '!' negates (re-includes what an
// earlier pattern excluded), a trailing '/' matches directories only, a
// pattern containing a '/' other than at its end is anchored at the root
// (a leading '/' just anchors), '*' and '?' match within one path component
// and '**' as a whole component matches any number of components. As in git,
// a file inside an excluded directory cannot be re-included.
//
// A Matcher is immutable and safe for concurrent use.
type Matcher struct {
	rules []rule
}

type rule struct {
	segs    []string // pattern components; "**" matches zero or more
	negate  bool
	dirOnly bool
}

// ParseIgnore reads gitignore-style patterns. Lines with a malformed
// pattern (such as an unclosed '[') are skipped and reported in the
// returned error; the Matcher is usable either way.
func ParseIgnore(data []byte) (*Matcher, error) {
	m := &Matcher{}
	var errs []error
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		line = trimTrailingSpaces(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var r rule
		if line[0] == '!' {
			r.negate = true
			line = line[1:]
		} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			r.dirOnly = true
			line = strings.TrimRight(line, "/")
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		if line == "" {
			continue
		}
		r.segs = strings.Split(line, "/")
		if !anchored {
			r.segs = append([]string{"**"}, r.segs...)
		}
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s line %d: %q: %w", IgnoreFile, i+1, line, err))
			continue
		}
		m.rules = append(m.rules, r)
	}
	return m, errors.Join(errs...)
}

// trimTrailingSpaces drops trailing spaces unless escaped with '\'.
func trimTrailingSpaces(s string) string {
	for strings.HasSuffix(s, " ") && !strings.HasSuffix(s, `\ `) {
		s = s[:len(s)-1]
	}
	return s
}

func (r rule) validate() error {
	for _, s := range r.segs {
		if _, err := path.Match(s, ""); err != nil {
			return err
		}
	}
	return nil
}

// IsIgnored reports whether the file at relpath ('/'-separated, relative to
// the root) is never a record. A nil Matcher applies the built-in rules.
func (m *Matcher) IsIgnored(relpath string) bool {
	segs := strings.Split(relpath, "/")
	if len(segs) != 2 || !strings.HasSuffix(segs[1], Ext) {
		return true
	}
	for _, s := range segs {
		if s == "" || s[0] == '.' {
			return true
		}
	}
	if editorLeftover(segs[1]) || IsConflictCopyName(segs[1]) {
		return true
	}
	return m.excluded(segs[:1], true) || m.excluded(segs, false)
}

// IsIgnoredDir reports whether nothing under the directory at relpath can be
// a record: the watcher need not watch it. The root is "" or ".".
func (m *Matcher) IsIgnoredDir(relpath string) bool {
	if relpath == "" || relpath == "." {
		return false
	}
	segs := strings.Split(relpath, "/")
	if len(segs) != 1 || segs[0] == "" || segs[0][0] == '.' {
		return true
	}
	return m.excluded(segs, true)
}

func editorLeftover(name string) bool {
	for _, suf := range []string{".swp", ".swo", "~", ".tmp", ".part"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return name == "4913" || (len(name) > 1 && name[0] == '#' && name[len(name)-1] == '#')
}

// excluded applies the patterns to the path segs (a directory when isDir):
// the last matching pattern wins.
func (m *Matcher) excluded(segs []string, isDir bool) bool {
	if m == nil {
		return false
	}
	out := false
	for _, r := range m.rules {
		if r.dirOnly && !isDir {
			continue
		}
		if matchSegs(r.segs, segs) {
			out = !r.negate
		}
	}
	return out
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			for i := 0; i <= len(name); i++ {
				if matchSegs(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

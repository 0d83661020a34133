package fsstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/synkfs/synkfs"
)

// Record file names.
//
// A record with key (type, id) lives in the file <type>/<id>.json, where
// each part is escaped by EscapeName: the bytes a file name component cannot
// hold, or that would make it mean something else, are written as "%XX"
// (two upper-case hex digits). Exactly these bytes are escaped:
//
//   - '%' itself (the escape character),
//   - '/' and NUL (a file name cannot hold them),
//   - control characters 0x01-0x1F and 0x7F (editors and shells mangle them),
//   - a '.' in the first position (names starting with '.' are reserved for
//     the state folder and editor files, and "." and ".." are not names),
//   - the '.' of a ".conflict-" sequence (such names are conflict copies,
//     which are never records; see ConflictInfix).
//
// Every other byte, including any UTF-8 sequence, is kept as is. The
// mapping is a bijection: UnescapeName accepts only names that EscapeName
// produces, so two different files never map to the same key.

// MaxNameLen is the longest file name component most file systems accept,
// in bytes. An escaped type, and an escaped id plus ".json", must fit.
const MaxNameLen = 255

// Ext is the extension of every record file.
const Ext = ".json"

// ErrNameTooLong is wrapped by the error returned for a key whose escaped
// type or id does not fit in a file name.
var ErrNameTooLong = errors.New("file name too long")

const hexDigits = "0123456789ABCDEF"

// mustEscape reports whether byte c, at position i of the unescaped name,
// must be escaped; rest is what follows it in the unescaped name (its
// first bytes suffice: "conflict-" holds no byte that is ever escaped, so
// it reads the same escaped and unescaped).
func mustEscape(c byte, i int, rest string) bool {
	return c == '%' || c == '/' || c < 0x20 || c == 0x7f ||
		(c == '.' && (i == 0 || strings.HasPrefix(rest, ConflictInfix[1:])))
}

// EscapeName returns s as a file name component (see the package's rules
// above). It does not check the length.
func EscapeName(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i], i, s[i+1:]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c, i, s[i+1:]) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UnescapeName reverses EscapeName. It refuses a name that EscapeName would
// not produce: an empty name, a '%' not followed by two upper-case hex
// digits, an escape of a byte that needs none, or a byte that needs one.
func UnescapeName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			if mustEscape(c, b.Len(), name[i+1:]) {
				return "", fmt.Errorf("name %q: byte %#02x at %d must be escaped", name, c, i)
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", fmt.Errorf("name %q: truncated escape at %d", name, i)
		}
		hi, lo := unhex(name[i+1]), unhex(name[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("name %q: bad escape %q at %d", name, name[i:i+3], i)
		}
		d := byte(hi<<4 | lo)
		if !mustEscape(d, b.Len(), name[i+3:]) {
			return "", fmt.Errorf("name %q: %q escapes a byte that needs no escape", name, name[i:i+3])
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// KeyPath returns the path of k's record file relative to the store root,
// with '/' as separator: "<escaped type>/<escaped id>.json". It refuses an
// invalid key and a key whose names are too long, with an error naming the
// record (wrapping ErrNameTooLong for the latter).
func KeyPath(k synkfs.Key) (string, error) {
	if err := k.Validate(); err != nil {
		return "", err
	}
	t, id := EscapeName(k.Type), EscapeName(k.ID)+Ext
	if len(t) > MaxNameLen {
		return "", fmt.Errorf("record %s: type is %d bytes as a file name, the limit is %d: %w", k, len(t), MaxNameLen, ErrNameTooLong)
	}
	if len(id) > MaxNameLen {
		return "", fmt.Errorf("record %s: id is %d bytes as a file name (with %s), the limit is %d: %w", k, len(id), Ext, MaxNameLen, ErrNameTooLong)
	}
	return t + "/" + id, nil
}

// ValidateKey reports whether the store can hold a record with key k: a
// valid key whose escaped type and id fit in file names (see KeyPath). The
// error names the record. A server checks each record of a batch with it,
// so one bad name is refused alone instead of failing the whole batch.
func (s *Store) ValidateKey(k synkfs.Key) error {
	_, err := KeyPath(k)
	return err
}

// PathKey is the inverse of KeyPath: it returns the key of the record file
// at relpath ("<type>/<id>.json", '/'-separated, relative to the root). It
// fails for any path that KeyPath would not produce.
func PathKey(relpath string) (synkfs.Key, error) {
	dir, file, ok := strings.Cut(relpath, "/")
	if !ok || strings.Contains(file, "/") {
		return synkfs.Key{}, fmt.Errorf("%s: a record file is <type>/<id>%s", relpath, Ext)
	}
	base, ok := strings.CutSuffix(file, Ext)
	if !ok {
		return synkfs.Key{}, fmt.Errorf("%s: not a %s file", relpath, Ext)
	}
	if len(dir) > MaxNameLen || len(file) > MaxNameLen {
		return synkfs.Key{}, fmt.Errorf("%s: %w", relpath, ErrNameTooLong)
	}
	t, err := UnescapeName(dir)
	if err != nil {
		return synkfs.Key{}, fmt.Errorf("%s: type: %w", relpath, err)
	}
	id, err := UnescapeName(base)
	if err != nil {
		return synkfs.Key{}, fmt.Errorf("%s: id: %w", relpath, err)
	}
	return synkfs.Key{Type: t, ID: id}, nil
}

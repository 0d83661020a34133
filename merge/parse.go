package merge

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// kind is the type of a parsed JSON value.
type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindArray
	kindObject
)

// value is a parsed JSON value in canonical shape: strings unescaped,
// numbers already in canonical text, object members sorted by key with no
// duplicates.
type value struct {
	kind kind
	s    string   // kindString: the decoded string; kindNumber: canonical text
	kids []member // kindArray: elements (key unused); kindObject: members
}

type member struct {
	key string
	val value
}

// parse parses one JSON value surrounded by optional whitespace.
func parse(data []byte) (value, error) {
	p := parser{data: data}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return value{}, err
	}
	p.skipSpace()
	if p.pos < len(p.data) {
		return value{}, p.errorf(ErrSyntax, "unexpected %s after top-level value", p.found())
	}
	return v, nil
}

// parseObject is parse for input that must be an object.
func parseObject(data []byte) (value, error) {
	v, err := parse(data)
	if err != nil {
		return value{}, err
	}
	if v.kind != kindObject {
		off := len(data) - len(bytes.TrimLeft(data, " \t\r\n"))
		return value{}, &Error{Offset: off, Err: ErrNotObject, Msg: "value is not a JSON object"}
	}
	return v, nil
}

type parser struct {
	data  []byte
	pos   int
	depth int
}

func (p *parser) errorf(sentinel error, format string, args ...any) error {
	return &Error{Offset: p.pos, Err: sentinel, Msg: fmt.Sprintf(format, args...)}
}

// found describes the byte at p.pos for error messages.
func (p *parser) found() string {
	if p.pos >= len(p.data) {
		return "end of input"
	}
	return fmt.Sprintf("character %q", p.data[p.pos])
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

func (p *parser) value() (value, error) {
	switch c := p.peek(); {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return value{kind: kindString, s: s}, err
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true", kindTrue)
	case c == 'f':
		return p.literal("false", kindFalse)
	case c == 'n':
		return p.literal("null", kindNull)
	default:
		return value{}, p.errorf(ErrSyntax, "unexpected %s, expected a value", p.found())
	}
}

func (p *parser) literal(word string, k kind) (value, error) {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(word)) {
		return value{}, p.errorf(ErrSyntax, "invalid literal, expected %s", word)
	}
	p.pos += len(word)
	return value{kind: k}, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errorf(ErrTooDeep, "nesting deeper than %d", MaxDepth)
	}
	return nil
}

func (p *parser) array() (value, error) {
	if err := p.enter(); err != nil {
		return value{}, err
	}
	p.pos++ // '['
	p.skipSpace()
	var elems []member
	if p.peek() == ']' {
		p.pos++
		p.depth--
		return value{kind: kindArray}, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return value{}, err
		}
		elems = append(elems, member{val: v})
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			p.depth--
			return value{kind: kindArray, kids: elems}, nil
		default:
			return value{}, p.errorf(ErrSyntax, "unexpected %s in array, expected ',' or ']'", p.found())
		}
	}
}

func (p *parser) object() (value, error) {
	if err := p.enter(); err != nil {
		return value{}, err
	}
	start := p.pos
	p.pos++ // '{'
	p.skipSpace()
	var members []member
	if p.peek() == '}' {
		p.pos++
		p.depth--
		return value{kind: kindObject}, nil
	}
	for {
		if p.peek() != '"' {
			return value{}, p.errorf(ErrSyntax, "unexpected %s in object, expected a string key", p.found())
		}
		key, err := p.str()
		if err != nil {
			return value{}, err
		}
		p.skipSpace()
		if p.peek() != ':' {
			return value{}, p.errorf(ErrSyntax, "unexpected %s after object key, expected ':'", p.found())
		}
		p.pos++
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return value{}, err
		}
		members = append(members, member{key: key, val: v})
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
			continue
		case '}':
			p.pos++
		default:
			return value{}, p.errorf(ErrSyntax, "unexpected %s in object, expected ',' or '}'", p.found())
		}
		break
	}
	p.depth--
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(members); i++ {
		if members[i].key == members[i-1].key {
			return value{}, &Error{Offset: start, Err: ErrDuplicateKey,
				Msg: fmt.Sprintf("duplicate key %q in the object starting here", members[i].key)}
		}
	}
	return value{kind: kindObject, kids: members}, nil
}

// str parses a string starting at the opening quote and returns it decoded.
func (p *parser) str() (string, error) {
	start := p.pos
	i := p.pos + 1
	// Fast path: no escapes, so the decoded string is the input bytes.
	for i < len(p.data) {
		c := p.data[i]
		if c == '"' {
			s := string(p.data[start+1 : i])
			p.pos = i + 1
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			p.pos = i
			return "", p.errorf(ErrSyntax, "control character %#02x in string", c)
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(p.data[i:])
		if r == utf8.RuneError && size == 1 {
			p.pos = i
			return "", p.errorf(ErrInvalidUTF8, "invalid UTF-8 byte %#02x in string", c)
		}
		i += size
	}
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, p.data[start+1:i]...)
	for i < len(p.data) {
		c := p.data[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(buf), nil
		case c == '\\':
			if i+1 >= len(p.data) {
				i++
				continue // reported as unterminated below
			}
			switch e := p.data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, n, err := p.unicodeEscape(i)
				if err != nil {
					return "", err
				}
				buf = utf8.AppendRune(buf, r)
				i += n
				continue
			default:
				p.pos = i
				return "", p.errorf(ErrSyntax, "invalid escape %q in string", p.data[i:i+2])
			}
			i += 2
		case c < 0x20:
			p.pos = i
			return "", p.errorf(ErrSyntax, "control character %#02x in string", c)
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, size := utf8.DecodeRune(p.data[i:])
			if r == utf8.RuneError && size == 1 {
				p.pos = i
				return "", p.errorf(ErrInvalidUTF8, "invalid UTF-8 byte %#02x in string", c)
			}
			buf = append(buf, p.data[i:i+size]...)
			i += size
		}
	}
	p.pos = start
	return "", p.errorf(ErrSyntax, "unterminated string")
}

// unicodeEscape decodes the \uXXXX escape at i (and the low surrogate that
// must follow a high one). It returns the rune and the bytes consumed.
func (p *parser) unicodeEscape(i int) (rune, int, error) {
	r, ok := hex4(p.data[i+2:])
	if !ok {
		p.pos = i
		return 0, 0, p.errorf(ErrSyntax, "invalid \\u escape in string")
	}
	switch {
	case r < 0xd800 || r > 0xdfff:
		return r, 6, nil
	case r <= 0xdbff && len(p.data) >= i+12 && p.data[i+6] == '\\' && p.data[i+7] == 'u':
		if lo, ok := hex4(p.data[i+8:]); ok && 0xdc00 <= lo && lo <= 0xdfff {
			return 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00), 12, nil
		}
	}
	p.pos = i
	return 0, 0, p.errorf(ErrInvalidUTF8, "lone surrogate \\u%04x in string", r)
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

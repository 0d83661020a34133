package merge

// appendCompact appends the canonical compact form of v to b.
func appendCompact(b []byte, v *value) []byte {
	switch v.kind {
	case kindNull:
		return append(b, "null"...)
	case kindFalse:
		return append(b, "false"...)
	case kindTrue:
		return append(b, "true"...)
	case kindNumber:
		return append(b, v.s...)
	case kindString:
		return appendString(b, v.s)
	case kindArray:
		b = append(b, '[')
		for i := range v.kids {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCompact(b, &v.kids[i].val)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i := range v.kids {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, v.kids[i].key)
			b = append(b, ':')
			b = appendCompact(b, &v.kids[i].val)
		}
		return append(b, '}')
	}
}

// appendIndent appends v indented by two spaces per level, starting at
// nesting level depth. It writes no trailing newline.
func appendIndent(b []byte, v *value, depth int) []byte {
	if (v.kind != kindArray && v.kind != kindObject) || len(v.kids) == 0 {
		return appendCompact(b, v)
	}
	open, end := byte('['), byte(']')
	if v.kind == kindObject {
		open, end = '{', '}'
	}
	b = append(b, open)
	for i := range v.kids {
		if i > 0 {
			b = append(b, ',')
		}
		b = newline(b, depth+1)
		if v.kind == kindObject {
			b = appendString(b, v.kids[i].key)
			b = append(b, ':', ' ')
		}
		b = appendIndent(b, &v.kids[i].val, depth+1)
	}
	b = newline(b, depth)
	return append(b, end)
}

func newline(b []byte, depth int) []byte {
	b = append(b, '\n')
	for range depth {
		b = append(b, ' ', ' ')
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with the fewest escapes. s is
// valid UTF-8: the parser refuses anything else.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// equal reports whether two parsed values are the same; nil stands for an
// absent value and equals only nil.
func equal(a, b *value) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.kind != b.kind || a.s != b.s || len(a.kids) != len(b.kids) {
		return false
	}
	for i := range a.kids {
		if a.kids[i].key != b.kids[i].key || !equal(&a.kids[i].val, &b.kids[i].val) {
			return false
		}
	}
	return true
}

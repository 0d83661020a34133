package wire

import (
	"bytes"
	"encoding/json"
)

// This file walks JSON that json.Unmarshal has already validated, without
// building values: splitting arrays into elements and objects into
// members. It is what lets Decode check counts and sizes before decoding
// records, and decode each record in one pass instead of three.
//
// Every function here assumes valid JSON; on anything else it returns
// ok=false or stops early, never panics.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string whose opening quote
// is at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		j := bytes.IndexAny(b[i:], `"\`)
		if j < 0 {
			return len(b)
		}
		i += j
		if b[i] == '"' {
			return i + 1
		}
		i++ // the escaped byte
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// elements splits a JSON array into its elements; ok is false when raw is
// not an array.
func elements(raw []byte) (elems []json.RawMessage, ok bool) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil, false
	}
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return nil, true
	}
	for i < len(raw) {
		end := skipValue(raw, i)
		if end == i {
			return nil, false
		}
		elems = append(elems, raw[i:end])
		i = skipWS(raw, end)
		if i >= len(raw) || raw[i] != ',' {
			break
		}
		i = skipWS(raw, i+1)
	}
	return elems, true
}

// eachMember calls fn with the raw key (quotes included) and raw value of
// every member of a JSON object, in order; ok is false when raw is not an
// object.
func eachMember(raw []byte, fn func(key, val []byte)) (ok bool) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipWS(raw, i+1)
	for i < len(raw) && raw[i] == '"' {
		kEnd := skipString(raw, i)
		key := raw[i:kEnd]
		i = skipWS(raw, kEnd)
		if i >= len(raw) || raw[i] != ':' {
			return false
		}
		i = skipWS(raw, i+1)
		vEnd := skipValue(raw, i)
		fn(key, raw[i:vEnd])
		i = skipWS(raw, vEnd)
		if i >= len(raw) || raw[i] != ',' {
			break
		}
		i = skipWS(raw, i+1)
	}
	return true
}

// unquote decodes a raw JSON string as encoding/json does (invalid UTF-8
// becomes U+FFFD); ok is false when raw is not a string.
func unquote(raw []byte) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	plain := true
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c >= 0x80 {
			plain = false
			break
		}
	}
	if plain {
		return string(raw[1 : len(raw)-1]), true
	}
	return s, json.Unmarshal(raw, &s) == nil
}

// appendKey appends k as a JSON string, escaped as json.Marshal escapes
// it (synkfs.Record does the same for body keys).
func appendKey(dst []byte, k string) []byte {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(k) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, k...)
	return append(dst, '"')
}

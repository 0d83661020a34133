package merge

import (
	"strconv"
	"strings"
)

// maxExponent bounds the exponent written in a number literal. Numbers with
// a larger exponent (and a non-zero value) are refused instead of expanded.
const maxExponent = 1_000_000_000

// maxIntegerZeros is the most trailing zeros an integer is written with
// before the exponent form is used instead.
const maxIntegerZeros = 21

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number parses a number literal at p.pos and returns it in canonical text.
func (p *parser) number() (value, error) {
	start := p.pos
	d := p.data
	i := p.pos
	neg := d[i] == '-'
	if neg {
		i++
	}
	intStart := i
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && isDigit(d[i]):
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	default:
		p.pos = i
		return value{}, p.errorf(ErrSyntax, "invalid number, expected a digit")
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(d) && d[i] == '.' {
		i++
		fracStart = i
		for i < len(d) && isDigit(d[i]) {
			i++
		}
		if i == fracStart {
			p.pos = i
			return value{}, p.errorf(ErrSyntax, "invalid number, expected a digit after '.'")
		}
		fracEnd = i
	}
	var exp int64
	expSeen := false
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		expSeen = true
		i++
		expNeg := false
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			expNeg = d[i] == '-'
			i++
		}
		digits := i
		for i < len(d) && isDigit(d[i]) {
			if exp <= maxExponent {
				exp = exp*10 + int64(d[i]-'0')
			}
			i++
		}
		if i == digits {
			p.pos = i
			return value{}, p.errorf(ErrSyntax, "invalid number, expected a digit in exponent")
		}
		if expNeg {
			exp = -exp
		}
	}
	p.pos = i

	// Fast path: a plain integer is already canonical unless it is -0 or
	// ends in too many zeros.
	if !expSeen && fracStart == fracEnd {
		lit := d[start:i]
		if d[intStart] == '0' {
			return value{kind: kindNumber, s: "0"}, nil
		}
		zeros := 0
		for j := i - 1; j >= intStart && d[j] == '0'; j-- {
			zeros++
		}
		if zeros <= maxIntegerZeros {
			return value{kind: kindNumber, s: string(lit)}, nil
		}
	}

	// The value is digits × 10^(exp - len(fraction)), where digits are the
	// integer and fraction digits run together. Strip the zeros at both
	// ends of digits to get d × 10^q.
	digits := make([]byte, 0, intEnd-intStart+fracEnd-fracStart)
	digits = append(digits, d[intStart:intEnd]...)
	digits = append(digits, d[fracStart:fracEnd]...)
	lead := 0
	for lead < len(digits) && digits[lead] == '0' {
		lead++
	}
	if lead == len(digits) {
		return value{kind: kindNumber, s: "0"}, nil
	}
	if exp > maxExponent || exp < -maxExponent {
		p.pos = start
		return value{}, p.errorf(ErrNumberRange, "number exponent beyond ±%d", maxExponent)
	}
	trail := 0
	for digits[len(digits)-1-trail] == '0' {
		trail++
	}
	sig := digits[lead : len(digits)-trail]
	q := exp - int64(fracEnd-fracStart) + int64(trail)
	// The bound holds for the exponent the canonical form writes too
	// (10e1000000000 is 1e+1000000001), so that every canonical form can
	// be read back.
	if sci := int64(len(sig)) + q - 1; sci > maxExponent || sci < -maxExponent {
		p.pos = start
		return value{}, p.errorf(ErrNumberRange, "number exponent beyond ±%d", maxExponent)
	}
	return value{kind: kindNumber, s: formatNumber(neg, sig, q)}, nil
}

// formatNumber writes the value ±sig × 10^q, where sig is a string of digits
// without leading or trailing zeros, in the layout the package comment
// describes.
func formatNumber(neg bool, sig []byte, q int64) string {
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	k := int64(len(sig))
	n := k + q // the value is 0.sig × 10^n
	switch {
	case q >= 0 && q <= maxIntegerZeros:
		b.Write(sig)
		for range q {
			b.WriteByte('0')
		}
	case q < 0 && n > 0:
		b.Write(sig[:n])
		b.WriteByte('.')
		b.Write(sig[n:])
	case q < 0 && n > -6:
		b.WriteString("0.")
		for range -n {
			b.WriteByte('0')
		}
		b.Write(sig)
	default:
		b.WriteByte(sig[0])
		if k > 1 {
			b.WriteByte('.')
			b.Write(sig[1:])
		}
		b.WriteByte('e')
		if n-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.FormatInt(n-1, 10))
	}
	return b.String()
}

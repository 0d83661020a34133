package wire

import "fmt"

// Error codes of Error messages and CodeErrors.
const (
	CodeBadMessage   = "bad-message"  // not JSON, or not a known shape
	CodeTooLarge     = "too-large"    // a message or a record over its size limit
	CodeTooDeep      = "too-deep"     // JSON nested deeper than the limit
	CodeTooMany      = "too-many"     // more records in one message than the limit
	CodeInvalid      = "invalid"      // a record that can never be stored
	CodeRateLimit    = "rate-limit"   // the peer sends too fast
	CodeUnauthorized = "unauthorized" // no or bad credentials
	CodeForbidden    = "forbidden"    // credentials lack the right
	CodeBusy         = "busy"         // the server cannot take it now; retry later
	CodeInternal     = "internal"     // the server failed
)

// Default limits (docs/PROTOCOL.md).
const (
	DefaultMaxMessage = 4 << 20
	DefaultMaxRecords = 10_000
	DefaultMaxRecord  = 1 << 20
	DefaultMaxDepth   = 64
)

// Limits bound what Decode and Conn.Read accept. A zero (or negative)
// field means its default; a nil *Limits means all defaults.
type Limits struct {
	// MaxMessage is the largest encoded message, in bytes (also the
	// largest a zstd frame may decompress to).
	MaxMessage int64
	// MaxRecords is the most records plus deletes one message may carry.
	MaxRecords int
	// MaxRecord is the largest encoded record, in bytes.
	MaxRecord int
	// MaxDepth is the deepest JSON nesting of a message, counting the
	// message object itself as 1.
	MaxDepth int
}

// DefaultLimits are the limits a zero Limits stands for.
var DefaultLimits = Limits{
	MaxMessage: DefaultMaxMessage,
	MaxRecords: DefaultMaxRecords,
	MaxRecord:  DefaultMaxRecord,
	MaxDepth:   DefaultMaxDepth,
}

// withDefaults returns lim with its zero fields set to the defaults.
func (lim *Limits) withDefaults() Limits {
	var l Limits
	if lim != nil {
		l = *lim
	}
	if l.MaxMessage <= 0 {
		l.MaxMessage = DefaultMaxMessage
	}
	if l.MaxRecords <= 0 {
		l.MaxRecords = DefaultMaxRecords
	}
	if l.MaxRecord <= 0 {
		l.MaxRecord = DefaultMaxRecord
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// CodeError is a message refused by Decode or Conn: Code is one of the
// Code constants and Message a sentence saying what was wrong, fit to send
// back to the peer in an Error message.
type CodeError struct {
	Code    string
	Message string
	// Batch is the batch id of the refused changes message, when Conn.Read
	// could find one (see PeekBatch); 0 otherwise.
	Batch uint64
}

func (e *CodeError) Error() string { return e.Code + ": " + e.Message }

func codeErrorf(code, format string, args ...any) *CodeError {
	return &CodeError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// size spells a byte count for a person: "512 bytes", "3 KiB", "9 MiB".
// Whole units only, so limits read as they were configured.
func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n == 1:
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

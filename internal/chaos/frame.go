package chaos

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// WebSocket framing (RFC 6455, section 5.2), just enough to tell whole
// frames apart in a relayed byte stream: the relay never unmasks nor
// decompresses a payload.

// maxFrame bounds one frame the relay buffers; larger frames make the link
// fall back to passing bytes through unparsed.
const maxFrame = 128 << 20

// WebSocket opcodes the relay cares about.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
)

var errFrameTooLarge = errors.New("websocket frame over the relay's limit")

// frame describes one complete frame at the start of a buffer.
type frame struct {
	size   int  // header and payload, in bytes
	opcode byte // low four bits of the first byte
	fin    bool // the last frame of its message
}

// message reports whether the frame is a whole data message on its own
// (text or binary, not fragmented): duplicating it repeats one message.
func (f frame) message() bool {
	return f.fin && (f.opcode == opText || f.opcode == opBinary)
}

// parseFrame returns the frame at the start of b. ok is false when b does
// not hold a whole frame yet; err is set when the header cannot be relayed
// as frames (a length over maxFrame, or over the 63 bits the RFC allows).
func parseFrame(b []byte) (f frame, ok bool, err error) {
	if len(b) < 2 {
		return f, false, nil
	}
	f.fin = b[0]&0x80 != 0
	f.opcode = b[0] & 0x0f
	masked := b[1]&0x80 != 0
	n := uint64(b[1] & 0x7f)
	hdr := 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, false, nil
		}
		n = uint64(binary.BigEndian.Uint16(b[2:4]))
		hdr = 4
	case 127:
		if len(b) < 10 {
			return f, false, nil
		}
		n = binary.BigEndian.Uint64(b[2:10])
		hdr = 10
	}
	if masked {
		hdr += 4
	}
	if n > maxFrame {
		return f, false, errFrameTooLarge
	}
	f.size = hdr + int(n)
	if len(b) < f.size {
		return f, false, nil
	}
	return f, true, nil
}

// headerEnd returns the length of the HTTP head at the start of b (up to
// and including the blank line), or -1 if it is not complete yet.
func headerEnd(b []byte) int {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return -1
	}
	return i + 4
}

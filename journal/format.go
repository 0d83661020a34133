package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// On-disk format constants; see the package documentation for the layout.
const (
	// Magic opens every segment file.
	Magic = "SKWL"
	// Version is the segment format version this package writes and reads.
	Version = 1
	// HeaderSize is the size of a segment header in bytes.
	HeaderSize = 20
	// FrameHeaderSize is the size of the fixed part of an entry frame.
	FrameHeaderSize = 16
	// MaxEntrySize bounds the payload of one entry. Append refuses larger
	// entries; a decoder treats a larger length as damage.
	MaxEntrySize = 128 << 20
)

// Typed format errors. Decoding errors from a journal's files reach the
// caller wrapped in a *CorruptError, so errors.Is still finds them.
var (
	// ErrBadMagic: the segment does not start with Magic.
	ErrBadMagic = errors.New("not a journal segment (bad magic)")
	// ErrVersion: the segment was written in an unknown format version.
	ErrVersion = errors.New("unsupported journal format version")
	// ErrHeaderChecksum: the segment header fails its checksum.
	ErrHeaderChecksum = errors.New("segment header checksum mismatch")
	// ErrTruncated: the input ends inside a header or an entry frame.
	ErrTruncated = errors.New("truncated entry")
	// ErrChecksum: an entry frame is complete but fails its checksum.
	ErrChecksum = errors.New("entry checksum mismatch")
	// ErrTooLarge: an entry length exceeds MaxEntrySize.
	ErrTooLarge = errors.New("entry too large")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentHeader is the decoded header of one segment file.
type segmentHeader struct {
	Version  uint16
	FirstSeq uint64
}

// appendHeader appends the encoded header of a segment whose first entry
// has sequence number firstSeq.
func appendHeader(b []byte, firstSeq uint64) []byte {
	start := len(b)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint16(b, Version)
	b = binary.LittleEndian.AppendUint16(b, 0) // flags, reserved
	b = binary.LittleEndian.AppendUint64(b, firstSeq)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// readHeader reads and validates a segment header. A short input gives
// ErrTruncated.
func readHeader(r io.Reader) (segmentHeader, error) {
	var b [HeaderSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return segmentHeader{}, ErrTruncated
		}
		return segmentHeader{}, err
	}
	if string(b[:4]) != Magic {
		return segmentHeader{}, ErrBadMagic
	}
	if binary.LittleEndian.Uint32(b[16:]) != crc32.Checksum(b[:16], castagnoli) {
		return segmentHeader{}, ErrHeaderChecksum
	}
	h := segmentHeader{
		Version:  binary.LittleEndian.Uint16(b[4:]),
		FirstSeq: binary.LittleEndian.Uint64(b[8:]),
	}
	if h.Version != Version {
		return h, fmt.Errorf("%w %d", ErrVersion, h.Version)
	}
	return h, nil
}

// frame is one entry being encoded: FrameHeaderSize bytes of header
// followed by the payload. newFrame fills in the length and the payload's
// checksum; seal adds the sequence number once the writer assigns it.
type frame []byte

// newFrame copies data into a frame and checksums it, leaving the sequence
// number unset. It runs in the appending goroutine, so the checksum work
// of concurrent appends proceeds in parallel.
func newFrame(data []byte) frame {
	f := make(frame, FrameHeaderSize+len(data))
	binary.LittleEndian.PutUint32(f[0:], uint32(len(data)))
	copy(f[FrameHeaderSize:], data)
	binary.LittleEndian.PutUint32(f[4:], crc32.Checksum(data, castagnoli))
	return f
}

// seal sets the frame's sequence number and completes its checksum.
func (f frame) seal(seq uint64) {
	binary.LittleEndian.PutUint64(f[8:], seq)
	binary.LittleEndian.PutUint32(f[4:], frameCRC(binary.LittleEndian.Uint32(f[4:]), f[0:4], f[8:16]))
}

// frameCRC extends the payload checksum over the length and sequence
// fields.
func frameCRC(payloadCRC uint32, length, seq []byte) uint32 {
	c := crc32.Update(payloadCRC, castagnoli, length)
	return crc32.Update(c, castagnoli, seq)
}

// appendEntry appends one complete encoded entry to b.
func appendEntry(b []byte, seq uint64, data []byte) []byte {
	f := newFrame(data)
	f.seal(seq)
	return append(b, f...)
}

// decoder reads entry frames from a segment body (after the header).
type decoder struct {
	r   io.Reader
	off int64 // offset of the next frame, relative to where r started

	// After an error: the length the bad frame declared, if its header
	// was complete (-1 otherwise).
	badLen int64
	hdr    [FrameHeaderSize]byte
}

func newDecoder(r io.Reader, off int64) *decoder {
	return &decoder{r: r, off: off, badLen: -1}
}

// next decodes one entry. It returns io.EOF at a clean end between frames,
// ErrTruncated when the input ends inside a frame, ErrTooLarge or
// ErrChecksum for a damaged frame, or the reader's own error. On any error
// d.off stays at the start of the offending frame. data is freshly
// allocated.
func (d *decoder) next() (seq uint64, data []byte, err error) {
	d.badLen = -1
	_, err = io.ReadFull(d.r, d.hdr[:])
	switch {
	case err == io.EOF:
		return 0, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return 0, nil, ErrTruncated
	case err != nil:
		return 0, nil, err
	}
	length := binary.LittleEndian.Uint32(d.hdr[0:])
	d.badLen = int64(length)
	if length > MaxEntrySize {
		return 0, nil, ErrTooLarge
	}
	data, err = readN(d.r, int(length))
	if err != nil {
		return 0, nil, err
	}
	want := binary.LittleEndian.Uint32(d.hdr[4:])
	if frameCRC(crc32.Checksum(data, castagnoli), d.hdr[0:4], d.hdr[8:16]) != want {
		return 0, nil, ErrChecksum
	}
	d.badLen = -1
	d.off += FrameHeaderSize + int64(length)
	return binary.LittleEndian.Uint64(d.hdr[8:]), data, nil
}

// readN reads exactly n bytes, growing the buffer as data actually
// arrives so that a damaged length cannot force a large allocation.
func readN(r io.Reader, n int) ([]byte, error) {
	const chunk = 1 << 20
	if n <= chunk {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, truncated(err)
		}
		return b, nil
	}
	b := make([]byte, 0, chunk)
	for len(b) < n {
		k := min(n-len(b), chunk)
		b = append(b, make([]byte, k)...)
		if _, err := io.ReadFull(r, b[len(b)-k:]); err != nil {
			return nil, truncated(err)
		}
	}
	return b, nil
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}

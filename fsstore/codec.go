package fsstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/synkfs/synkfs"
)

// Journal entries.
//
// Each journal entry is one binary op:
//
//	batch:   0x01 uvarint(version) varint(time) uvarint(nPuts)
//	         {str(type) str(id) uvarint(version) bytes(canonical body)}...
//	         uvarint(nDeletes) {str(type) str(id) uvarint(version)}...
//	         uvarint(nMeta) {str(key) byte(0 remove|1 set) [bytes(value)]}...
//	compact: 0x02 varint(before)
//
// where str and bytes are a uvarint length followed by that many bytes and
// time values are unix nanoseconds. The time of a batch is when it was
// applied; its tombstones carry it, so replaying an entry gives them the
// same time.

const (
	opBatch   byte = 1
	opCompact byte = 2
)

// op is a decoded journal entry.
type op struct {
	kind   byte
	batch  synkfs.Batch
	time   int64 // opBatch: when applied; opCompact: drop tombstones before
	nbytes int   // encoded size
	adopt  bool  // opBatch applied with ApplyOptions.Adopt (not journaled)
	guard  bool  // opBatch applied with ApplyOptions.Guard (not journaled)
}

var errShort = errors.New("truncated")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = fmt.Errorf("offset %d: %w", d.off, err)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(errShort)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(errors.New("bad uvarint"))
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(errors.New("bad varint"))
		return 0
	}
	d.off += n
	return v
}

// count reads a count of items each at least min bytes long, refusing
// counts the remaining input cannot hold (so a hostile count cannot make
// the decoder allocate much).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)-d.off)/uint64(min) {
		d.fail(fmt.Errorf("count %d exceeds input", n))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(errShort)
		return nil
	}
	p := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) fixed(p []byte) {
	if d.err != nil {
		return
	}
	if len(d.b)-d.off < len(p) {
		d.fail(errShort)
		return
	}
	d.off += copy(p, d.b[d.off:])
}

func (d *decoder) done() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)-d.off))
	}
	return d.err
}

// encodeBatch encodes b, whose put bodies must be canonical, applied at t.
// Meta keys are written sorted so equal batches encode equally.
func encodeBatch(b *synkfs.Batch, t int64) []byte {
	e := encoder{b: make([]byte, 0, 64)}
	e.b = append(e.b, opBatch)
	e.uvarint(b.Version)
	e.varint(t)
	e.uvarint(uint64(len(b.Puts)))
	for _, r := range b.Puts {
		e.str(r.Type)
		e.str(r.ID)
		e.uvarint(r.Version)
		e.bytes(r.Body)
	}
	e.uvarint(uint64(len(b.Deletes)))
	for _, d := range b.Deletes {
		e.str(d.Type)
		e.str(d.ID)
		e.uvarint(d.Version)
	}
	keys := make([]string, 0, len(b.Meta))
	for k := range b.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		if v := b.Meta[k]; v == nil {
			e.b = append(e.b, 0)
		} else {
			e.b = append(e.b, 1)
			e.bytes(v)
		}
	}
	return e.b
}

func encodeCompact(before int64) []byte {
	e := encoder{}
	e.b = append(e.b, opCompact)
	e.varint(before)
	return e.b
}

// decodeOp decodes one journal entry. The result may alias data.
func decodeOp(data []byte) (op, error) {
	d := &decoder{b: data}
	o := op{kind: d.byte(), nbytes: len(data)}
	switch o.kind {
	case opBatch:
		b := &o.batch
		b.Version = d.uvarint()
		o.time = d.varint()
		if n := d.count(4); n > 0 {
			b.Puts = make([]synkfs.Record, n)
			for i := range b.Puts {
				r := &b.Puts[i]
				r.Type, r.ID, r.Version = d.str(), d.str(), d.uvarint()
				r.Body = d.bytes()
			}
		}
		if n := d.count(3); n > 0 {
			b.Deletes = make([]synkfs.Tombstone, n)
			for i := range b.Deletes {
				t := &b.Deletes[i]
				t.Type, t.ID, t.Version = d.str(), d.str(), d.uvarint()
			}
		}
		if n := d.count(2); n > 0 {
			b.Meta = make(map[string][]byte, n)
			for range n {
				k := d.str()
				switch d.byte() {
				case 0:
					b.Meta[k] = nil
				case 1:
					b.Meta[k] = d.bytes()
					if b.Meta[k] == nil {
						b.Meta[k] = []byte{}
					}
				default:
					d.fail(errors.New("bad meta flag"))
				}
			}
		}
	case opCompact:
		o.time = d.varint()
	default:
		d.fail(fmt.Errorf("unknown op %#x", o.kind))
	}
	if err := d.done(); err != nil {
		return op{}, fmt.Errorf("journal entry: %w", err)
	}
	return o, nil
}

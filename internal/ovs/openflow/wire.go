package openflow

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errTruncated is what every bounds check reports; callers add the context.
var errTruncated = errors.New("truncated")

// reader walks a byte slice with bounds checks. The first failure sticks, so
// a decoder reads all fields and checks err once, and no read can panic.
type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.b) < n {
		r.err = errTruncated
		r.b = nil
		return false
	}
	return true
}

func (r *reader) u8() uint8 {
	if !r.need(1) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// bytes returns the next n bytes without copying.
func (r *reader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) skip(n int) {
	if r.need(n) {
		r.b = r.b[n:]
	}
}

// rest returns everything left, without copying; nil when nothing is left,
// so decoded messages compare equal to ones built with nil payloads.
func (r *reader) rest() []byte {
	v := r.b
	r.b = nil
	if len(v) == 0 {
		return nil
	}
	return v
}

func (r *reader) len() int { return len(r.b) }

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func appendZeros(b []byte, n int) []byte {
	for range n {
		b = append(b, 0)
	}
	return b
}

// padTo8 appends zeros until the bytes written since start are a multiple of 8.
func padTo8(b []byte, start int) []byte {
	return appendZeros(b, pad8(len(b)-start))
}

// pad8 is how many bytes round n up to a multiple of 8.
func pad8(n int) int { return (8 - n%8) % 8 }

// putLen16 writes the length of b[start:] at b[at:at+2]; OpenFlow length
// fields are 16 bits, so a longer object cannot be encoded.
func putLen16(b []byte, at, start int, what string) error {
	n := len(b) - start
	if n > 0xffff {
		return fmt.Errorf("encode %s: %d bytes exceeds the 65535-byte OpenFlow limit; split it into smaller messages", what, n)
	}
	binary.BigEndian.PutUint16(b[at:], uint16(n))
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

package openflow

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// Field is one match field, or the value of a set_field action. Value and
// Mask are big-endian and as wide as the field; Mask is nil for an exact
// match. Build fields with the constructors (InPort, IPv4SrcPrefix, Reg...)
// rather than by hand.
type Field struct {
	ID    FieldID
	Value []byte
	Mask  []byte
	err   error // a constructor's argument error, reported on encode
}

// Masked reports whether the field has a mask.
func (f Field) Masked() bool { return f.Mask != nil }

// Uint returns a value of up to 8 bytes as an integer (the low 64 bits of a
// wider one).
func (f Field) Uint() uint64 { return beUint(f.Value) }

// MaskUint returns the mask like Uint, or all ones for an exact field.
func (f Field) MaskUint() uint64 {
	if f.Mask == nil {
		return ^uint64(0)
	}
	return beUint(f.Mask)
}

// Addr returns a 4- or 16-byte value as an IP address.
func (f Field) Addr() netip.Addr {
	a, _ := netip.AddrFromSlice(f.Value)
	return a
}

// MAC returns a 6-byte value as a hardware address.
func (f Field) MAC() net.HardwareAddr { return net.HardwareAddr(slices.Clone(f.Value)) }

func beUint(b []byte) uint64 {
	if len(b) > 8 {
		b = b[len(b)-8:]
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// Match is an OXM match: a list of fields, all of which must hold. The
// zero value matches every packet.
type Match struct {
	Fields []Field
}

// NewMatch returns a match on the given fields.
func NewMatch(fields ...Field) Match { return Match{Fields: fields} }

// Add appends fields and returns the match, for chaining.
func (m *Match) Add(fields ...Field) *Match {
	m.Fields = append(m.Fields, fields...)
	return m
}

// Get returns the field with the given id.
func (m Match) Get(id FieldID) (Field, bool) {
	for _, f := range m.Fields {
		if f.ID == id {
			return f, true
		}
	}
	return Field{}, false
}

// matchTypeOXM is OFPMT_OXM.
const matchTypeOXM = 1

// errFieldLen reports an OXM whose length disagrees with the field.
var errFieldLen = errors.New("wrong length")

// appendOXM appends one field as an OXM TLV.
func (f Field) appendOXM(b []byte) ([]byte, error) {
	if f.err != nil {
		return b, f.err
	}
	if d, ok := fieldDefs[f.ID]; ok {
		if len(f.Value) != d.width {
			return b, fmt.Errorf("field %s: value is %d bytes, want %d: %w", d.name, len(f.Value), d.width, errFieldLen)
		}
		if f.Mask != nil && !d.maskable {
			return b, fmt.Errorf("field %s cannot be masked; match it exactly", d.name)
		}
	}
	if f.Mask != nil && len(f.Mask) != len(f.Value) {
		return b, fmt.Errorf("field %v: mask is %d bytes, value %d: %w", f.ID, len(f.Mask), len(f.Value), errFieldLen)
	}
	n := len(f.Value) + len(f.Mask)
	if f.ID.Class == ClassExperimenter {
		n += 4
	}
	if n > 0xff || f.ID.Field > 0x7f {
		return b, fmt.Errorf("field %v cannot be encoded as an OXM (length %d)", f.ID, n)
	}
	b = appendU32(b, oxmHeader(f.ID, f.Mask != nil, n))
	if f.ID.Class == ClassExperimenter {
		b = appendU32(b, f.ID.Experimenter)
	}
	b = append(b, f.Value...)
	return append(b, f.Mask...), nil
}

func oxmHeader(id FieldID, masked bool, n int) uint32 {
	h := uint32(id.Class)<<16 | uint32(id.Field)<<9 | uint32(n)
	if masked {
		h |= 1 << 8
	}
	return h
}

// decodeOXM reads one OXM TLV.
func decodeOXM(r *reader) (Field, error) {
	h := r.u32()
	if r.err != nil {
		return Field{}, fmt.Errorf("OXM header: %w", r.err)
	}
	id := FieldID{Class: OXMClass(h >> 16), Field: uint8(h>>9) & 0x7f}
	masked := h&(1<<8) != 0
	n := int(h & 0xff)
	if id.Class == ClassExperimenter {
		id.Experimenter = r.u32()
		n -= 4
	}
	payload := r.bytes(n)
	if r.err != nil || n < 0 {
		return Field{}, fmt.Errorf("OXM %v: length %d: %w", id, n, errTruncated)
	}
	f := Field{ID: id, Value: payload}
	if masked {
		if n%2 != 0 {
			return Field{}, fmt.Errorf("OXM %v: masked field with odd length %d", id, n)
		}
		f.Value, f.Mask = payload[:n/2:n/2], payload[n/2:]
	}
	if d, ok := fieldDefs[id]; ok && len(f.Value) != d.width {
		return Field{}, fmt.Errorf("OXM %s: value is %d bytes, want %d: %w", d.name, len(f.Value), d.width, errFieldLen)
	}
	return f, nil
}

// countOXMs counts the TLVs in b by walking their lengths, so the field
// slice is allocated once. The count is bounded by the bytes present.
func countOXMs(b []byte) int {
	n := 0
	for len(b) >= 4 {
		l := 4 + int(b[3])
		if l > len(b) {
			break
		}
		b = b[l:]
		n++
	}
	return n
}

// appendMatch appends an ofp_match (OXM type) with its padding.
func (m Match) appendMatch(b []byte) ([]byte, error) {
	start := len(b)
	b = appendU16(b, matchTypeOXM)
	b = appendU16(b, 0)
	for _, f := range m.Fields {
		var err error
		if b, err = f.appendOXM(b); err != nil {
			return b[:start], fmt.Errorf("match: %w", err)
		}
	}
	// The length excludes the padding.
	if err := putLen16(b, start+2, start, "match"); err != nil {
		return b[:start], err
	}
	return padTo8(b, start), nil
}

// decodeMatch reads an ofp_match and its padding.
func decodeMatch(r *reader) (Match, error) {
	typ, n := r.u16(), int(r.u16())
	if r.err != nil {
		return Match{}, fmt.Errorf("match header: %w", r.err)
	}
	if typ != matchTypeOXM {
		return Match{}, fmt.Errorf("match type %d is not OXM", typ)
	}
	if n < 4 {
		return Match{}, fmt.Errorf("match length %d", n)
	}
	body := r.bytes(n - 4)
	r.skip(pad8(n))
	if r.err != nil {
		return Match{}, fmt.Errorf("match of %d bytes: %w", n, r.err)
	}
	var m Match
	if n := countOXMs(body); n > 0 {
		m.Fields = make([]Field, 0, n)
	}
	br := &reader{b: body}
	for br.len() > 0 {
		f, err := decodeOXM(br)
		if err != nil {
			return Match{}, fmt.Errorf("match: %w", err)
		}
		m.Fields = append(m.Fields, f)
	}
	return m, nil
}

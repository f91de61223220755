package openflow

import "fmt"

// PacketOut injects a packet into the switch and runs actions on it.
// BufferID and InPort are wire values: NewPacketOut sets "no buffer" and
// "from the controller".
type PacketOut struct {
	Header
	BufferID uint32
	InPort   uint32
	Actions  []Action
	Data     []byte
}

// NewPacketOut returns a PACKET_OUT of data (a whole Ethernet frame) with no
// buffer, as if it came from the controller port.
func NewPacketOut(data []byte, actions ...Action) *PacketOut {
	return &PacketOut{BufferID: NoBuffer, InPort: PortController, Actions: actions, Data: data}
}

func (m *PacketOut) Type() Type { return TypePacketOut }

func (m *PacketOut) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypePacketOut, m.Xid)
	b = appendU32(b, m.BufferID)
	b = appendU32(b, m.InPort)
	lenAt := len(b)
	b = appendU16(b, 0)
	b = appendZeros(b, 6)
	actStart := len(b)
	b, err := AppendActions(b, m.Actions)
	if err != nil {
		return b[:start], fmt.Errorf("packet out: %w", err)
	}
	if err := putLen16(b, lenAt, actStart, "packet out actions"); err != nil {
		return b[:start], err
	}
	b = append(b, m.Data...)
	return endMessage(b, start)
}

func (m *PacketOut) decodeBody(r *reader) error {
	m.BufferID = r.u32()
	m.InPort = r.u32()
	n := int(r.u16())
	r.skip(6)
	acts := r.bytes(n)
	if r.err != nil {
		return fmt.Errorf("packet out actions (%d bytes): %w", n, r.err)
	}
	var err error
	if m.Actions, err = DecodeActions(acts); err != nil {
		return err
	}
	m.Data = r.rest()
	return nil
}

// PacketIn is a packet the switch sends to the controller: a table miss, a
// controller action, or an invalid TTL. Match carries the packet's metadata
// (in_port, registers, tunnel fields...) as OXM fields.
type PacketIn struct {
	Header
	BufferID uint32
	TotalLen uint16
	Reason   PacketInReason
	Table    uint8
	Cookie   uint64
	Match    Match
	Data     []byte
}

func (m *PacketIn) Type() Type { return TypePacketIn }

func (m *PacketIn) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypePacketIn, m.Xid)
	b = appendU32(b, m.BufferID)
	b = appendU16(b, m.TotalLen)
	b = append(b, uint8(m.Reason), m.Table)
	b = appendU64(b, m.Cookie)
	b, err := m.Match.appendMatch(b)
	if err != nil {
		return b[:start], fmt.Errorf("packet in: %w", err)
	}
	b = appendZeros(b, 2)
	b = append(b, m.Data...)
	return endMessage(b, start)
}

func (m *PacketIn) decodeBody(r *reader) error {
	m.BufferID = r.u32()
	m.TotalLen = r.u16()
	m.Reason = PacketInReason(r.u8())
	m.Table = r.u8()
	m.Cookie = r.u64()
	if r.err != nil {
		return r.err
	}
	var err error
	if m.Match, err = decodeMatch(r); err != nil {
		return err
	}
	r.skip(2)
	m.Data = r.rest()
	return r.err
}

// InPort returns the packet's ingress port from the match.
func (m *PacketIn) InPort() (uint32, bool) {
	f, ok := m.Match.Get(FieldInPort)
	if !ok || len(f.Value) != 4 {
		return 0, false
	}
	return uint32(f.Uint()), true
}

package openflow

import (
	"fmt"
	"math/bits"
	"slices"
)

// helloElemVersionBitmap is OFPHET_VERSIONBITMAP.
const helloElemVersionBitmap = 1

// Hello opens a connection. Version is the highest version the sender
// speaks (the header's version); Versions, if not empty, is the exact set,
// sent as a version bitmap element.
type Hello struct {
	Header
	Version  uint8
	Versions []uint8
}

// NewHello returns a HELLO offering exactly the given versions.
func NewHello(versions ...uint8) *Hello {
	vs := slices.Clone(versions)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	h := &Hello{Versions: vs}
	if len(vs) > 0 {
		h.Version = vs[len(vs)-1]
	}
	return h
}

func (m *Hello) Type() Type { return TypeHello }

func (m *Hello) AppendBinary(b []byte) ([]byte, error) {
	v := m.Version
	if v == 0 {
		v = Version13
	}
	b, start := beginMessageVersion(b, v, TypeHello, m.Xid)
	if len(m.Versions) > 0 {
		var bitmap []uint32
		for _, ver := range m.Versions {
			w := int(ver / 32)
			for len(bitmap) <= w {
				bitmap = append(bitmap, 0)
			}
			bitmap[w] |= 1 << (ver % 32)
		}
		elem := len(b)
		b = appendU16(b, helloElemVersionBitmap)
		b = appendU16(b, uint16(4+4*len(bitmap)))
		for _, w := range bitmap {
			b = appendU32(b, w)
		}
		b = padTo8(b, elem)
	}
	return endMessage(b, start)
}

func (m *Hello) decodeBody(r *reader) error {
	m.Versions = nil
	for r.len() >= 4 {
		typ, n := r.u16(), int(r.u16())
		if n < 4 {
			return fmt.Errorf("hello element length %d", n)
		}
		body := r.bytes(n - 4)
		if r.err != nil {
			return fmt.Errorf("hello element: %w", r.err)
		}
		// Elements are padded to 8 bytes, but the last one may end the
		// message without its padding.
		r.skip(min(pad8(n), r.len()))
		if typ != helloElemVersionBitmap {
			continue
		}
		br := reader{b: body}
		for i := 0; br.len() >= 4; i++ {
			w := br.u32()
			for w != 0 {
				bit := bits.TrailingZeros32(w)
				w &^= 1 << bit
				if v := i*32 + bit; v <= 0xff {
					m.Versions = append(m.Versions, uint8(v))
				}
			}
		}
	}
	return nil
}

// Supports reports whether the peer that sent this HELLO accepts version v:
// the bitmap decides when present; without one the peer accepts any version
// up to the one in its header, per the OpenFlow negotiation rules.
func (m *Hello) Supports(v uint8) bool {
	if len(m.Versions) > 0 {
		return slices.Contains(m.Versions, v)
	}
	return v <= m.Version
}

// EchoRequest is a keepalive; the peer answers with an EchoReply carrying the
// same xid and data.
type EchoRequest struct {
	Header
	Data []byte
}

func (m *EchoRequest) Type() Type { return TypeEchoRequest }

func (m *EchoRequest) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeEchoRequest, m.Xid)
	b = append(b, m.Data...)
	return endMessage(b, start)
}

func (m *EchoRequest) decodeBody(r *reader) error { m.Data = r.rest(); return nil }

// Reply returns the EchoReply answering m.
func (m *EchoRequest) Reply() *EchoReply {
	return &EchoReply{Header: Header{Xid: m.Xid}, Data: m.Data}
}

// EchoReply answers an EchoRequest.
type EchoReply struct {
	Header
	Data []byte
}

func (m *EchoReply) Type() Type { return TypeEchoReply }

func (m *EchoReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeEchoReply, m.Xid)
	b = append(b, m.Data...)
	return endMessage(b, start)
}

func (m *EchoReply) decodeBody(r *reader) error { m.Data = r.rest(); return nil }

// emptyBody encodes messages that are a bare header.
func emptyBody(b []byte, t Type, xid uint32) ([]byte, error) {
	b, start := beginMessage(b, t, xid)
	return endMessage(b, start)
}

// FeaturesRequest asks for the switch's FeaturesReply.
type FeaturesRequest struct{ Header }

func (m *FeaturesRequest) Type() Type { return TypeFeaturesRequest }
func (m *FeaturesRequest) AppendBinary(b []byte) ([]byte, error) {
	return emptyBody(b, TypeFeaturesRequest, m.Xid)
}
func (m *FeaturesRequest) decodeBody(*reader) error { return nil }

// Capabilities is the ofp_capabilities bit set of a FeaturesReply.
type Capabilities uint32

const (
	CapFlowStats   Capabilities = 1 << 0
	CapTableStats  Capabilities = 1 << 1
	CapPortStats   Capabilities = 1 << 2
	CapGroupStats  Capabilities = 1 << 3
	CapIPReasm     Capabilities = 1 << 5
	CapQueueStats  Capabilities = 1 << 6
	CapPortBlocked Capabilities = 1 << 8
)

func (c Capabilities) String() string {
	return formatBits(uint32(c), []bitName{
		{uint32(CapFlowStats), "FLOW_STATS"}, {uint32(CapTableStats), "TABLE_STATS"},
		{uint32(CapPortStats), "PORT_STATS"}, {uint32(CapGroupStats), "GROUP_STATS"},
		{uint32(CapIPReasm), "IP_REASM"}, {uint32(CapQueueStats), "QUEUE_STATS"},
		{uint32(CapPortBlocked), "PORT_BLOCKED"},
	})
}

// FeaturesReply describes the switch; DatapathID is the bridge's
// datapath id, which OVSDB also shows as Bridge.datapath_id.
type FeaturesReply struct {
	Header
	DatapathID   uint64
	NBuffers     uint32
	NTables      uint8
	AuxiliaryID  uint8
	Capabilities Capabilities
	Reserved     uint32
}

func (m *FeaturesReply) Type() Type { return TypeFeaturesReply }

func (m *FeaturesReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeFeaturesReply, m.Xid)
	b = appendU64(b, m.DatapathID)
	b = appendU32(b, m.NBuffers)
	b = append(b, m.NTables, m.AuxiliaryID, 0, 0)
	b = appendU32(b, uint32(m.Capabilities))
	b = appendU32(b, m.Reserved)
	return endMessage(b, start)
}

func (m *FeaturesReply) decodeBody(r *reader) error {
	m.DatapathID = r.u64()
	m.NBuffers = r.u32()
	m.NTables = r.u8()
	m.AuxiliaryID = r.u8()
	r.skip(2)
	m.Capabilities = Capabilities(r.u32())
	m.Reserved = r.u32()
	return r.err
}

// ConfigFlags is the fragment handling of a switch configuration.
type ConfigFlags uint16

const (
	FragNormal ConfigFlags = 0
	FragDrop   ConfigFlags = 1
	FragReasm  ConfigFlags = 2
)

// SwitchConfig is the body shared by GET_CONFIG_REPLY and SET_CONFIG.
// MissSendLen is how many bytes of a packet the switch sends in a
// PACKET_IN; OVS sends no asynchronous messages at all to a service
// connection while it is 0.
type SwitchConfig struct {
	Flags       ConfigFlags
	MissSendLen uint16
}

// MissSendLenNoBuffer asks for whole packets in PACKET_IN (OFPCML_NO_BUFFER).
const MissSendLenNoBuffer uint16 = 0xffff

func (c SwitchConfig) append(b []byte) []byte {
	b = appendU16(b, uint16(c.Flags))
	return appendU16(b, c.MissSendLen)
}

func (c *SwitchConfig) decode(r *reader) error {
	c.Flags = ConfigFlags(r.u16())
	c.MissSendLen = r.u16()
	return r.err
}

// GetConfigRequest asks for the switch configuration.
type GetConfigRequest struct{ Header }

func (m *GetConfigRequest) Type() Type { return TypeGetConfigRequest }
func (m *GetConfigRequest) AppendBinary(b []byte) ([]byte, error) {
	return emptyBody(b, TypeGetConfigRequest, m.Xid)
}
func (m *GetConfigRequest) decodeBody(*reader) error { return nil }

// GetConfigReply carries the switch configuration.
type GetConfigReply struct {
	Header
	SwitchConfig
}

func (m *GetConfigReply) Type() Type { return TypeGetConfigReply }
func (m *GetConfigReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeGetConfigReply, m.Xid)
	return endMessage(m.append(b), start)
}
func (m *GetConfigReply) decodeBody(r *reader) error { return m.decode(r) }

// SetConfig sets the switch configuration. The switch does not reply.
type SetConfig struct {
	Header
	SwitchConfig
}

func (m *SetConfig) Type() Type { return TypeSetConfig }
func (m *SetConfig) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeSetConfig, m.Xid)
	return endMessage(m.append(b), start)
}
func (m *SetConfig) decodeBody(r *reader) error { return m.decode(r) }

// AsyncConfig says which asynchronous messages the switch sends. Index 0 of
// each mask applies while the controller's role is primary or equal, index 1
// while it is secondary; bit n enables reason n (e.g. 1<<PortReasonAdd).
type AsyncConfig struct {
	PacketInMask    [2]uint32
	PortStatusMask  [2]uint32
	FlowRemovedMask [2]uint32
}

// AllPortStatus enables PORT_STATUS for added, deleted and modified ports.
const AllPortStatus = 1<<PortReasonAdd | 1<<PortReasonDelete | 1<<PortReasonModify

func (c AsyncConfig) append(b []byte) []byte {
	for _, m := range [][2]uint32{c.PacketInMask, c.PortStatusMask, c.FlowRemovedMask} {
		b = appendU32(b, m[0])
		b = appendU32(b, m[1])
	}
	return b
}

func (c *AsyncConfig) decode(r *reader) error {
	for _, m := range []*[2]uint32{&c.PacketInMask, &c.PortStatusMask, &c.FlowRemovedMask} {
		m[0], m[1] = r.u32(), r.u32()
	}
	return r.err
}

// SetAsync sets the asynchronous message filter. The switch does not reply.
type SetAsync struct {
	Header
	AsyncConfig
}

func (m *SetAsync) Type() Type { return TypeSetAsync }
func (m *SetAsync) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeSetAsync, m.Xid)
	return endMessage(m.append(b), start)
}
func (m *SetAsync) decodeBody(r *reader) error { return m.decode(r) }

// GetAsyncRequest asks for the asynchronous message filter.
type GetAsyncRequest struct{ Header }

func (m *GetAsyncRequest) Type() Type { return TypeGetAsyncRequest }
func (m *GetAsyncRequest) AppendBinary(b []byte) ([]byte, error) {
	return emptyBody(b, TypeGetAsyncRequest, m.Xid)
}
func (m *GetAsyncRequest) decodeBody(*reader) error { return nil }

// GetAsyncReply carries the asynchronous message filter.
type GetAsyncReply struct {
	Header
	AsyncConfig
}

func (m *GetAsyncReply) Type() Type { return TypeGetAsyncReply }
func (m *GetAsyncReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeGetAsyncReply, m.Xid)
	return endMessage(m.append(b), start)
}
func (m *GetAsyncReply) decodeBody(r *reader) error { return m.decode(r) }

// BarrierRequest asks the switch to finish every earlier message before
// answering with a BarrierReply of the same xid.
type BarrierRequest struct{ Header }

func (m *BarrierRequest) Type() Type { return TypeBarrierRequest }
func (m *BarrierRequest) AppendBinary(b []byte) ([]byte, error) {
	return emptyBody(b, TypeBarrierRequest, m.Xid)
}
func (m *BarrierRequest) decodeBody(*reader) error { return nil }

// BarrierReply answers a BarrierRequest.
type BarrierReply struct{ Header }

func (m *BarrierReply) Type() Type { return TypeBarrierReply }
func (m *BarrierReply) AppendBinary(b []byte) ([]byte, error) {
	return emptyBody(b, TypeBarrierReply, m.Xid)
}
func (m *BarrierReply) decodeBody(*reader) error { return nil }

// ControllerRole is a controller's role towards the switch.
type ControllerRole uint32

// Roles; OpenFlow 1.3 calls primary and secondary master and slave.
const (
	RoleNoChange  ControllerRole = 0
	RoleEqual     ControllerRole = 1
	RolePrimary   ControllerRole = 2
	RoleSecondary ControllerRole = 3
)

func (r ControllerRole) String() string {
	switch r {
	case RoleNoChange:
		return "nochange"
	case RoleEqual:
		return "equal"
	case RolePrimary:
		return "primary"
	case RoleSecondary:
		return "secondary"
	}
	return fmt.Sprintf("role(%d)", uint32(r))
}

// Role is the body of ROLE_REQUEST and ROLE_REPLY.
type Role struct {
	Role         ControllerRole
	GenerationID uint64
}

func (c Role) append(b []byte) []byte {
	b = appendU32(b, uint32(c.Role))
	b = appendZeros(b, 4)
	return appendU64(b, c.GenerationID)
}

func (c *Role) decode(r *reader) error {
	c.Role = ControllerRole(r.u32())
	r.skip(4)
	c.GenerationID = r.u64()
	return r.err
}

// RoleRequest changes or queries the controller's role.
type RoleRequest struct {
	Header
	Role
}

func (m *RoleRequest) Type() Type { return TypeRoleRequest }
func (m *RoleRequest) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeRoleRequest, m.Xid)
	return endMessage(m.append(b), start)
}
func (m *RoleRequest) decodeBody(r *reader) error { return m.decode(r) }

// RoleReply answers a RoleRequest.
type RoleReply struct {
	Header
	Role
}

func (m *RoleReply) Type() Type { return TypeRoleReply }
func (m *RoleReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeRoleReply, m.Xid)
	return endMessage(m.append(b), start)
}
func (m *RoleReply) decodeBody(r *reader) error { return m.decode(r) }

// bitName names one bit (or bit group) of a flag word.
type bitName struct {
	bit  uint32
	name string
}

// formatBits joins the names of the set bits with '|' and shows leftover
// bits in hex; zero is "0".
func formatBits(v uint32, names []bitName) string {
	if v == 0 {
		return "0"
	}
	var out []byte
	for _, n := range names {
		if v&n.bit == n.bit && n.bit != 0 {
			if len(out) > 0 {
				out = append(out, '|')
			}
			out = append(out, n.name...)
			v &^= n.bit
		}
	}
	if v != 0 {
		if len(out) > 0 {
			out = append(out, '|')
		}
		out = fmt.Appendf(out, "0x%x", v)
	}
	return string(out)
}

package openflow

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
)

// Reserved port numbers (ofp_port_no).
const (
	PortMax        uint32 = 0xffffff00
	PortInPort     uint32 = 0xfffffff8
	PortTable      uint32 = 0xfffffff9
	PortNormal     uint32 = 0xfffffffa
	PortFlood      uint32 = 0xfffffffb
	PortAll        uint32 = 0xfffffffc
	PortController uint32 = 0xfffffffd
	PortLocal      uint32 = 0xfffffffe
	PortAny        uint32 = 0xffffffff
)

// PortName formats a port number as ovs-ofctl does: reserved ports by name.
func PortName(p uint32) string {
	switch p {
	case PortInPort:
		return "IN_PORT"
	case PortTable:
		return "TABLE"
	case PortNormal:
		return "NORMAL"
	case PortFlood:
		return "FLOOD"
	case PortAll:
		return "ALL"
	case PortController:
		return "CONTROLLER"
	case PortLocal:
		return "LOCAL"
	case PortAny:
		return "ANY"
	}
	return strconv.FormatUint(uint64(p), 10)
}

// PortConfig is the administrative configuration of a port.
type PortConfig uint32

const (
	PortConfigDown       PortConfig = 1 << 0
	PortConfigNoRecv     PortConfig = 1 << 2
	PortConfigNoFwd      PortConfig = 1 << 5
	PortConfigNoPacketIn PortConfig = 1 << 6
)

func (c PortConfig) String() string {
	return formatBits(uint32(c), []bitName{
		{uint32(PortConfigDown), "PORT_DOWN"}, {uint32(PortConfigNoRecv), "NO_RECV"},
		{uint32(PortConfigNoFwd), "NO_FWD"}, {uint32(PortConfigNoPacketIn), "NO_PACKET_IN"},
	})
}

// PortState is the link state of a port as the switch sees it.
type PortState uint32

const (
	PortStateLinkDown PortState = 1 << 0
	PortStateBlocked  PortState = 1 << 1
	PortStateLive     PortState = 1 << 2
)

func (s PortState) String() string {
	return formatBits(uint32(s), []bitName{
		{uint32(PortStateLinkDown), "LINK_DOWN"}, {uint32(PortStateBlocked), "BLOCKED"},
		{uint32(PortStateLive), "LIVE"},
	})
}

// PortFeatures is a set of link speeds and media (ofp_port_features).
type PortFeatures uint32

const (
	PortFeature10MbHD    PortFeatures = 1 << 0
	PortFeature10MbFD    PortFeatures = 1 << 1
	PortFeature100MbHD   PortFeatures = 1 << 2
	PortFeature100MbFD   PortFeatures = 1 << 3
	PortFeature1GbHD     PortFeatures = 1 << 4
	PortFeature1GbFD     PortFeatures = 1 << 5
	PortFeature10GbFD    PortFeatures = 1 << 6
	PortFeature40GbFD    PortFeatures = 1 << 7
	PortFeature100GbFD   PortFeatures = 1 << 8
	PortFeature1TbFD     PortFeatures = 1 << 9
	PortFeatureOther     PortFeatures = 1 << 10
	PortFeatureCopper    PortFeatures = 1 << 11
	PortFeatureFiber     PortFeatures = 1 << 12
	PortFeatureAutoneg   PortFeatures = 1 << 13
	PortFeaturePause     PortFeatures = 1 << 14
	PortFeaturePauseAsym PortFeatures = 1 << 15
)

func (f PortFeatures) String() string {
	names := []string{"10MB-HD", "10MB-FD", "100MB-HD", "100MB-FD", "1GB-HD", "1GB-FD",
		"10GB-FD", "40GB-FD", "100GB-FD", "1TB-FD", "OTHER", "COPPER", "FIBER", "AUTO_NEG",
		"AUTO_PAUSE", "AUTO_PAUSE_ASYM"}
	bn := make([]bitName, len(names))
	for i, n := range names {
		bn[i] = bitName{1 << i, n}
	}
	return formatBits(uint32(f), bn)
}

// portLen is sizeof(struct ofp_port) in OpenFlow 1.3.
const portLen = 64

// portNameLen is OFP_MAX_PORT_NAME_LEN.
const portNameLen = 16

// Port describes one switch port (ofp_port). HWAddr is an array so that
// decoding a PORT_STATUS allocates nothing for it.
type Port struct {
	PortNo     uint32
	HWAddr     [6]byte
	Name       string
	Config     PortConfig
	State      PortState
	Curr       PortFeatures
	Advertised PortFeatures
	Supported  PortFeatures
	Peer       PortFeatures
	CurrSpeed  uint32 // kbps
	MaxSpeed   uint32 // kbps
}

// Live reports whether the port can forward: OpenFlow's LIVE bit.
func (p *Port) Live() bool { return p.State&PortStateLive != 0 }

// LinkDown reports OpenFlow's LINK_DOWN bit (no physical link).
func (p *Port) LinkDown() bool { return p.State&PortStateLinkDown != 0 }

// MAC returns HWAddr as a net.HardwareAddr (a copy).
func (p *Port) MAC() net.HardwareAddr { return net.HardwareAddr(bytes.Clone(p.HWAddr[:])) }

func (p *Port) String() string {
	return fmt.Sprintf("%s(%s): addr:%s config:%v state:%v speed:%d/%d kbps",
		PortName(p.PortNo), p.Name, net.HardwareAddr(p.HWAddr[:]), p.Config, p.State, p.CurrSpeed, p.MaxSpeed)
}

func (p *Port) append(b []byte) ([]byte, error) {
	if len(p.Name) >= portNameLen {
		return b, fmt.Errorf("encode port %d: name %q is longer than %d bytes", p.PortNo, p.Name, portNameLen-1)
	}
	b = appendU32(b, p.PortNo)
	b = appendZeros(b, 4)
	b = append(b, p.HWAddr[:]...)
	b = appendZeros(b, 2)
	b = append(b, p.Name...)
	b = appendZeros(b, portNameLen-len(p.Name))
	for _, v := range []uint32{uint32(p.Config), uint32(p.State), uint32(p.Curr), uint32(p.Advertised),
		uint32(p.Supported), uint32(p.Peer), p.CurrSpeed, p.MaxSpeed} {
		b = appendU32(b, v)
	}
	return b, nil
}

// decode reads an ofp_port. The name string is reused when unchanged, so
// decoding repeated updates of one port into the same Port allocates nothing.
func (p *Port) decode(r *reader) error {
	if !r.need(portLen) {
		return fmt.Errorf("port description: %w", r.err)
	}
	p.PortNo = r.u32()
	r.skip(4)
	copy(p.HWAddr[:], r.bytes(6))
	r.skip(2)
	name := r.bytes(portNameLen)
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if string(name) != p.Name {
		p.Name = string(name)
	}
	p.Config = PortConfig(r.u32())
	p.State = PortState(r.u32())
	p.Curr = PortFeatures(r.u32())
	p.Advertised = PortFeatures(r.u32())
	p.Supported = PortFeatures(r.u32())
	p.Peer = PortFeatures(r.u32())
	p.CurrSpeed = r.u32()
	p.MaxSpeed = r.u32()
	return r.err
}

// PortReason says why a PORT_STATUS was sent.
type PortReason uint8

const (
	PortReasonAdd    PortReason = 0
	PortReasonDelete PortReason = 1
	PortReasonModify PortReason = 2
)

func (r PortReason) String() string {
	switch r {
	case PortReasonAdd:
		return "ADD"
	case PortReasonDelete:
		return "DELETE"
	case PortReasonModify:
		return "MODIFY"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// PortStatus is the asynchronous message OVS sends when a port is added,
// deleted or changes (link, state, config).
type PortStatus struct {
	Header
	Reason PortReason
	Port   Port
}

func (m *PortStatus) Type() Type { return TypePortStatus }

func (m *PortStatus) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypePortStatus, m.Xid)
	b = append(b, uint8(m.Reason))
	b = appendZeros(b, 7)
	b, err := m.Port.append(b)
	if err != nil {
		return b[:start], err
	}
	return endMessage(b, start)
}

func (m *PortStatus) decodeBody(r *reader) error {
	m.Reason = PortReason(r.u8())
	r.skip(7)
	return m.Port.decode(r)
}

// UnmarshalBinary decodes a whole PORT_STATUS message into m. It is the
// allocation-free path for a receive loop that reuses one PortStatus: only a
// changed port name allocates.
func (m *PortStatus) UnmarshalBinary(b []byte) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	if h.Type != TypePortStatus || h.Version != Version13 || int(h.Length) != len(b) {
		return &DecodeError{Header: h, Raw: b, Err: fmt.Errorf("not an OpenFlow 1.3 PORT_STATUS of %d bytes", len(b))}
	}
	m.Xid = h.Xid
	if err := m.decodeBody(&reader{b: b[HeaderLen:]}); err != nil {
		return &DecodeError{Header: h, Raw: b, Err: err}
	}
	return nil
}

package openflow

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// The constructors below build match fields (and set_field values) with
// the right width and mask, so callers never handle raw OXM bytes.

func beBytes(v uint64, n int) []byte {
	b := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}

func uintField(id FieldID, width int, v uint64) Field {
	return Field{ID: id, Value: beBytes(v, width)}
}

func maskedUintField(id FieldID, width int, v, mask uint64) Field {
	return Field{ID: id, Value: beBytes(v&mask, width), Mask: beBytes(mask, width)}
}

func macField(id FieldID, mac net.HardwareAddr) Field {
	if len(mac) != 6 {
		return Field{ID: id, err: fmt.Errorf("%v: %q is not a 6-byte MAC address", id, mac)}
	}
	return Field{ID: id, Value: slices.Clone([]byte(mac))}
}

func maskedMACField(id FieldID, mac, mask net.HardwareAddr) Field {
	f := macField(id, mac)
	if f.err == nil && len(mask) != 6 {
		f.err = fmt.Errorf("%v: mask %q is not a 6-byte MAC address", id, mask)
	}
	if f.err == nil {
		f.Mask = slices.Clone([]byte(mask))
		for i := range f.Value {
			f.Value[i] &= f.Mask[i]
		}
	}
	return f
}

func addrField(id FieldID, a netip.Addr, v6 bool) Field {
	if !a.IsValid() || a.Is6() != v6 || a.Is4In6() {
		return Field{ID: id, err: fmt.Errorf("%v: %v is not an IPv%s address", id, a, map[bool]string{false: "4", true: "6"}[v6])}
	}
	return Field{ID: id, Value: a.AsSlice()}
}

func prefixField(id FieldID, p netip.Prefix, v6 bool) Field {
	if !p.IsValid() {
		return Field{ID: id, err: fmt.Errorf("%v: invalid prefix %v", id, p)}
	}
	f := addrField(id, p.Masked().Addr(), v6)
	if f.err != nil || p.IsSingleIP() {
		return f
	}
	f.Mask = make([]byte, len(f.Value))
	for i := range p.Bits() {
		f.Mask[i/8] |= 0x80 >> (i % 8)
	}
	return f
}

// InPort matches the OpenFlow ingress port.
func InPort(port uint32) Field { return uintField(FieldInPort, 4, uint64(port)) }

// EthSrc matches the Ethernet source address.
func EthSrc(mac net.HardwareAddr) Field { return macField(FieldEthSrc, mac) }

// EthSrcMasked matches the Ethernet source address under a mask.
func EthSrcMasked(mac, mask net.HardwareAddr) Field { return maskedMACField(FieldEthSrc, mac, mask) }

// EthDst matches the Ethernet destination address.
func EthDst(mac net.HardwareAddr) Field { return macField(FieldEthDst, mac) }

// EthDstMasked matches the Ethernet destination address under a mask.
func EthDstMasked(mac, mask net.HardwareAddr) Field { return maskedMACField(FieldEthDst, mac, mask) }

// Ethernet types for EthType.
const (
	EthTypeIPv4 uint16 = 0x0800
	EthTypeARP  uint16 = 0x0806
	EthTypeVLAN uint16 = 0x8100
	EthTypeIPv6 uint16 = 0x86dd
)

// EthType matches the Ethernet type; IP, ARP and transport fields need it.
func EthType(t uint16) Field { return uintField(FieldEthType, 2, uint64(t)) }

// VLANPresent is OFPVID_PRESENT, the bit of vlan_vid that says a tag exists.
const VLANPresent uint16 = 0x1000

// VLANVID matches packets tagged with VLAN id vid.
func VLANVID(vid uint16) Field {
	return uintField(FieldVLANVID, 2, uint64(VLANPresent|vid&0x0fff))
}

// NoVLAN matches untagged packets.
func NoVLAN() Field { return uintField(FieldVLANVID, 2, 0) }

// VLANVIDMasked matches the raw OXM vlan_vid (VLANPresent|vid) under a mask;
// VLANVIDMasked(VLANPresent, VLANPresent) matches any tagged packet.
func VLANVIDMasked(value, mask uint16) Field {
	return maskedUintField(FieldVLANVID, 2, uint64(value), uint64(mask))
}

// IP protocol numbers for IPProto.
const (
	IPProtoICMP   uint8 = 1
	IPProtoTCP    uint8 = 6
	IPProtoUDP    uint8 = 17
	IPProtoICMPv6 uint8 = 58
	IPProtoSCTP   uint8 = 132
)

// IPProto matches the IP protocol; it needs EthType IPv4 or IPv6.
func IPProto(p uint8) Field { return uintField(FieldIPProto, 1, uint64(p)) }

// IPv4Src matches one IPv4 source address.
func IPv4Src(a netip.Addr) Field { return addrField(FieldIPv4Src, a, false) }

// IPv4SrcPrefix matches an IPv4 source prefix.
func IPv4SrcPrefix(p netip.Prefix) Field { return prefixField(FieldIPv4Src, p, false) }

// IPv4Dst matches one IPv4 destination address.
func IPv4Dst(a netip.Addr) Field { return addrField(FieldIPv4Dst, a, false) }

// IPv4DstPrefix matches an IPv4 destination prefix.
func IPv4DstPrefix(p netip.Prefix) Field { return prefixField(FieldIPv4Dst, p, false) }

// IPv6Src matches one IPv6 source address.
func IPv6Src(a netip.Addr) Field { return addrField(FieldIPv6Src, a, true) }

// IPv6SrcPrefix matches an IPv6 source prefix.
func IPv6SrcPrefix(p netip.Prefix) Field { return prefixField(FieldIPv6Src, p, true) }

// IPv6Dst matches one IPv6 destination address.
func IPv6Dst(a netip.Addr) Field { return addrField(FieldIPv6Dst, a, true) }

// IPv6DstPrefix matches an IPv6 destination prefix.
func IPv6DstPrefix(p netip.Prefix) Field { return prefixField(FieldIPv6Dst, p, true) }

// ARP opcodes for ARPOp.
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// ARPOp matches the ARP opcode.
func ARPOp(op uint16) Field { return uintField(FieldARPOp, 2, uint64(op)) }

// ARPSPA matches the ARP sender protocol address.
func ARPSPA(a netip.Addr) Field { return addrField(FieldARPSPA, a, false) }

// ARPSPAPrefix matches the ARP sender protocol address against a prefix.
func ARPSPAPrefix(p netip.Prefix) Field { return prefixField(FieldARPSPA, p, false) }

// ARPTPA matches the ARP target protocol address.
func ARPTPA(a netip.Addr) Field { return addrField(FieldARPTPA, a, false) }

// ARPTPAPrefix matches the ARP target protocol address against a prefix.
func ARPTPAPrefix(p netip.Prefix) Field { return prefixField(FieldARPTPA, p, false) }

// ARPSHA matches the ARP sender hardware address.
func ARPSHA(mac net.HardwareAddr) Field { return macField(FieldARPSHA, mac) }

// ARPSHAMasked matches the ARP sender hardware address under a mask.
func ARPSHAMasked(mac, mask net.HardwareAddr) Field { return maskedMACField(FieldARPSHA, mac, mask) }

// ARPTHA matches the ARP target hardware address.
func ARPTHA(mac net.HardwareAddr) Field { return macField(FieldARPTHA, mac) }

// ARPTHAMasked matches the ARP target hardware address under a mask.
func ARPTHAMasked(mac, mask net.HardwareAddr) Field { return maskedMACField(FieldARPTHA, mac, mask) }

// TCPSrc matches the TCP source port.
func TCPSrc(p uint16) Field { return uintField(FieldTCPSrc, 2, uint64(p)) }

// TCPSrcMasked matches the TCP source port under a mask (an OVS extension).
func TCPSrcMasked(p, mask uint16) Field {
	return maskedUintField(FieldTCPSrc, 2, uint64(p), uint64(mask))
}

// TCPDst matches the TCP destination port.
func TCPDst(p uint16) Field { return uintField(FieldTCPDst, 2, uint64(p)) }

// TCPDstMasked matches the TCP destination port under a mask.
func TCPDstMasked(p, mask uint16) Field {
	return maskedUintField(FieldTCPDst, 2, uint64(p), uint64(mask))
}

// UDPSrc matches the UDP source port.
func UDPSrc(p uint16) Field { return uintField(FieldUDPSrc, 2, uint64(p)) }

// UDPSrcMasked matches the UDP source port under a mask.
func UDPSrcMasked(p, mask uint16) Field {
	return maskedUintField(FieldUDPSrc, 2, uint64(p), uint64(mask))
}

// UDPDst matches the UDP destination port.
func UDPDst(p uint16) Field { return uintField(FieldUDPDst, 2, uint64(p)) }

// UDPDstMasked matches the UDP destination port under a mask.
func UDPDstMasked(p, mask uint16) Field {
	return maskedUintField(FieldUDPDst, 2, uint64(p), uint64(mask))
}

// ICMPv4Type matches the ICMP type.
func ICMPv4Type(t uint8) Field { return uintField(FieldICMPv4Type, 1, uint64(t)) }

// ICMPv4Code matches the ICMP code.
func ICMPv4Code(c uint8) Field { return uintField(FieldICMPv4Code, 1, uint64(c)) }

// ICMPv6Type matches the ICMPv6 type.
func ICMPv6Type(t uint8) Field { return uintField(FieldICMPv6Type, 1, uint64(t)) }

// ICMPv6Code matches the ICMPv6 code.
func ICMPv6Code(c uint8) Field { return uintField(FieldICMPv6Code, 1, uint64(c)) }

// Metadata matches the OpenFlow metadata register.
func Metadata(v uint64) Field { return uintField(FieldMetadata, 8, v) }

// MetadataMasked matches the metadata register under a mask.
func MetadataMasked(v, mask uint64) Field { return maskedUintField(FieldMetadata, 8, v, mask) }

func regErr(id FieldID, n, limit uint8) Field {
	return Field{ID: id, err: fmt.Errorf("register %d does not exist (valid: 0-%d)", n, limit-1)}
}

// Reg matches the 32-bit register regn (n in 0..15).
func Reg(n uint8, v uint32) Field {
	if n >= 16 {
		return regErr(RegField(n), n, 16)
	}
	return uintField(RegField(n), 4, uint64(v))
}

// RegMasked matches regn under a mask.
func RegMasked(n uint8, v, mask uint32) Field {
	if n >= 16 {
		return regErr(RegField(n), n, 16)
	}
	return maskedUintField(RegField(n), 4, uint64(v), uint64(mask))
}

// XReg matches the 64-bit register xregn (n in 0..7).
func XReg(n uint8, v uint64) Field {
	if n >= 8 {
		return regErr(XRegField(n), n, 8)
	}
	return uintField(XRegField(n), 8, v)
}

// XRegMasked matches xregn under a mask.
func XRegMasked(n uint8, v, mask uint64) Field {
	if n >= 8 {
		return regErr(XRegField(n), n, 8)
	}
	return maskedUintField(XRegField(n), 8, v, mask)
}

// Connection tracking state bits for CTState.
const (
	CTStateNew         uint32 = 1 << 0
	CTStateEstablished uint32 = 1 << 1
	CTStateRelated     uint32 = 1 << 2
	CTStateReply       uint32 = 1 << 3
	CTStateInvalid     uint32 = 1 << 4
	CTStateTracked     uint32 = 1 << 5
	CTStateSNAT        uint32 = 1 << 6
	CTStateDNAT        uint32 = 1 << 7
)

var ctStateNames = []string{"new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"}

// CTState matches conntrack state flags: those in set must be on, those in
// clear must be off, the rest are ignored (ovs-ofctl's +trk-new).
func CTState(set, clear uint32) Field {
	return maskedUintField(FieldCTState, 4, uint64(set), uint64(set|clear))
}

// CTZone matches the conntrack zone.
func CTZone(z uint16) Field { return uintField(FieldCTZone, 2, uint64(z)) }

// CTMark matches the conntrack mark.
func CTMark(v uint32) Field { return uintField(FieldCTMark, 4, uint64(v)) }

// CTMarkMasked matches the conntrack mark under a mask.
func CTMarkMasked(v, mask uint32) Field {
	return maskedUintField(FieldCTMark, 4, uint64(v), uint64(mask))
}

func label(hi, lo uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return b
}

// CTLabel matches the 128-bit conntrack label (hi is the upper 64 bits).
func CTLabel(hi, lo uint64) Field { return Field{ID: FieldCTLabel, Value: label(hi, lo)} }

// CTLabelMasked matches the conntrack label under a mask.
func CTLabelMasked(hi, lo, maskHi, maskLo uint64) Field {
	return Field{ID: FieldCTLabel, Value: label(hi&maskHi, lo&maskLo), Mask: label(maskHi, maskLo)}
}

// TunnelID matches the tunnel key (VNI for Geneve and VXLAN).
func TunnelID(id uint64) Field { return uintField(FieldTunnelID, 8, id) }

// TunnelIDMasked matches the tunnel key under a mask.
func TunnelIDMasked(id, mask uint64) Field { return maskedUintField(FieldTunnelID, 8, id, mask) }

// TunIPv4Src matches the outer IPv4 source of a received tunnel packet.
func TunIPv4Src(a netip.Addr) Field { return addrField(FieldTunIPv4Src, a, false) }

// TunIPv4SrcPrefix matches the outer IPv4 source against a prefix.
func TunIPv4SrcPrefix(p netip.Prefix) Field { return prefixField(FieldTunIPv4Src, p, false) }

// TunIPv4Dst matches the outer IPv4 destination of a tunnel packet.
func TunIPv4Dst(a netip.Addr) Field { return addrField(FieldTunIPv4Dst, a, false) }

// TunIPv4DstPrefix matches the outer IPv4 destination against a prefix.
func TunIPv4DstPrefix(p netip.Prefix) Field { return prefixField(FieldTunIPv4Dst, p, false) }

// PktMark matches the packet mark (skb mark).
func PktMark(v uint32) Field { return uintField(FieldPktMark, 4, uint64(v)) }

// PktMarkMasked matches the packet mark under a mask.
func PktMarkMasked(v, mask uint32) Field {
	return maskedUintField(FieldPktMark, 4, uint64(v), uint64(mask))
}

// ConjID matches the id of the conjunctive match the packet satisfied.
func ConjID(id uint32) Field { return uintField(FieldConjID, 4, uint64(id)) }

// SCTPDst matches the SCTP destination port.
func SCTPDst(p uint16) Field { return uintField(FieldSCTPDst, 2, uint64(p)) }

// SCTPDstMasked matches the SCTP destination port under a mask.
func SCTPDstMasked(p, mask uint16) Field {
	return maskedUintField(FieldSCTPDst, 2, uint64(p), uint64(mask))
}

package openflow

import (
	"fmt"
)

// OXMClass is the class of a match field (OXM/NXM TLV).
type OXMClass uint16

const (
	// ClassNXM0 holds the original Nicira fields (NXM_OF_*).
	ClassNXM0 OXMClass = 0x0000
	// ClassNXM1 holds the Nicira extension fields (NXM_NX_*): registers,
	// conntrack, tunnel and packet mark.
	ClassNXM1 OXMClass = 0x0001
	// ClassOpenFlowBasic holds the standard OpenFlow fields (OXM_OF_*).
	ClassOpenFlowBasic OXMClass = 0x8000
	// ClassPacketRegs holds the 64-bit packet registers xreg0-7.
	ClassPacketRegs OXMClass = 0x8001
	// ClassExperimenter fields carry a 32-bit experimenter id after the header.
	ClassExperimenter OXMClass = 0xffff
)

// FieldID identifies a match field on the wire. Experimenter is used only
// with ClassExperimenter.
type FieldID struct {
	Class        OXMClass
	Field        uint8
	Experimenter uint32
}

func (id FieldID) String() string {
	if d, ok := fieldDefs[id]; ok {
		return d.name
	}
	if id.Class == ClassExperimenter {
		return fmt.Sprintf("oxm(0x%04x:%d:0x%08x)", uint16(id.Class), id.Field, id.Experimenter)
	}
	return fmt.Sprintf("oxm(0x%04x:%d)", uint16(id.Class), id.Field)
}

// OpenFlow basic fields (class 0x8000).
var (
	FieldInPort       = FieldID{Class: ClassOpenFlowBasic, Field: 0}
	FieldMetadata     = FieldID{Class: ClassOpenFlowBasic, Field: 2}
	FieldEthDst       = FieldID{Class: ClassOpenFlowBasic, Field: 3}
	FieldEthSrc       = FieldID{Class: ClassOpenFlowBasic, Field: 4}
	FieldEthType      = FieldID{Class: ClassOpenFlowBasic, Field: 5}
	FieldVLANVID      = FieldID{Class: ClassOpenFlowBasic, Field: 6}
	FieldVLANPCP      = FieldID{Class: ClassOpenFlowBasic, Field: 7}
	FieldIPDSCP       = FieldID{Class: ClassOpenFlowBasic, Field: 8}
	FieldIPECN        = FieldID{Class: ClassOpenFlowBasic, Field: 9}
	FieldIPProto      = FieldID{Class: ClassOpenFlowBasic, Field: 10}
	FieldIPv4Src      = FieldID{Class: ClassOpenFlowBasic, Field: 11}
	FieldIPv4Dst      = FieldID{Class: ClassOpenFlowBasic, Field: 12}
	FieldTCPSrc       = FieldID{Class: ClassOpenFlowBasic, Field: 13}
	FieldTCPDst       = FieldID{Class: ClassOpenFlowBasic, Field: 14}
	FieldUDPSrc       = FieldID{Class: ClassOpenFlowBasic, Field: 15}
	FieldUDPDst       = FieldID{Class: ClassOpenFlowBasic, Field: 16}
	FieldSCTPSrc      = FieldID{Class: ClassOpenFlowBasic, Field: 17}
	FieldSCTPDst      = FieldID{Class: ClassOpenFlowBasic, Field: 18}
	FieldICMPv4Type   = FieldID{Class: ClassOpenFlowBasic, Field: 19}
	FieldICMPv4Code   = FieldID{Class: ClassOpenFlowBasic, Field: 20}
	FieldARPOp        = FieldID{Class: ClassOpenFlowBasic, Field: 21}
	FieldARPSPA       = FieldID{Class: ClassOpenFlowBasic, Field: 22}
	FieldARPTPA       = FieldID{Class: ClassOpenFlowBasic, Field: 23}
	FieldARPSHA       = FieldID{Class: ClassOpenFlowBasic, Field: 24}
	FieldARPTHA       = FieldID{Class: ClassOpenFlowBasic, Field: 25}
	FieldIPv6Src      = FieldID{Class: ClassOpenFlowBasic, Field: 26}
	FieldIPv6Dst      = FieldID{Class: ClassOpenFlowBasic, Field: 27}
	FieldIPv6Label    = FieldID{Class: ClassOpenFlowBasic, Field: 28}
	FieldICMPv6Type   = FieldID{Class: ClassOpenFlowBasic, Field: 29}
	FieldICMPv6Code   = FieldID{Class: ClassOpenFlowBasic, Field: 30}
	FieldIPv6NDTarget = FieldID{Class: ClassOpenFlowBasic, Field: 31}
	FieldIPv6NDSLL    = FieldID{Class: ClassOpenFlowBasic, Field: 32}
	FieldIPv6NDTLL    = FieldID{Class: ClassOpenFlowBasic, Field: 33}
	FieldTunnelID     = FieldID{Class: ClassOpenFlowBasic, Field: 38}
)

// Nicira extension fields (class 0x0001).
var (
	FieldNXTunID    = FieldID{Class: ClassNXM1, Field: 16}
	FieldTunIPv4Src = FieldID{Class: ClassNXM1, Field: 31}
	FieldTunIPv4Dst = FieldID{Class: ClassNXM1, Field: 32}
	FieldPktMark    = FieldID{Class: ClassNXM1, Field: 33}
	FieldCTState    = FieldID{Class: ClassNXM1, Field: 105}
	FieldCTZone     = FieldID{Class: ClassNXM1, Field: 106}
	FieldCTMark     = FieldID{Class: ClassNXM1, Field: 107}
	FieldCTLabel    = FieldID{Class: ClassNXM1, Field: 108}
	// FieldConjID is the id of the conjunctive match a packet satisfied.
	FieldConjID = FieldID{Class: ClassNXM1, Field: 37}
)

// RegField is NXM_NX_REGn (n in 0..15, 32 bits).
func RegField(n uint8) FieldID { return FieldID{Class: ClassNXM1, Field: n} }

// XRegField is the 64-bit packet register xregn (n in 0..7), which OVS
// overlays on reg2n (high half) and reg2n+1 (low half).
func XRegField(n uint8) FieldID { return FieldID{Class: ClassPacketRegs, Field: n} }

// fieldKind says how a field's value is printed.
type fieldKind uint8

const (
	kindHex fieldKind = iota
	kindDec
	kindPort
	kindEthType
	kindMAC
	kindIPv4
	kindIPv6
	kindVLAN
	kindCTState
)

// fieldDef is what the codec knows about a field: its width (value bytes)
// and whether OVS accepts a mask on it, and how to print it.
type fieldDef struct {
	name     string // ovs-ofctl match name
	nxm      string // name in field slices (move, load, ct zone)
	width    int
	maskable bool
	kind     fieldKind
	order    int // position in ovs-ofctl's output order
}

// Print order, following ovs-ofctl.
const (
	ordConjID = iota + 1
	ordPktMark
	ordCTState
	ordCTZone
	ordCTMark
	ordCTLabel
	ordShorthand
	ordReg
	ordXReg
	ordTunID
	ordTunSrc
	ordTunDst
	ordMetadata
	ordInPort
	ordVLAN
	ordVLANPCP
	ordDlSrc
	ordDlDst
	ordDlType
	ordNwSrc
	ordNwDst
	ordIPv6Src
	ordIPv6Dst
	ordIPv6Label
	ordNwProto
	ordNwTos
	ordARPSHA
	ordARPTHA
	ordTpSrc
	ordTpDst
	ordND
	ordOther
)

var fieldDefs = buildFieldDefs()

func buildFieldDefs() map[FieldID]fieldDef {
	m := map[FieldID]fieldDef{
		FieldInPort:       {"in_port", "OXM_OF_IN_PORT", 4, false, kindPort, ordInPort},
		FieldMetadata:     {"metadata", "OXM_OF_METADATA", 8, true, kindHex, ordMetadata},
		FieldEthDst:       {"dl_dst", "NXM_OF_ETH_DST", 6, true, kindMAC, ordDlDst},
		FieldEthSrc:       {"dl_src", "NXM_OF_ETH_SRC", 6, true, kindMAC, ordDlSrc},
		FieldEthType:      {"dl_type", "NXM_OF_ETH_TYPE", 2, false, kindEthType, ordDlType},
		FieldVLANVID:      {"vlan_vid", "OXM_OF_VLAN_VID", 2, true, kindVLAN, ordVLAN},
		FieldVLANPCP:      {"dl_vlan_pcp", "OXM_OF_VLAN_PCP", 1, false, kindDec, ordVLANPCP},
		FieldIPDSCP:       {"ip_dscp", "OXM_OF_IP_DSCP", 1, false, kindDec, ordNwTos},
		FieldIPECN:        {"nw_ecn", "NXM_NX_IP_ECN", 1, false, kindDec, ordNwTos},
		FieldIPProto:      {"nw_proto", "NXM_OF_IP_PROTO", 1, false, kindDec, ordNwProto},
		FieldIPv4Src:      {"nw_src", "NXM_OF_IP_SRC", 4, true, kindIPv4, ordNwSrc},
		FieldIPv4Dst:      {"nw_dst", "NXM_OF_IP_DST", 4, true, kindIPv4, ordNwDst},
		FieldTCPSrc:       {"tp_src", "NXM_OF_TCP_SRC", 2, true, kindDec, ordTpSrc},
		FieldTCPDst:       {"tp_dst", "NXM_OF_TCP_DST", 2, true, kindDec, ordTpDst},
		FieldUDPSrc:       {"tp_src", "NXM_OF_UDP_SRC", 2, true, kindDec, ordTpSrc},
		FieldUDPDst:       {"tp_dst", "NXM_OF_UDP_DST", 2, true, kindDec, ordTpDst},
		FieldSCTPSrc:      {"tp_src", "OXM_OF_SCTP_SRC", 2, true, kindDec, ordTpSrc},
		FieldSCTPDst:      {"tp_dst", "OXM_OF_SCTP_DST", 2, true, kindDec, ordTpDst},
		FieldICMPv4Type:   {"icmp_type", "NXM_OF_ICMP_TYPE", 1, false, kindDec, ordTpSrc},
		FieldICMPv4Code:   {"icmp_code", "NXM_OF_ICMP_CODE", 1, false, kindDec, ordTpDst},
		FieldARPOp:        {"arp_op", "NXM_OF_ARP_OP", 2, false, kindDec, ordNwProto},
		FieldARPSPA:       {"arp_spa", "NXM_OF_ARP_SPA", 4, true, kindIPv4, ordNwSrc},
		FieldARPTPA:       {"arp_tpa", "NXM_OF_ARP_TPA", 4, true, kindIPv4, ordNwDst},
		FieldARPSHA:       {"arp_sha", "NXM_NX_ARP_SHA", 6, true, kindMAC, ordARPSHA},
		FieldARPTHA:       {"arp_tha", "NXM_NX_ARP_THA", 6, true, kindMAC, ordARPTHA},
		FieldIPv6Src:      {"ipv6_src", "NXM_NX_IPV6_SRC", 16, true, kindIPv6, ordIPv6Src},
		FieldIPv6Dst:      {"ipv6_dst", "NXM_NX_IPV6_DST", 16, true, kindIPv6, ordIPv6Dst},
		FieldIPv6Label:    {"ipv6_label", "NXM_NX_IPV6_LABEL", 4, true, kindHex, ordIPv6Label},
		FieldICMPv6Type:   {"icmp_type", "NXM_NX_ICMPV6_TYPE", 1, false, kindDec, ordTpSrc},
		FieldICMPv6Code:   {"icmp_code", "NXM_NX_ICMPV6_CODE", 1, false, kindDec, ordTpDst},
		FieldIPv6NDTarget: {"nd_target", "NXM_NX_ND_TARGET", 16, true, kindIPv6, ordND},
		FieldIPv6NDSLL:    {"nd_sll", "NXM_NX_ND_SLL", 6, true, kindMAC, ordND},
		FieldIPv6NDTLL:    {"nd_tll", "NXM_NX_ND_TLL", 6, true, kindMAC, ordND},
		FieldTunnelID:     {"tun_id", "NXM_NX_TUN_ID", 8, true, kindHex, ordTunID},

		FieldNXTunID:    {"tun_id", "NXM_NX_TUN_ID", 8, true, kindHex, ordTunID},
		FieldTunIPv4Src: {"tun_src", "NXM_NX_TUN_IPV4_SRC", 4, true, kindIPv4, ordTunSrc},
		FieldTunIPv4Dst: {"tun_dst", "NXM_NX_TUN_IPV4_DST", 4, true, kindIPv4, ordTunDst},
		FieldPktMark:    {"pkt_mark", "NXM_NX_PKT_MARK", 4, true, kindHex, ordPktMark},
		FieldCTState:    {"ct_state", "NXM_NX_CT_STATE", 4, true, kindCTState, ordCTState},
		FieldCTZone:     {"ct_zone", "NXM_NX_CT_ZONE", 2, false, kindDec, ordCTZone},
		FieldCTMark:     {"ct_mark", "NXM_NX_CT_MARK", 4, true, kindHex, ordCTMark},
		FieldCTLabel:    {"ct_label", "NXM_NX_CT_LABEL", 16, true, kindHex, ordCTLabel},
		FieldConjID:     {"conj_id", "NXM_NX_CONJ_ID", 4, false, kindDec, ordConjID},

		// The original NXM fields appear in Nicira actions (move, load)
		// written by other controllers.
		{ClassNXM0, 0, 0}:  {"in_port", "NXM_OF_IN_PORT", 2, false, kindPort, ordInPort},
		{ClassNXM0, 1, 0}:  {"dl_dst", "NXM_OF_ETH_DST", 6, true, kindMAC, ordDlDst},
		{ClassNXM0, 2, 0}:  {"dl_src", "NXM_OF_ETH_SRC", 6, true, kindMAC, ordDlSrc},
		{ClassNXM0, 3, 0}:  {"dl_type", "NXM_OF_ETH_TYPE", 2, false, kindEthType, ordDlType},
		{ClassNXM0, 4, 0}:  {"vlan_tci", "NXM_OF_VLAN_TCI", 2, true, kindHex, ordVLAN},
		{ClassNXM0, 5, 0}:  {"nw_tos", "NXM_OF_IP_TOS", 1, false, kindDec, ordNwTos},
		{ClassNXM0, 6, 0}:  {"nw_proto", "NXM_OF_IP_PROTO", 1, false, kindDec, ordNwProto},
		{ClassNXM0, 7, 0}:  {"nw_src", "NXM_OF_IP_SRC", 4, true, kindIPv4, ordNwSrc},
		{ClassNXM0, 8, 0}:  {"nw_dst", "NXM_OF_IP_DST", 4, true, kindIPv4, ordNwDst},
		{ClassNXM0, 9, 0}:  {"tp_src", "NXM_OF_TCP_SRC", 2, true, kindDec, ordTpSrc},
		{ClassNXM0, 10, 0}: {"tp_dst", "NXM_OF_TCP_DST", 2, true, kindDec, ordTpDst},
		{ClassNXM0, 11, 0}: {"tp_src", "NXM_OF_UDP_SRC", 2, true, kindDec, ordTpSrc},
		{ClassNXM0, 12, 0}: {"tp_dst", "NXM_OF_UDP_DST", 2, true, kindDec, ordTpDst},
		{ClassNXM0, 13, 0}: {"icmp_type", "NXM_OF_ICMP_TYPE", 1, false, kindDec, ordTpSrc},
		{ClassNXM0, 14, 0}: {"icmp_code", "NXM_OF_ICMP_CODE", 1, false, kindDec, ordTpDst},
		{ClassNXM0, 15, 0}: {"arp_op", "NXM_OF_ARP_OP", 2, false, kindDec, ordNwProto},
		{ClassNXM0, 16, 0}: {"arp_spa", "NXM_OF_ARP_SPA", 4, true, kindIPv4, ordNwSrc},
		{ClassNXM0, 17, 0}: {"arp_tpa", "NXM_OF_ARP_TPA", 4, true, kindIPv4, ordNwDst},
		{ClassNXM1, 17, 0}: {"arp_sha", "NXM_NX_ARP_SHA", 6, true, kindMAC, ordARPSHA},
		{ClassNXM1, 18, 0}: {"arp_tha", "NXM_NX_ARP_THA", 6, true, kindMAC, ordARPTHA},
		{ClassNXM1, 19, 0}: {"ipv6_src", "NXM_NX_IPV6_SRC", 16, true, kindIPv6, ordIPv6Src},
		{ClassNXM1, 20, 0}: {"ipv6_dst", "NXM_NX_IPV6_DST", 16, true, kindIPv6, ordIPv6Dst},
	}
	for n := range uint8(16) {
		name := fmt.Sprintf("reg%d", n)
		m[RegField(n)] = fieldDef{name, fmt.Sprintf("NXM_NX_REG%d", n), 4, true, kindHex, ordReg}
	}
	for n := range uint8(8) {
		name := fmt.Sprintf("xreg%d", n)
		m[XRegField(n)] = fieldDef{name, name, 8, true, kindHex, ordXReg}
	}
	return m
}

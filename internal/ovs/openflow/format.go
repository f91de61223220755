package openflow

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// This file renders matches in the syntax of ovs-ofctl, so logs and the
// operator CLI read like `ovs-ofctl dump-flows` output.

// setFieldNames are OVS's field names where they differ from the match
// syntax (set_field:...->eth_src, but dl_src=... in a match).
var setFieldNames = map[FieldID]string{
	FieldEthSrc: "eth_src", FieldEthDst: "eth_dst", FieldEthType: "eth_type",
	FieldIPv4Src: "ip_src", FieldIPv4Dst: "ip_dst", FieldIPProto: "ip_proto",
	FieldTCPSrc: "tcp_src", FieldTCPDst: "tcp_dst", FieldUDPSrc: "udp_src", FieldUDPDst: "udp_dst",
	FieldSCTPSrc: "sctp_src", FieldSCTPDst: "sctp_dst",
	FieldICMPv6Type: "icmpv6_type", FieldICMPv6Code: "icmpv6_code",
	FieldVLANPCP: "vlan_pcp", FieldIPECN: "ip_ecn",
}

// String renders one field as name=value.
func (f Field) String() string {
	d, ok := fieldDefs[f.ID]
	if !ok {
		return f.ID.String() + "=" + formatRaw(f)
	}
	if d.kind == kindVLAN {
		return formatVLAN(f)
	}
	return d.name + "=" + formatValue(d, f)
}

func formatRaw(f Field) string {
	s := "0x" + hex.EncodeToString(f.Value)
	if f.Mask != nil {
		s += "/0x" + hex.EncodeToString(f.Mask)
	}
	return s
}

// hexTrim prints a big-endian number of any width without leading zeros.
func hexTrim(b []byte) string {
	s := strings.TrimLeft(hex.EncodeToString(b), "0")
	if s == "" {
		return "0"
	}
	return "0x" + s
}

func formatValue(d fieldDef, f Field) string {
	switch d.kind {
	case kindMAC:
		s := net.HardwareAddr(f.Value).String()
		if f.Mask != nil {
			s += "/" + net.HardwareAddr(f.Mask).String()
		}
		return s
	case kindIPv4, kindIPv6:
		a, _ := netip.AddrFromSlice(f.Value)
		if f.Mask == nil {
			return a.String()
		}
		if bits, ok := prefixLen(f.Mask); ok {
			return a.String() + "/" + strconv.Itoa(bits)
		}
		m, _ := netip.AddrFromSlice(f.Mask)
		return a.String() + "/" + m.String()
	case kindCTState:
		return formatCTState(f)
	case kindPort:
		if f.Mask == nil {
			return PortName(uint32(f.Uint()))
		}
	case kindEthType:
		if f.Mask == nil {
			return fmt.Sprintf("0x%04x", f.Uint())
		}
	case kindDec:
		if f.Mask == nil {
			return strconv.FormatUint(f.Uint(), 10)
		}
	}
	s := hexTrim(f.Value)
	if f.Mask != nil {
		s += "/" + hexTrim(f.Mask)
	}
	return s
}

// prefixLen reports whether mask is a CIDR prefix mask and its length.
func prefixLen(mask []byte) (int, bool) {
	bits, done := 0, false
	for _, c := range mask {
		for i := 7; i >= 0; i-- {
			on := c&(1<<i) != 0
			switch {
			case on && done:
				return 0, false
			case on:
				bits++
			default:
				done = true
			}
		}
	}
	return bits, true
}

func formatVLAN(f Field) string {
	v := uint16(f.Uint())
	switch {
	case f.Mask != nil:
		return fmt.Sprintf("vlan_tci=0x%04x/0x%04x", v, uint16(f.MaskUint()))
	case v&VLANPresent != 0:
		return "dl_vlan=" + strconv.Itoa(int(v&0x0fff))
	default:
		// Untagged: OVS shows the TCI with VID and CFI masked.
		return "vlan_tci=0x0000/0x1fff"
	}
}

func formatCTState(f Field) string {
	v, mask := uint32(f.Uint()), uint32(f.MaskUint())
	var b strings.Builder
	for i, name := range ctStateNames {
		bit := uint32(1) << i
		if mask&bit == 0 {
			continue
		}
		if v&bit != 0 {
			b.WriteByte('+')
		} else {
			b.WriteByte('-')
		}
		b.WriteString(name)
	}
	if rest := mask &^ 0xff; rest != 0 {
		fmt.Fprintf(&b, "(0x%x/0x%x)", v&rest, rest)
	}
	if b.Len() == 0 {
		return "0/0"
	}
	return b.String()
}

// setFieldString renders a field as the value and name of a set_field
// action (set_field:VALUE->NAME).
func setFieldString(f Field) string {
	d, ok := fieldDefs[f.ID]
	if !ok {
		return formatRaw(f) + "->" + f.ID.String()
	}
	name := d.name
	if n, ok := setFieldNames[f.ID]; ok {
		name = n
	}
	var v string
	switch d.kind {
	case kindVLAN:
		v = strconv.FormatUint(f.Uint(), 10)
		if f.Mask != nil {
			v = fmt.Sprintf("0x%04x/0x%04x", f.Uint(), f.MaskUint())
		}
	case kindCTState:
		v = hexTrim(f.Value)
	default:
		v = formatValue(d, f)
	}
	return v + "->" + name
}

// shorthand returns ovs-ofctl's protocol keyword (ip, tcp6, arp...) and the
// fields it stands for.
func shorthand(m Match) (string, []FieldID) {
	et, ok := m.Get(FieldEthType)
	if !ok {
		return "", nil
	}
	proto, hasProto := m.Get(FieldIPProto)
	p := uint8(proto.Uint())
	withProto := func(names map[uint8]string, base string) (string, []FieldID) {
		if hasProto {
			if n, ok := names[p]; ok {
				return n, []FieldID{FieldEthType, FieldIPProto}
			}
		}
		return base, []FieldID{FieldEthType}
	}
	switch uint16(et.Uint()) {
	case EthTypeIPv4:
		return withProto(map[uint8]string{IPProtoICMP: "icmp", IPProtoTCP: "tcp", IPProtoUDP: "udp", IPProtoSCTP: "sctp"}, "ip")
	case EthTypeIPv6:
		return withProto(map[uint8]string{IPProtoICMPv6: "icmp6", IPProtoTCP: "tcp6", IPProtoUDP: "udp6", IPProtoSCTP: "sctp6"}, "ipv6")
	case EthTypeARP:
		return "arp", []FieldID{FieldEthType}
	case 0x8035:
		return "rarp", []FieldID{FieldEthType}
	}
	return "", nil
}

// String renders the match as ovs-ofctl does (without priority), e.g.
// "tcp,reg0=0x5,in_port=3,nw_src=10.0.0.0/8,tp_dst=80". An empty match is
// the empty string.
func (m Match) String() string {
	type item struct {
		order int
		text  string
	}
	items := make([]item, 0, len(m.Fields)+1)
	sh, covered := shorthand(m)
	if sh != "" {
		items = append(items, item{ordShorthand << 8, sh})
	}
	for _, f := range m.Fields {
		if slices.Contains(covered, f.ID) {
			continue
		}
		order := ordOther << 8
		if d, ok := fieldDefs[f.ID]; ok {
			order = d.order << 8
			if d.order == ordReg || d.order == ordXReg {
				order |= int(f.ID.Field)
			}
		}
		items = append(items, item{order, f.String()})
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.order - b.order })
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = it.text
	}
	return strings.Join(parts, ",")
}

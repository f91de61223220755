package pipeline

import (
	"fmt"
	"net/netip"
	"slices"

	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// NetworkPolicy tables. A packet reaches them only as the first packet of
// a connection (established and related traffic goes from ConntrackState
// straight to L3Forwarding), so a connection is checked once and its
// replies pass both ways. Each direction has a rule table, whose allowing
// flows jump past the direction's default table, and a default table,
// which drops what an isolated pod sends (egress) or receives (ingress).
const (
	TableEgressRule     uint8 = 40
	TableEgressDefault  uint8 = 41
	TableIngressRule    uint8 = 50
	TableIngressDefault uint8 = 51
)

func init() {
	TableNames[TableEgressRule] = "EgressRule"
	TableNames[TableEgressDefault] = "EgressDefault"
	TableNames[TableIngressRule] = "IngressRule"
	TableNames[TableIngressDefault] = "IngressDefault"
}

// Direction is a policy direction.
type Direction uint8

// The directions.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// ruleTable, defaultTable and allowed are the tables of a direction and
// where an allowed packet continues.
func (d Direction) ruleTable() uint8 {
	if d == Egress {
		return TableEgressRule
	}
	return TableIngressRule
}

func (d Direction) defaultTable() uint8 {
	if d == Egress {
		return TableEgressDefault
	}
	return TableIngressDefault
}

func (d Direction) allowed() uint8 {
	if d == Egress {
		return TableIngressRule
	}
	return TableConntrackCommit
}

// PolicyPort is one port (or port range, or whole protocol) a rule allows.
type PolicyPort struct {
	// Proto is an IP protocol number (6 TCP, 17 UDP, 132 SCTP).
	Proto uint8
	// Port is the first port; 0 means every port of Proto.
	Port uint16
	// EndPort, if above Port, makes the range Port..EndPort.
	EndPort uint16
}

// PolicyRule is one rule of one NetworkPolicy, compiled: its local pods,
// its peers and its ports. Its flows form one conjunctive match (OpenFlow
// "conjunction"), so that N pods x M peers x P ports cost N+M+P flows.
type PolicyRule struct {
	Direction Direction
	// ConjID identifies the conjunction; unique among rules.
	ConjID uint32
	// Priority of every flow of the rule; unique among rules, so flows of
	// different rules never collide on a match.
	Priority uint16
	// Pods are the local pods the rule applies to (destinations for
	// ingress, sources for egress).
	Pods []netip.Addr
	// Peers are the addresses on the other end; nil with AnyPeer.
	Peers   []netip.Prefix
	AnyPeer bool
	// Ports are what is allowed; empty means every port and protocol.
	Ports []PolicyPort
}

// PolicyRuleFlows are a rule's flows: one clause flow per pod, per peer and
// per port (range), and the flow that allows a packet matching all three.
// A rule with no pods has no flows.
func PolicyRuleFlows(r PolicyRule) []Flow {
	if len(r.Pods) == 0 || (!r.AnyPeer && len(r.Peers) == 0) {
		return nil
	}
	table, prio := r.Direction.ruleTable(), r.Priority
	allow := gotoTable(r.Direction.allowed())
	podField, peerField := of.IPv4Dst, of.IPv4SrcPrefix
	if r.Direction == Egress {
		podField, peerField = of.IPv4Src, of.IPv4DstPrefix
	}
	clauses := 1
	if !r.AnyPeer {
		clauses++
	}
	if len(r.Ports) > 0 {
		clauses++
	}
	var out []Flow
	if clauses == 1 {
		for _, p := range sortedAddrs(r.Pods) {
			out = append(out, flow(table, prio, allow, of.EthType(ethTypeIPv4), podField(p)))
		}
		return out
	}
	conj := func(clause uint8) []of.Instruction {
		return []of.Instruction{of.Apply(of.Conjunction{ID: r.ConjID, Clause: clause, NClauses: uint8(clauses)})}
	}
	for _, p := range sortedAddrs(r.Pods) {
		out = append(out, flow(table, prio, conj(1), of.EthType(ethTypeIPv4), podField(p)))
	}
	next := uint8(2)
	if !r.AnyPeer {
		for _, p := range mergedPrefixes(r.Peers) {
			out = append(out, flow(table, prio, conj(next), of.EthType(ethTypeIPv4), peerField(p)))
		}
		next++
	}
	if len(r.Ports) > 0 {
		for _, m := range portMatches(r.Ports) {
			out = append(out, flow(table, prio, conj(next), append([]of.Field{of.EthType(ethTypeIPv4)}, m...)...))
		}
	}
	out = append(out, flow(table, prio, allow, of.EthType(ethTypeIPv4), of.ConjID(r.ConjID)))
	return out
}

// IsolationFlows drop, in the direction's default table, what an isolated
// pod sends (egress) or receives (ingress) that no rule allowed.
func IsolationFlows(d Direction, pod netip.Addr) []Flow {
	f := of.IPv4Dst(pod)
	if d == Egress {
		f = of.IPv4Src(pod)
	}
	return []Flow{flow(d.defaultTable(), prioSpecific, drop, of.EthType(ethTypeIPv4), f)}
}

// PolicyExemptFlows let the node reach its pods whatever their policies,
// as Kubernetes requires (kubelet probes): traffic from the gateway whose
// source is one of the node's addresses. And they keep a pod's first packet
// to a Service address out of egress policy: the host NATs it to an
// endpoint and sends it back through the gateway, and egress policy is
// checked on that packet, whose destination is the endpoint.
func PolicyExemptFlows(n Network, nodeIPs []netip.Addr, serviceCIDRs []netip.Prefix) []Flow {
	out := []Flow{flow(TableIngressRule, prioOverride, gotoTable(TableConntrackCommit),
		of.EthType(ethTypeIPv4), fromSource(srcGateway), of.IPv4Src(n.GatewayIP))}
	for _, ip := range sortedAddrs(nodeIPs) {
		out = append(out, flow(TableIngressRule, prioOverride, gotoTable(TableConntrackCommit),
			of.EthType(ethTypeIPv4), fromSource(srcGateway), of.IPv4Src(ip)))
	}
	for _, c := range mergedPrefixes(serviceCIDRs) {
		out = append(out, flow(TableEgressRule, prioOverride, gotoTable(TableIngressRule),
			of.EthType(ethTypeIPv4), fromSource(srcPod), of.IPv4DstPrefix(c)))
	}
	return out
}

// portMatches turns ports into match field sets: the protocol, and each
// range as the fewest value/mask pairs that cover it exactly.
func portMatches(ports []PolicyPort) [][]of.Field {
	seen := map[string]bool{}
	var out [][]of.Field
	add := func(fs []of.Field) {
		k := fmt.Sprint(fs)
		if !seen[k] {
			seen[k] = true
			out = append(out, fs)
		}
	}
	for _, p := range ports {
		proto := of.IPProto(p.Proto)
		if p.Port == 0 {
			add([]of.Field{proto})
			continue
		}
		end := max(p.EndPort, p.Port)
		for _, vm := range rangeMasks(p.Port, end) {
			var f of.Field
			switch p.Proto {
			case of.IPProtoTCP:
				f = of.TCPDstMasked(vm[0], vm[1])
			case of.IPProtoUDP:
				f = of.UDPDstMasked(vm[0], vm[1])
			case of.IPProtoSCTP:
				f = of.SCTPDstMasked(vm[0], vm[1])
			default:
				continue
			}
			if vm[1] == 0xffff {
				switch p.Proto {
				case of.IPProtoTCP:
					f = of.TCPDst(vm[0])
				case of.IPProtoUDP:
					f = of.UDPDst(vm[0])
				case of.IPProtoSCTP:
					f = of.SCTPDst(vm[0])
				}
			}
			add([]of.Field{proto, f})
		}
	}
	return out
}

// rangeMasks splits lo..hi into aligned blocks, each a (value, mask) pair.
func rangeMasks(lo, hi uint16) [][2]uint16 {
	var out [][2]uint16
	for cur := uint32(lo); cur <= uint32(hi); {
		size := uint32(1)
		// The largest aligned block starting at cur that stays within hi.
		for size < 1<<16 && cur&(size*2-1) == 0 && cur+size*2-1 <= uint32(hi) {
			size *= 2
		}
		out = append(out, [2]uint16{uint16(cur), uint16(^(size - 1))})
		cur += size
	}
	return out
}

func sortedAddrs(in []netip.Addr) []netip.Addr {
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(s)
}

// mergedPrefixes sorts prefixes and drops those covered by another.
func mergedPrefixes(in []netip.Prefix) []netip.Prefix {
	s := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		s = append(s, p.Masked())
	}
	slices.SortFunc(s, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range s {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

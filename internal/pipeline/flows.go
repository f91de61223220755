// Package pipeline is ovsnet's OpenFlow pipeline on the integration bridge:
// which tables exist, which flows each owner (the pipeline itself, the
// gateway, each pod) needs, and keeping the switch's flows equal to the
// desired ones across reconnects and restarts (manager.go).
//
// The tables, in packet order (docs/pipeline.md shows example flows):
//
//	0  Classifier      by in_port: pods -> SpoofGuard, gateway -> ARP; marks the source in reg0
//	10 SpoofGuard      a pod sends only from its own IP and MAC (IPv4 and ARP)
//	20 ARP             answer ARP for the gateway; deliver other ARP by target IP, pods' replies to the gateway
//	30 ConntrackZone   IPv4 through the connection tracker (zone 65520)
//	31 ConntrackState  established and related traffic skips policy and the commit
//	40 EgressRule      NetworkPolicy egress rules (conjunctive matches) allow
//	41 EgressDefault   drop what an egress-isolated pod sends that no rule allowed
//	50 IngressRule     the node's own traffic; NetworkPolicy ingress rules allow
//	51 IngressDefault  drop what an ingress-isolated pod receives that no rule allowed
//	60 ConntrackCommit commit new connections; those entering from the gateway get ct_mark 0x1
//	70 L3Forwarding    replies to gateway connections back to the gateway; then by destination IP
//
// Flows are pure functions of their inputs, so tests and the operator CLI
// can show exactly what an owner installs.
package pipeline

import (
	"fmt"
	"net"
	"net/netip"

	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Table ids.
const (
	TableClassifier      uint8 = 0
	TableSpoofGuard      uint8 = 10
	TableARP             uint8 = 20
	TableConntrackZone   uint8 = 30
	TableConntrackState  uint8 = 31
	TableConntrackCommit uint8 = 60
	TableL3Forwarding    uint8 = 70
)

// TableNames names the tables for logs and the CLI.
var TableNames = map[uint8]string{
	TableClassifier:      "Classifier",
	TableSpoofGuard:      "SpoofGuard",
	TableARP:             "ARP",
	TableConntrackZone:   "ConntrackZone",
	TableConntrackState:  "ConntrackState",
	TableConntrackCommit: "ConntrackCommit",
	TableL3Forwarding:    "L3Forwarding",
}

// CTZone is the conntrack zone of all pod traffic.
const CTZone uint16 = 65520

// ct_mark bits.
const (
	// ctMarkFromGateway: the connection's first packet entered the bridge
	// from the gateway (the host: kube-proxy's DNAT, a NodePort, the node
	// itself). Its replies must go back through the gateway, whatever their
	// destination, so the host's conntrack sees both directions and can
	// reverse its NAT.
	ctMarkFromGateway uint32 = 0x1
)

// reg0[0..3] says where a packet entered the bridge.
const (
	regSource     uint8  = 0
	srcMask       uint32 = 0xf
	srcGateway    uint32 = 1
	srcPod        uint32 = 2
	srcTunnel     uint32 = 3
	regSourceBits uint16 = 4
)

// Priorities used across tables.
const (
	prioMiss     uint16 = 0
	prioDefault  uint16 = 50
	prioCatch    uint16 = 100
	prioPeer     uint16 = 150
	prioReply    uint16 = 180
	prioEndpoint uint16 = 190
	prioSpecific uint16 = 200
	prioOverride uint16 = 300
	ethTypeIPv4         = 0x0800
	ethTypeARP          = 0x0806
	arpOpRequest        = 1
	arpOpReply          = 2
)

// Flow is one desired flow. Cookies are assigned by the manager.
type Flow struct {
	Table        uint8
	Priority     uint16
	Match        of.Match
	Instructions []of.Instruction
}

func (f Flow) String() string {
	return fmt.Sprintf("table=%d,priority=%d,%v actions=%s", f.Table, f.Priority, f.Match, of.InstructionsString(f.Instructions))
}

func flow(table uint8, prio uint16, insts []of.Instruction, fields ...of.Field) Flow {
	return Flow{Table: table, Priority: prio, Match: of.NewMatch(fields...), Instructions: insts}
}

func gotoTable(t uint8) []of.Instruction { return []of.Instruction{of.GotoTable{Table: t}} }

func output(port uint32) []of.Instruction {
	return []of.Instruction{of.Apply(of.Output{Port: port})}
}

// drop is an empty instruction set: OpenFlow drops a packet with no actions.
var drop []of.Instruction

// Network is the node's pod network.
type Network struct {
	// PodCIDR is the node's pod subnet.
	PodCIDR netip.Prefix
	// GatewayIP is the gateway's address in PodCIDR (its first address).
	GatewayIP netip.Addr
	// GatewayMAC is the gateway port's MAC.
	GatewayMAC net.HardwareAddr
}

// Endpoint is a port with its address: a pod interface or the gateway.
type Endpoint struct {
	OFPort uint32
	IP     netip.Addr
	MAC    net.HardwareAddr
}

func loadSource(src uint32) of.Action {
	return of.RegLoad{Dst: of.Slice(of.RegField(regSource), 0, regSourceBits), Value: uint64(src)}
}

func fromSource(src uint32) of.Field { return of.RegMasked(regSource, src, srcMask) }

// BaseFlows are the flows that do not depend on any port: the table-miss
// flows and the conntrack stage. Unknown traffic is dropped; IPv4 that
// passed the checks goes through the connection tracker, where a new
// connection is committed (marked when it came from the gateway) and an
// established one is not.
func BaseFlows() []Flow {
	ct := []of.Instruction{of.Apply(of.CT{Zone: CTZone, Recirc: true, Table: TableConntrackState})}
	commit := func(mark bool) []of.Instruction {
		c := of.CT{Commit: true, Zone: CTZone}
		if mark {
			c.Actions = []of.Action{of.SetField{Field: of.CTMarkMasked(ctMarkFromGateway, ctMarkFromGateway)}}
		}
		return []of.Instruction{of.Apply(c), of.GotoTable{Table: TableL3Forwarding}}
	}
	return []Flow{
		flow(TableClassifier, prioMiss, drop),
		flow(TableSpoofGuard, prioMiss, drop),
		flow(TableARP, prioCatch, drop, of.EthType(ethTypeARP)),
		flow(TableARP, prioMiss, gotoTable(TableConntrackZone)),
		flow(TableConntrackZone, prioCatch, ct, of.EthType(ethTypeIPv4)),
		flow(TableConntrackZone, prioMiss, drop),
		flow(TableConntrackState, prioSpecific, gotoTable(TableL3Forwarding),
			of.EthType(ethTypeIPv4), of.CTState(of.CTStateTracked|of.CTStateEstablished, 0)),
		flow(TableConntrackState, prioSpecific, gotoTable(TableL3Forwarding),
			of.EthType(ethTypeIPv4), of.CTState(of.CTStateTracked|of.CTStateRelated, 0)),
		flow(TableConntrackState, prioMiss, gotoTable(TableEgressRule)),
		flow(TableEgressRule, prioMiss, gotoTable(TableEgressDefault)),
		flow(TableEgressDefault, prioMiss, gotoTable(TableIngressRule)),
		flow(TableIngressRule, prioMiss, gotoTable(TableIngressDefault)),
		flow(TableIngressDefault, prioMiss, gotoTable(TableConntrackCommit)),
		flow(TableConntrackCommit, prioSpecific, commit(true),
			of.EthType(ethTypeIPv4), of.CTState(of.CTStateTracked|of.CTStateNew, 0), fromSource(srcGateway)),
		flow(TableConntrackCommit, prioEndpoint, commit(false),
			of.EthType(ethTypeIPv4), of.CTState(of.CTStateTracked|of.CTStateNew, 0)),
		flow(TableConntrackCommit, prioMiss, gotoTable(TableL3Forwarding)),
		flow(TableL3Forwarding, prioMiss, drop),
	}
}

// GatewayFlows admit the host's traffic, answer ARP for the gateway IP,
// hand the host the ARP replies it asked pods for, send replies of
// connections that entered from the gateway back to it, and send to the
// host what is for the gateway, for another node or outside.
func GatewayFlows(n Network, gw Endpoint) []Flow {
	reply := []of.Instruction{of.Apply(
		of.RegMove{Src: of.Whole(of.FieldEthSrc), Dst: of.Whole(of.FieldEthDst)},
		of.SetField{Field: of.EthSrc(n.GatewayMAC)},
		of.SetField{Field: of.ARPOp(arpOpReply)},
		of.RegMove{Src: of.Whole(of.FieldARPSHA), Dst: of.Whole(of.FieldARPTHA)},
		of.RegMove{Src: of.Whole(of.FieldARPSPA), Dst: of.Whole(of.FieldARPTPA)},
		of.SetField{Field: of.ARPSHA(n.GatewayMAC)},
		of.SetField{Field: of.ARPSPA(n.GatewayIP)},
		of.Output{Port: of.PortInPort},
	)}
	toGateway := []of.Instruction{of.Apply(of.SetField{Field: of.EthDst(n.GatewayMAC)}, of.Output{Port: gw.OFPort})}
	return []Flow{
		flow(TableClassifier, prioSpecific,
			[]of.Instruction{of.Apply(loadSource(srcGateway)), of.GotoTable{Table: TableARP}}, of.InPort(gw.OFPort)),
		flow(TableARP, prioSpecific, reply, of.EthType(ethTypeARP), of.ARPOp(arpOpRequest), of.ARPTPA(n.GatewayIP)),
		flow(TableARP, prioEndpoint, output(gw.OFPort), of.EthType(ethTypeARP), of.ARPTPA(n.GatewayIP)),
		// The host asks pods from whichever of its addresses routes to
		// them (the node IP, not only the gateway's), so a pod's ARP
		// reply to any address is the host's. A pod's reply to another
		// pod is delivered by target address above.
		flow(TableARP, prioReply, output(gw.OFPort), of.EthType(ethTypeARP), of.ARPOp(arpOpReply), fromSource(srcPod)),
		flow(TableL3Forwarding, prioOverride, toGateway,
			of.EthType(ethTypeIPv4), of.CTState(of.CTStateTracked|of.CTStateReply, 0), of.CTMarkMasked(ctMarkFromGateway, ctMarkFromGateway)),
		flow(TableL3Forwarding, prioSpecific, output(gw.OFPort), of.EthType(ethTypeIPv4), of.IPv4Dst(n.GatewayIP)),
		// A pod address nobody holds is dropped here rather than bounced to
		// the host, which would route it straight back.
		flow(TableL3Forwarding, prioCatch, drop, of.EthType(ethTypeIPv4), of.IPv4DstPrefix(n.PodCIDR)),
		flow(TableL3Forwarding, prioDefault, output(gw.OFPort), of.EthType(ethTypeIPv4)),
	}
}

// PodFlows admit a pod's traffic only from its own port, MAC and IP, deliver
// ARP for its IP to it, and deliver IPv4 for its IP with its MAC as
// destination (traffic routed by the host arrives addressed to the gateway's
// neighbour entry, which is the pod's MAC anyway; setting it keeps the path
// right even for a stale entry).
func PodFlows(pod Endpoint) []Flow {
	return []Flow{
		flow(TableClassifier, prioSpecific,
			[]of.Instruction{of.Apply(loadSource(srcPod)), of.GotoTable{Table: TableSpoofGuard}}, of.InPort(pod.OFPort)),
		flow(TableSpoofGuard, prioSpecific, gotoTable(TableARP),
			of.InPort(pod.OFPort), of.EthSrc(pod.MAC), of.EthType(ethTypeIPv4), of.IPv4Src(pod.IP)),
		flow(TableSpoofGuard, prioSpecific, gotoTable(TableARP),
			of.InPort(pod.OFPort), of.EthSrc(pod.MAC), of.EthType(ethTypeARP), of.ARPSPA(pod.IP), of.ARPSHA(pod.MAC)),
		flow(TableARP, prioEndpoint, output(pod.OFPort), of.EthType(ethTypeARP), of.ARPTPA(pod.IP)),
		flow(TableL3Forwarding, prioSpecific,
			[]of.Instruction{of.Apply(of.SetField{Field: of.EthDst(pod.MAC)}, of.Output{Port: pod.OFPort})},
			of.EthType(ethTypeIPv4), of.IPv4Dst(pod.IP)),
	}
}

// VirtualMAC is the source MAC of packets sent into a tunnel and the MAC
// the switch answers ARP for a peer's gateway with: 0a:58 + 255.255.255.254,
// an address no pod has.
var VirtualMAC = net.HardwareAddr{0x0a, 0x58, 0xff, 0xff, 0xff, 0xfe}

// Peer is another node as the pipeline needs it.
type Peer struct {
	// NodeIP is the tunnel destination.
	NodeIP netip.Addr
	// PodCIDRs are the peer's pod subnets; the first address of each is
	// its gateway.
	PodCIDRs []netip.Prefix
}

// PeerGateway is the gateway address of a pod CIDR (its first address).
func PeerGateway(cidr netip.Prefix) netip.Addr { return cidr.Masked().Addr().Next() }

// TunnelFlows admit what arrives from the tunnel port (Geneve or VXLAN,
// flow-based: the peer is chosen per flow): it is routed traffic from
// another node's pods, addressed to this node's gateway MAC from the
// virtual MAC, and goes straight to the conntrack stage.
func TunnelFlows(n Network, tunnel uint32) []Flow {
	return []Flow{
		flow(TableClassifier, prioSpecific, []of.Instruction{
			of.Apply(loadSource(srcTunnel), of.SetField{Field: of.EthSrc(VirtualMAC)}, of.SetField{Field: of.EthDst(n.GatewayMAC)}),
			of.GotoTable{Table: TableConntrackZone},
		}, of.InPort(tunnel)),
	}
}

// PeerFlows send a peer's pod CIDRs into the tunnel with the peer's address
// as tunnel destination, routed (source MAC the gateway's, destination the
// virtual MAC, TTL decremented), and answer ARP for the peer's gateway
// address with the virtual MAC, so that the node itself reaches the peer's
// pods through the gateway and the tunnel (its route to them is "via the
// peer's gateway, on-link").
func PeerFlows(n Network, tunnel uint32, p Peer) []Flow {
	var out []Flow
	for _, cidr := range p.PodCIDRs {
		gw := PeerGateway(cidr)
		arp := []of.Instruction{of.Apply(
			of.RegMove{Src: of.Whole(of.FieldEthSrc), Dst: of.Whole(of.FieldEthDst)},
			of.SetField{Field: of.EthSrc(VirtualMAC)},
			of.SetField{Field: of.ARPOp(arpOpReply)},
			of.RegMove{Src: of.Whole(of.FieldARPSHA), Dst: of.Whole(of.FieldARPTHA)},
			of.RegMove{Src: of.Whole(of.FieldARPSPA), Dst: of.Whole(of.FieldARPTPA)},
			of.SetField{Field: of.ARPSHA(VirtualMAC)},
			of.SetField{Field: of.ARPSPA(gw)},
			of.Output{Port: of.PortInPort},
		)}
		out = append(out,
			flow(TableARP, prioSpecific, arp, of.EthType(ethTypeARP), of.ARPOp(arpOpRequest), of.ARPTPA(gw)),
			flow(TableL3Forwarding, prioPeer, []of.Instruction{of.Apply(
				of.SetField{Field: of.EthSrc(n.GatewayMAC)},
				of.SetField{Field: of.EthDst(VirtualMAC)},
				of.DecNwTTL{},
				of.SetField{Field: of.TunIPv4Dst(p.NodeIP)},
				of.Output{Port: tunnel},
			)}, of.EthType(ethTypeIPv4), of.IPv4DstPrefix(cidr)),
		)
	}
	return out
}

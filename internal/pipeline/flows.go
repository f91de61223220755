// Package pipeline is ovsnet's OpenFlow pipeline on the integration bridge:
// which tables exist, which flows each owner (the pipeline itself, the
// gateway, each pod) needs, and keeping the switch's flows equal to the
// desired ones across reconnects and restarts (manager.go).
//
// The tables, in packet order (docs/pipeline.md shows example flows):
//
//	0  Classifier   by in_port: pods -> SpoofGuard, gateway -> ARP; else drop
//	10 SpoofGuard   a pod sends only from its own IP and MAC (IPv4 and ARP)
//	20 ARP          answer ARP for the gateway; deliver other ARP by target IP
//	30 L3Forwarding by destination IP: local pod, gateway; else to the gateway
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
	TableClassifier   uint8 = 0
	TableSpoofGuard   uint8 = 10
	TableARP          uint8 = 20
	TableL3Forwarding uint8 = 30
)

// TableNames names the tables for logs and the CLI.
var TableNames = map[uint8]string{
	TableClassifier:   "Classifier",
	TableSpoofGuard:   "SpoofGuard",
	TableARP:          "ARP",
	TableL3Forwarding: "L3Forwarding",
}

// Priorities used across tables.
const (
	prioMiss     uint16 = 0
	prioDefault  uint16 = 50
	prioCatch    uint16 = 100
	prioEndpoint uint16 = 190
	prioSpecific uint16 = 200
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

// BaseFlows are the table-miss flows: unknown traffic is dropped, IPv4 that
// passed the checks and is for no local endpoint goes to the gateway.
func BaseFlows() []Flow {
	return []Flow{
		flow(TableClassifier, prioMiss, drop),
		flow(TableSpoofGuard, prioMiss, drop),
		flow(TableARP, prioCatch, drop, of.EthType(ethTypeARP)),
		flow(TableARP, prioMiss, gotoTable(TableL3Forwarding)),
		flow(TableL3Forwarding, prioMiss, drop),
	}
}

// GatewayFlows admit the host's traffic, answer ARP for the gateway IP, and
// send to the host what is for the gateway, for another node or outside.
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
	return []Flow{
		flow(TableClassifier, prioSpecific, gotoTable(TableARP), of.InPort(gw.OFPort)),
		flow(TableARP, prioSpecific, reply, of.EthType(ethTypeARP), of.ARPOp(arpOpRequest), of.ARPTPA(n.GatewayIP)),
		flow(TableARP, prioEndpoint, output(gw.OFPort), of.EthType(ethTypeARP), of.ARPTPA(n.GatewayIP)),
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
		flow(TableClassifier, prioSpecific, gotoTable(TableSpoofGuard), of.InPort(pod.OFPort)),
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

// Package nodes says which other nodes of the cluster exist: their names,
// addresses and pod CIDRs, the peers this node's pods must reach. It knows
// nothing of OVS or of how the datapath reaches them (package crossnode
// does that). Two sources exist: a peers file (standalone mode, file.go)
// and, in Kubernetes mode, the Node informer (package k8s adapts it to
// Source).
package nodes

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
)

// Peer is another node.
type Peer struct {
	// Name identifies the peer (the Node's name in Kubernetes).
	Name string `json:"name"`
	// NodeIP is the peer's address on the underlay: the tunnel endpoint,
	// or the next hop of its pod CIDRs in routed mode.
	NodeIP netip.Addr `json:"nodeIP"`
	// PodCIDRs are the peer's pod subnets (IPv4 only for now).
	PodCIDRs []netip.Prefix `json:"podCIDRs"`
}

// Equal reports whether two peers are the same in every field.
func (p Peer) Equal(q Peer) bool {
	return p.Name == q.Name && p.NodeIP == q.NodeIP && slices.Equal(p.PodCIDRs, q.PodCIDRs)
}

// Source is where the peers come from. Peers returns the current set,
// sorted by name, and whether it is complete (a source that has not read
// its file or listed the Nodes yet is not, and its empty set says
// nothing); Changed is closed at the next change. Run feeds the source
// until ctx ends.
type Source interface {
	Run(ctx context.Context) error
	Peers() (peers []Peer, synced bool)
	Changed() <-chan struct{}
}

// Validate checks a set of peers against this node: every peer has a name,
// an IPv4 node address and IPv4 pod CIDRs, no two peers share a name, an
// address or overlapping pod CIDRs, and none overlaps local (this node's
// pod CIDR) or is this node's own address.
func Validate(peers []Peer, localCIDR netip.Prefix, localIP netip.Addr) error {
	names := map[string]bool{}
	ips := map[netip.Addr]string{}
	var cidrs []struct {
		p    netip.Prefix
		name string
	}
	for _, p := range peers {
		switch {
		case p.Name == "":
			return fmt.Errorf("a peer has no name")
		case names[p.Name]:
			return fmt.Errorf("peer %s is listed twice", p.Name)
		case !p.NodeIP.Is4():
			return fmt.Errorf("peer %s: node address %v is not an IPv4 address", p.Name, p.NodeIP)
		case localIP.IsValid() && p.NodeIP == localIP:
			return fmt.Errorf("peer %s has this node's own address %s", p.Name, p.NodeIP)
		case len(p.PodCIDRs) == 0:
			return fmt.Errorf("peer %s has no pod CIDR", p.Name)
		}
		if other, dup := ips[p.NodeIP]; dup {
			return fmt.Errorf("peers %s and %s have the same node address %s", other, p.Name, p.NodeIP)
		}
		names[p.Name], ips[p.NodeIP] = true, p.Name
		for _, c := range p.PodCIDRs {
			if !c.Addr().Is4() || c.Masked() != c {
				return fmt.Errorf("peer %s: pod CIDR %s is not an IPv4 subnet with its host bits zero", p.Name, c)
			}
			if localCIDR.IsValid() && c.Overlaps(localCIDR) {
				return fmt.Errorf("peer %s: pod CIDR %s overlaps this node's %s", p.Name, c, localCIDR)
			}
			for _, o := range cidrs {
				if o.p.Overlaps(c) {
					return fmt.Errorf("peers %s and %s have overlapping pod CIDRs %s and %s", o.name, p.Name, o.p, c)
				}
			}
			cidrs = append(cidrs, struct {
				p    netip.Prefix
				name string
			}{c, p.Name})
		}
	}
	return nil
}

// Sort orders peers by name, and each peer's pod CIDRs.
func Sort(peers []Peer) {
	for i := range peers {
		slices.SortFunc(peers[i].PodCIDRs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
}

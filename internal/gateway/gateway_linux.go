package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"sigs.k8s.io/knftables"
)

// NATTable is the nftables table (family ip) ovsnet owns.
const NATTable = "ovsnet"

func configureHost(ctx context.Context, cfg Config) error {
	if cfg.HostNetns == "" {
		return configureHere(ctx, cfg)
	}
	// The device lives where ovs-vswitchd runs; the namespace switch locks
	// the OS thread for the whole configuration, nft child included.
	return ns.WithNetNSPath(cfg.HostNetns, func(ns.NetNS) error { return configureHere(ctx, cfg) })
}

func configureHere(ctx context.Context, cfg Config) error {
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("gateway device %s: %w (ovs-vswitchd creates it for the internal port; is the agent in ovs-vswitchd's network namespace?)", cfg.Name, err)
	}
	if len(cfg.MAC) == 6 && link.Attrs().HardwareAddr.String() != cfg.MAC.String() {
		if err := netlink.LinkSetHardwareAddr(link, cfg.MAC); err != nil {
			return fmt.Errorf("set MAC of %s: %w", cfg.Name, err)
		}
	}
	if cfg.MTU > 0 && link.Attrs().MTU != cfg.MTU {
		if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", cfg.Name, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.GatewayIP.AsSlice(), Mask: net.CIDRMask(cfg.PodCIDR.Bits(), cfg.GatewayIP.BitLen())}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("set address %s on %s: %w", addr.IPNet, cfg.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", cfg.Name, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	if cfg.Masquerade {
		if err := ensureMasquerade(ctx, cfg); err != nil {
			return err
		}
	}
	return nil
}

// ensureMasquerade installs, replacing whatever ovsnet had there before:
//
//	table ip ovsnet {
//	    set cluster { type ipv4_addr; flags interval; }   # pod CIDRs of the cluster
//	    chain postrouting { type nat hook postrouting priority srcnat;
//	        ip saddr <podCIDR> ip daddr != @cluster masquerade } }
//
// or "snat to <node-ip>" when the node IP is configured. The set starts
// with this node's pod CIDR, the cluster CIDR, when known, and
// cfg.ExemptExtra (the other nodes' pod CIDRs, as far as the agent knows
// them); SetClusterCIDRs replaces the other nodes' as peers come and go.
// Both write the whole set in one transaction, so no prefix is ever briefly
// missing.
func ensureMasquerade(ctx context.Context, cfg Config) error {
	nft, err := cfg.NFT.get()
	if err != nil {
		return fmt.Errorf("nftables (install the nftables package): %w", err)
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("ovsnet pod network")})
	tx.Add(&knftables.Set{Name: ClusterSet, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("pod CIDRs of the cluster: pod traffic to them keeps its source")})
	tx.Flush(&knftables.Set{Name: ClusterSet})
	var extra []netip.Prefix
	if cfg.ExemptExtra != nil {
		extra = cfg.ExemptExtra()
	}
	for _, p := range mergePrefixes(append(seedPrefixes(cfg), extra...)) {
		tx.Add(&knftables.Element{Set: ClusterSet, Key: []string{p.String()}})
	}
	tx.Add(&knftables.Chain{
		Name:     "postrouting",
		Type:     knftables.PtrTo(knftables.NATType),
		Hook:     knftables.PtrTo(knftables.PostroutingHook),
		Priority: knftables.PtrTo(knftables.SNATPriority),
	})
	tx.Flush(&knftables.Chain{Name: "postrouting"})
	action := "masquerade"
	if cfg.NodeIP.IsValid() {
		action = "snat to " + cfg.NodeIP.String()
	}
	tx.Add(&knftables.Rule{
		Chain: "postrouting",
		Rule:  knftables.Concat("ip saddr", cfg.PodCIDR.String(), "ip daddr != @"+ClusterSet, action),
	})
	// The service proxy translates a Service address in prerouting, so
	// what the forward hook still sees addressed to one has no Service
	// behind it: refused here, it gets the answer a closed port gives,
	// instead of leaving through the default route, masqueraded, to
	// whatever answers there.
	tx.Add(&knftables.Chain{
		Name:     "forward",
		Type:     knftables.PtrTo(knftables.FilterType),
		Hook:     knftables.PtrTo(knftables.ForwardHook),
		Priority: knftables.PtrTo(knftables.FilterPriority),
	})
	tx.Flush(&knftables.Chain{Name: "forward"})
	for _, svc := range cfg.ServiceCIDRs {
		tx.Add(&knftables.Rule{Chain: "forward",
			Rule: knftables.Concat("ip saddr", cfg.PodCIDR.String(), "ip daddr", svc.Masked().String(), "meta l4proto tcp reject with tcp reset")})
		tx.Add(&knftables.Rule{Chain: "forward",
			Rule: knftables.Concat("ip saddr", cfg.PodCIDR.String(), "ip daddr", svc.Masked().String(), "reject")})
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("install masquerade rule for %s: %w", cfg.PodCIDR, err)
	}
	return nil
}

// ClusterSet is the nftables set of prefixes pod traffic is not
// masqueraded to.
const ClusterSet = "cluster"

func seedPrefixes(cfg Config) []netip.Prefix {
	out := []netip.Prefix{cfg.PodCIDR}
	if cfg.ClusterCIDR.IsValid() {
		out = append(out, cfg.ClusterCIDR)
	}
	return out
}

// SetClusterCIDRs replaces the prefixes pod traffic is not masqueraded to
// (in hostNetns; empty: the caller's): this node's pod CIDR and the cluster
// CIDR are always kept, others are the given ones. Overlapping prefixes are
// merged first (an interval set refuses overlaps).
func SetClusterCIDRs(ctx context.Context, cfg Config, prefixes []netip.Prefix) error {
	apply := func() error {
		nft, err := cfg.NFT.get()
		if err != nil {
			return fmt.Errorf("nftables (install the nftables package): %w", err)
		}
		tx := nft.NewTransaction()
		tx.Add(&knftables.Table{Comment: knftables.PtrTo("ovsnet pod network")})
		tx.Add(&knftables.Set{Name: ClusterSet, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		tx.Flush(&knftables.Set{Name: ClusterSet})
		for _, p := range mergePrefixes(append(seedPrefixes(cfg), prefixes...)) {
			tx.Add(&knftables.Element{Set: ClusterSet, Key: []string{p.String()}})
		}
		if err := nft.Run(ctx, tx); err != nil {
			return fmt.Errorf("set the cluster's pod CIDRs in nftables table %s: %w", NATTable, err)
		}
		return nil
	}
	if cfg.HostNetns == "" {
		return apply()
	}
	return ns.WithNetNSPath(cfg.HostNetns, func(ns.NetNS) error { return apply() })
}

// mergePrefixes drops prefixes contained in another one.
func mergePrefixes(in []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range in {
		p = p.Masked()
		covered := false
		for j, q := range in {
			q = q.Masked()
			if i != j && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q.Bits() < p.Bits() || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}

// NFT is a lazily made knftables handle of NATTable. A handle runs nft in
// the network namespace of its caller's thread, so one serves every
// namespace.
type NFT struct {
	mu  sync.Mutex
	nft knftables.Interface
}

// NewNFT returns a handle that is made on first use.
func NewNFT() *NFT { return &NFT{} }

func (n *NFT) get() (knftables.Interface, error) {
	if n == nil {
		return knftables.New(knftables.IPv4Family, NATTable)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nft == nil {
		nft, err := knftables.New(knftables.IPv4Family, NATTable)
		if err != nil {
			return nil, err
		}
		n.nft = nft
	}
	return n.nft, nil
}

// RemoveNAT deletes ovsnet's nftables table (uninstall).
func RemoveNAT(ctx context.Context) error {
	nft, err := knftables.New(knftables.IPv4Family, NATTable)
	if err != nil {
		return err
	}
	tx := nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
		return err
	}
	return nil
}

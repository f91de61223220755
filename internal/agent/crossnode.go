package agent

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/ovsnet/ovsnet/internal/crossnode"
	"github.com/ovsnet/ovsnet/internal/gateway"
	"github.com/ovsnet/ovsnet/internal/nodes"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// nodeAddress is this node's underlay address: --node-ip, else the Node's
// InternalIP in Kubernetes mode.
func (a *Agent) nodeAddress() netip.Addr {
	if ip := a.nodeIP(); ip.IsValid() {
		return ip
	}
	if a.cluster != nil {
		if ip, ok := a.cluster.NodeIP(); ok {
			return ip
		}
	}
	return netip.Addr{}
}

// podMTU is --mtu, or the uplink's MTU minus the traffic mode's overhead.
// An MTU that cannot cross the underlay (it would be black-holed: the
// userspace datapath drops an oversized frame without a word) is refused.
func (a *Agent) podMTU() (int, error) {
	mode := a.cfg.mode()
	up, err := crossnode.FindUplink(a.cfg.HostNetns, a.cfg.Uplink, a.nodeAddress())
	if err != nil {
		if a.cfg.Uplink != "" {
			return 0, fmt.Errorf("--uplink: %w", err)
		}
		if a.cfg.MTU != 0 {
			return a.cfg.MTU, nil
		}
		// No uplink to measure (a node without peers, a test namespace):
		// assume the Ethernet default on the underlay.
		mtu := podnet.DefaultMTU - mode.Overhead()
		a.log.Info("no uplink found to derive the pod MTU from; assuming a 1500-byte underlay",
			"traffic_mode", mode, "mtu", mtu, "why", err.Error())
		return mtu, nil
	}
	max := up.MTU - mode.Overhead()
	if a.cfg.MTU == 0 {
		a.log.Info("pod MTU derived from the uplink", "uplink", up.Name, "uplink_mtu", up.MTU, "traffic_mode", mode, "mtu", max)
		return max, nil
	}
	if a.cfg.MTU > max {
		return 0, fmt.Errorf("--mtu %d does not fit the underlay: uplink %s has MTU %d and %s takes %d bytes, so pods can use at most %d (larger packets would be dropped without notice); lower --mtu or leave it unset",
			a.cfg.MTU, up.Name, up.MTU, mode, mode.Overhead(), max)
	}
	return a.cfg.MTU, nil
}

// gatewayConfig is the gateway's configuration; a.network and a.mtu are
// set once, with the pod network, before anything reads them.
func (a *Agent) gatewayConfig() gateway.Config {
	var cluster netip.Prefix
	if a.cfg.ClusterCIDR != "" {
		cluster = netip.MustParsePrefix(a.cfg.ClusterCIDR)
	}
	svc, _ := a.cfg.serviceCIDRs() // validated at start
	return gateway.Config{
		Name: a.cfg.GatewayName, Bridge: a.cfg.Bridge, PodCIDR: a.network.PodCIDR,
		GatewayIP: a.network.GatewayIP, MAC: a.network.GatewayMAC, MTU: a.mtu,
		Masquerade: true, NodeIP: a.nodeIP(), ClusterCIDR: cluster, HostNetns: a.cfg.HostNetns,
		ExemptExtra: a.peerCIDRs, ServiceCIDRs: svc, NFT: a.nft,
		DB: a.db, Ports: a.ports, Logger: a.log.With("component", "gateway"),
	}
}

// newCrossnode builds the reconciler that reaches the other nodes; a.mu
// is held and a.network set.
func (a *Agent) newCrossnode() *crossnode.Reconciler {
	var src nodes.Source = nodes.Static{}
	switch {
	case a.cluster != nil:
		src = a.cluster.Peers()
	case a.cfg.PeersFile != "":
		src = nodes.NewFile(a.cfg.PeersFile, a.log.With("component", "peers"))
	}
	mode := a.cfg.mode()
	cfg := crossnode.Config{
		Mode: mode, Bridge: a.cfg.Bridge, Network: a.network, NodeIP: a.nodeAddress(),
		GatewayName: a.cfg.GatewayName, Source: src, DB: a.db, Ports: a.ports, Flows: a.flows,
		Host:   crossnode.LinuxHost{Netns: a.cfg.HostNetns, Gateway: a.gatewayConfig()},
		Logger: a.log.With("component", "crossnode"),
	}
	if mode.Encap() && a.cfg.DatapathType == "netdev" {
		cfg.PrepareUnderlay = func(ctx context.Context) error {
			return crossnode.EnsureUplinkBridge(ctx, crossnode.UplinkBridgeConfig{Bridge: a.cfg.UplinkBridge,
				Uplink: a.cfg.Uplink, NodeIP: a.nodeAddress(), Netns: a.cfg.HostNetns, DB: a.db,
				Logger: a.log.With("component", "uplink")})
		}
	}
	return crossnode.New(cfg)
}

// checkOffloads reads ovs-vswitchd's userspace-tso-enable (set before it
// starts, e.g. OVS_USERSPACE_TSO=yes for start-ovs.sh): with it pods keep
// their checksum offloads on the userspace datapath, which is 6-10x faster;
// but OVS 3.1 drops offloaded packets at tunnel push, so with a tunnel
// mode it is refused.
func (a *Agent) checkOffloads() error {
	root, ok, err := a.db.OpenVSwitch()
	if err != nil || !ok {
		return err
	}
	tso := root.OtherConfig["userspace-tso-enable"] == "true"
	a.tso.Store(tso && a.cfg.DatapathType == "netdev")
	if tso && a.cfg.DatapathType == "netdev" && a.cfg.mode().Encap() {
		return fmt.Errorf("ovs-vswitchd runs with other_config:userspace-tso-enable=true, and --traffic-mode is %s: OVS drops offloaded packets at tunnel push on the userspace datapath; unset it (and restart ovs-vswitchd) or use --traffic-mode noencap", a.cfg.TrafficMode)
	}
	return nil
}

// CrossNode is the reconciler that reaches the other nodes (nil until the
// pod network exists).
func (a *Agent) CrossNode() *crossnode.Reconciler {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cross
}

// peerCIDRs are the pod CIDRs of the peers the cross-node reconciler last
// applied.
func (a *Agent) peerCIDRs() []netip.Prefix {
	c := a.CrossNode()
	if c == nil {
		return nil
	}
	var out []netip.Prefix
	for _, p := range c.Status().Peers {
		out = append(out, p.PodCIDRs...)
	}
	return out
}

// Package gateway sets up the node's gateway into the pod network: an OVS
// internal port (ovsnet-gw0 by default) holding the pod CIDR's first address,
// through which the host reaches pods and pods reach the host and, masqueraded
// by nftables, everything beyond the node.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
)

// DefaultName is the gateway port's name.
const DefaultName = "ovsnet-gw0"

// Config describes the gateway.
type Config struct {
	Name      string
	Bridge    string
	PodCIDR   netip.Prefix
	GatewayIP netip.Addr
	MAC       net.HardwareAddr
	MTU       int
	// Masquerade SNATs pod traffic leaving the pod CIDR to the node's
	// address (nftables table "ip ovsnet").
	Masquerade bool
	// NodeIP, when valid, is the fixed source for that SNAT instead of the
	// outgoing interface's address.
	NodeIP netip.Addr
	// ClusterCIDR, when valid, is exempt from the masquerade beside the
	// node's own pod CIDR (and the other nodes' pod CIDRs, SetClusterCIDRs).
	ClusterCIDR netip.Prefix
	// ExemptExtra, if set, returns further prefixes exempt from the
	// masquerade (the other nodes' pod CIDRs).
	ExemptExtra func() []netip.Prefix
	// ServiceCIDRs are the cluster's Service address ranges. Pod traffic to
	// them that reaches the host untranslated (a port no Service has; no
	// service proxy) is refused there rather than routed off the node
	// (nftables chain "forward" of table "ip ovsnet").
	ServiceCIDRs []netip.Prefix
	// NFT is the nftables handle to use; nil makes one per call. Making
	// one runs nft twice (version and kernel probes), so a long-lived
	// caller keeps one: NewNFT.
	NFT *NFT
	// HostNetns is the namespace where ovs-vswitchd creates the device
	// (empty: the agent's own).
	HostNetns string
	DB        *ovsdb.Client
	Ports     *ports.Table
	Logger    *slog.Logger
}

// Gateway is the result of Ensure.
type Gateway struct {
	OFPort uint32
	IP     netip.Addr
	MAC    net.HardwareAddr
}

// Ensure creates the gateway port if missing, waits until OVS has allocated
// it, and configures the device, forwarding and NAT: EnsurePort, then
// ConfigureHost. It is idempotent.
func Ensure(ctx context.Context, cfg Config) (Gateway, error) {
	gw, err := EnsurePort(ctx, cfg)
	if err != nil {
		return Gateway{}, err
	}
	if err := ConfigureHost(ctx, cfg); err != nil {
		return Gateway{}, err
	}
	return gw, nil
}

// EnsurePort creates the gateway port if missing and waits until OVS has
// allocated it: all the gateway's flows need. It is idempotent, and cheap
// when the port exists (an OVSDB cache read): the agent calls it after
// every ovs-vswitchd (re)start, before the flow resync.
func EnsurePort(ctx context.Context, cfg Config) (Gateway, error) {
	cfg = cfg.withDefaults()
	if !cfg.PodCIDR.Contains(cfg.GatewayIP) {
		return Gateway{}, fmt.Errorf("gateway %s is not in pod CIDR %s", cfg.GatewayIP, cfg.PodCIDR)
	}
	iface, exists, err := cfg.DB.Interface(cfg.Name)
	if err != nil {
		return Gateway{}, err
	}
	var ref ports.Ref
	if exists {
		ref = ports.Existing(cfg.Name, iface.UUID)
	} else {
		ref = cfg.Ports.Expect(cfg.Name)
		added, err := cfg.DB.AddPort(ctx, cfg.Bridge, ovsdb.PortSpec{
			Name:        cfg.Name,
			Type:        "internal",
			MAC:         cfg.MAC.String(),
			ExternalIDs: map[string]string{"ovsnet.io/role": "gateway"},
		})
		if err != nil {
			return Gateway{}, fmt.Errorf("create gateway port %s: %w", cfg.Name, err)
		}
		ref.InterfaceUUID = added.InterfaceUUID
	}
	// Internal ports never become LIVE: allocated is ready.
	r, err := cfg.Ports.WaitPort(ctx, ref, ports.Allocated)
	if err != nil {
		return Gateway{}, fmt.Errorf("gateway port %s: %w", cfg.Name, err)
	}
	cfg.Logger.Debug("gateway port allocated", "port", cfg.Name, "ofport", r.OFPort)
	return Gateway{OFPort: r.OFPort, IP: cfg.GatewayIP, MAC: cfg.MAC}, nil
}

// ConfigureHost gives the gateway device its MAC, MTU and address, brings it
// up, enables forwarding and installs the NAT rule. It is idempotent. Pod to
// pod traffic does not depend on it, so after an ovs-vswitchd restart the
// agent runs it after the flows are back: on OVS 3.1's userspace datapath
// the internal port's tap device outlives ovs-vswitchd with its address
// (only its carrier drops), and nftables is kernel state that a vswitchd
// restart does not touch, so this mostly confirms what is there.
func ConfigureHost(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if !cfg.PodCIDR.Contains(cfg.GatewayIP) {
		return fmt.Errorf("gateway %s is not in pod CIDR %s", cfg.GatewayIP, cfg.PodCIDR)
	}
	if err := configureHost(ctx, cfg); err != nil {
		return err
	}
	cfg.Logger.Info("gateway ready", "port", cfg.Name, "ip", cfg.GatewayIP, "mac", cfg.MAC.String())
	return nil
}

func (cfg Config) withDefaults() Config {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

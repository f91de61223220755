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
// it, and configures the device, forwarding and NAT. It is idempotent: the
// agent calls it after every ovs-vswitchd (re)start, which recreates internal
// devices without their addresses.
func Ensure(ctx context.Context, cfg Config) (Gateway, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
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
	if err := configureHost(ctx, cfg); err != nil {
		return Gateway{}, err
	}
	cfg.Logger.Info("gateway ready", "port", cfg.Name, "ofport", r.OFPort, "ip", cfg.GatewayIP, "mac", cfg.MAC.String())
	return Gateway{OFPort: r.OFPort, IP: cfg.GatewayIP, MAC: cfg.MAC}, nil
}

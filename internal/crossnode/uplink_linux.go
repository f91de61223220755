package crossnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// UplinkDB is the part of the OVSDB client the uplink bridge needs.
type UplinkDB interface {
	EnsureBridge(ctx context.Context, spec ovsdb.BridgeSpec) (int, error)
	Bridge(name string) (vswitch.Bridge, bool, error)
	Port(name string) (vswitch.Port, bool, error)
	AddPort(ctx context.Context, bridge string, spec ovsdb.PortSpec) (ovsdb.AddedPort, error)
}

// UplinkBridgeConfig describes the uplink bridge of the userspace datapath.
type UplinkBridgeConfig struct {
	// Bridge is the OVS bridge that takes the node's address (br-phy).
	Bridge string
	// Uplink is the interface holding the node's address today; empty:
	// the one holding NodeIP.
	Uplink string
	NodeIP netip.Addr
	// Netns is where ovs-vswitchd runs (empty: the agent's namespace).
	Netns  string
	DB     UplinkDB
	Logger *slog.Logger
}

// keyUplink records, on the uplink bridge, which interface it took the
// node's address from.
const keyUplink = "ovsnet.io/uplink"

// EnsureUplinkBridge prepares the underlay for tunnels on the userspace
// datapath, where ovs-vswitchd encapsulates in userspace and sends the
// outer packet out of the OVS bridge whose address routes to the peer: a
// netdev bridge in standalone mode (OVS's own switching) with the uplink as
// its port, and the node's addresses and routes moved from the uplink to
// the bridge's internal port, whose MAC is the uplink's. ovs-vswitchd then
// learns the route and the peers' MACs from the kernel by itself. It is
// idempotent: once the address is on the bridge it only checks the port.
// The kernel datapath needs none of this (the kernel routes the outer
// packets itself).
func EnsureUplinkBridge(ctx context.Context, cfg UplinkBridgeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	up, err := FindUplink(cfg.Netns, cfg.Uplink, cfg.NodeIP)
	if err != nil && cfg.Uplink != "" {
		return err
	}
	br, haveBridge, err2 := cfg.DB.Bridge(cfg.Bridge)
	if err2 != nil {
		return err2
	}
	if err != nil || up.Name == cfg.Bridge {
		// Already moved: the address is on the bridge (or the uplink is
		// gone); the bridge says which interface it came from.
		if !haveBridge || br.ExternalIDs[keyUplink] == "" {
			return fmt.Errorf("uplink bridge %s: %w (give --uplink)", cfg.Bridge, err)
		}
		up.Name = br.ExternalIDs[keyUplink]
		if _, ok, _ := cfg.DB.Port(up.Name); ok {
			return nil
		}
		if up, err = FindUplink(cfg.Netns, up.Name, netip.Addr{}); err != nil {
			return err
		}
	}
	if _, err := cfg.DB.EnsureBridge(ctx, ovsdb.BridgeSpec{Name: cfg.Bridge, DatapathType: "netdev",
		FailMode:    vswitch.BridgeFailModeStandalone,
		ExternalIDs: map[string]string{"ovsnet.io/owner": "ovsnet-agent", keyUplink: up.Name},
		OtherConfig: map[string]string{"hwaddr": up.MAC.String()}}); err != nil {
		return fmt.Errorf("uplink bridge %s: %w", cfg.Bridge, err)
	}
	if _, ok, _ := cfg.DB.Port(up.Name); !ok {
		if _, err := cfg.DB.AddPort(ctx, cfg.Bridge, ovsdb.PortSpec{Name: up.Name,
			ExternalIDs: map[string]string{"ovsnet.io/role": "uplink"}}); err != nil && !errors.Is(err, ovsdb.ErrPortExists) {
			return fmt.Errorf("add uplink %s to %s: %w", up.Name, cfg.Bridge, err)
		}
	}
	return LinuxHost{Netns: cfg.Netns}.in(func() error {
		if err := moveAddresses(ctx, up, cfg.Bridge, log); err != nil {
			return err
		}
		return silenceUplink(ctx, up.Name)
	})
}

// UplinkTable is the nftables table (family netdev) that keeps the
// kernel's stack off the uplink.
const UplinkTable = "ovsnet-uplink"

// silenceUplink drops every frame the uplink receives at its ingress hook,
// which runs after the packet sockets OVS reads the uplink through: the
// node's address (and the uplink's MAC) now belong to the uplink bridge,
// and the kernel, which would otherwise answer on the uplink too (weak host
// model), would duplicate every packet for the node and answer the tunnels'
// UDP with "port unreachable".
func silenceUplink(ctx context.Context, uplink string) error {
	nft, err := knftables.New(knftables.NetDevFamily, UplinkTable)
	if err != nil {
		return fmt.Errorf("nftables (install the nftables package): %w", err)
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("ovsnet: the uplink belongs to the OVS uplink bridge")})
	tx.Add(&knftables.Chain{Name: "ingress", Type: knftables.PtrTo(knftables.FilterType), Hook: knftables.PtrTo(knftables.IngressHook),
		Device: knftables.PtrTo(uplink), Priority: knftables.PtrTo(knftables.BaseChainPriority("-500"))})
	tx.Flush(&knftables.Chain{Name: "ingress"})
	tx.Add(&knftables.Rule{Chain: "ingress", Rule: "drop"})
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("keep the kernel off uplink %s: %w", uplink, err)
	}
	return nil
}

// moveAddresses moves the IPv4 addresses and routes of the uplink to the
// bridge device once ovs-vswitchd has created it.
func moveAddresses(ctx context.Context, up Uplink, bridge string, log *slog.Logger) error {
	var brLink netlink.Link
	// ovs-vswitchd creates the device when it applies the bridge: nothing
	// to watch from here but the device itself.
	for pause := time.Millisecond; ; pause = min(pause*2, 100*time.Millisecond) {
		l, err := netlink.LinkByName(bridge)
		if err == nil {
			brLink = l
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("uplink bridge device %s never appeared (is ovs-vswitchd running?): %w", bridge, ctx.Err())
		case <-time.After(pause):
		}
	}
	// ovs-vswitchd gives the device the uplink's MAC (the bridge's
	// other_config:hwaddr) by bringing the tap down, setting the address
	// and bringing it up again, and the kernel drops every route through a
	// device that goes down: a route moved before that would be lost (the
	// node's default route among them, cutting it off from the API server).
	// So the move waits until the device has the uplink's MAC.
	for pause := time.Millisecond; !bytes.Equal(brLink.Attrs().HardwareAddr, up.MAC); pause = min(pause*2, 100*time.Millisecond) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("uplink bridge device %s never got the MAC %s of %s from ovs-vswitchd (has %s): %w",
				bridge, up.MAC, up.Name, brLink.Attrs().HardwareAddr, ctx.Err())
		case <-time.After(pause):
		}
		l, err := netlink.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("uplink bridge device %s: %w", bridge, err)
		}
		brLink = l
	}
	upLink, err := netlink.LinkByName(up.Name)
	if err != nil {
		return fmt.Errorf("uplink %s: %w", up.Name, err)
	}
	addrs, err := netlink.AddrList(upLink, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", up.Name, err)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: upLink.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("routes of %s: %w", up.Name, err)
	}
	if brLink.Attrs().MTU != up.MTU {
		if err := netlink.LinkSetMTU(brLink, up.MTU); err != nil {
			return fmt.Errorf("MTU of %s: %w", bridge, err)
		}
	}
	if err := netlink.LinkSetUp(brLink); err != nil {
		return fmt.Errorf("bring %s up: %w", bridge, err)
	}
	// Addresses first, then the routes, then the addresses leave the
	// uplink: a route is replaced in place (same destination, table and
	// metric, the bridge as its device), so the node is never without it,
	// while removing the uplink's last address would flush every route
	// still on the uplink at once (the default route among them) until they
	// were added again.
	for _, a := range addrs {
		na := &netlink.Addr{IPNet: a.IPNet, Broadcast: a.Broadcast}
		if err := netlink.AddrReplace(brLink, na); err != nil {
			return fmt.Errorf("move address %s to %s: %w", a.IPNet, bridge, err)
		}
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue // the connected route came with the address
		}
		nr := r
		nr.LinkIndex = brLink.Attrs().Index
		if err := netlink.RouteReplace(&nr); err != nil {
			return fmt.Errorf("move route %s to %s: %w", r.Dst, bridge, err)
		}
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(upLink, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %s from %s: %w", a.IPNet, up.Name, err)
		}
		log.Info("moved the node address to the uplink bridge (userspace datapath tunnels)", "address", a.IPNet.String(),
			"from", up.Name, "to", bridge)
	}
	return nil
}

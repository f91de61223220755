package crossnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ovsnet/ovsnet/internal/gateway"
)

// LinuxHost is the Host of a Linux node: routes with netlink, masquerade
// exemptions in ovsnet's nftables table, both in Netns (empty: the agent's
// own namespace).
type LinuxHost struct {
	Netns string
	// Gateway is the gateway's configuration (pod CIDR, cluster CIDR,
	// namespace) the exemptions extend.
	Gateway gateway.Config
}

var _ Host = LinuxHost{}

func (h LinuxHost) in(fn func() error) error {
	if h.Netns == "" {
		return fn()
	}
	return ns.WithNetNSPath(h.Netns, func(ns.NetNS) error { return fn() })
}

// SetExempt implements Host.
func (h LinuxHost) SetExempt(ctx context.Context, prefixes []netip.Prefix) error {
	cfg := h.Gateway
	cfg.HostNetns = h.Netns
	return gateway.SetClusterCIDRs(ctx, cfg, prefixes)
}

// SyncRoutes implements Host.
func (h LinuxHost) SyncRoutes(_ context.Context, routes []Route) error {
	return h.in(func() error { return syncRoutes(routes) })
}

func syncRoutes(routes []Route) error {
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Protocol: netlink.RouteProtocol(RouteProtocol), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list ovsnet's routes: %w", err)
	}
	want := map[netip.Prefix]*netlink.Route{}
	for _, r := range routes {
		nr, err := toNetlink(r)
		if err != nil {
			return err
		}
		want[r.Dst] = nr
	}
	var errs []error
	for i := range have {
		cur := &have[i]
		dst := prefixOf(cur.Dst)
		if w, ok := want[dst]; ok && sameRoute(cur, w) {
			delete(want, dst)
			continue
		}
		if _, keep := want[dst]; keep {
			continue // replaced below
		}
		if err := netlink.RouteDel(cur); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete stale route %s via %s: %w", cur.Dst, cur.Gw, err))
		}
	}
	for _, dst := range slices.SortedFunc(func(yield func(netip.Prefix) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) {
		if err := netlink.RouteReplace(want[dst]); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", dst, want[dst].Gw, err))
		}
	}
	return errors.Join(errs...)
}

func toNetlink(r Route) (*netlink.Route, error) {
	nr := &netlink.Route{
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		Gw:       r.Via.AsSlice(),
		Protocol: netlink.RouteProtocol(RouteProtocol),
		Table:    unix.RT_TABLE_MAIN,
	}
	if r.Dev != "" {
		link, err := netlink.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("route %s: device %s: %w", r.Dst, r.Dev, err)
		}
		nr.LinkIndex = link.Attrs().Index
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr, nil
}

func sameRoute(a, b *netlink.Route) bool {
	if !a.Gw.Equal(b.Gw) || (b.LinkIndex != 0 && a.LinkIndex != b.LinkIndex) {
		return false
	}
	return a.Flags&int(netlink.FLAG_ONLINK) == b.Flags&int(netlink.FLAG_ONLINK)
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(n.IP.To4())
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}

// Uplink is the interface that carries the node's address.
type Uplink struct {
	Name string
	MTU  int
	MAC  net.HardwareAddr
}

// FindUplink returns the interface named name or, with name empty, the one
// holding addr, in netns (empty: the agent's own namespace).
func FindUplink(netns, name string, addr netip.Addr) (Uplink, error) {
	var up Uplink
	err := LinuxHost{Netns: netns}.in(func() error {
		var link netlink.Link
		var err error
		if name != "" {
			if link, err = netlink.LinkByName(name); err != nil {
				return fmt.Errorf("uplink %s: %w", name, err)
			}
		} else {
			if !addr.IsValid() {
				return errors.New("neither an uplink interface nor the node's address is known")
			}
			addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
			if err != nil {
				return fmt.Errorf("list addresses: %w", err)
			}
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
					if link, err = netlink.LinkByIndex(a.LinkIndex); err != nil {
						return fmt.Errorf("interface of %s: %w", addr, err)
					}
					break
				}
			}
			if link == nil {
				return fmt.Errorf("no interface holds the node address %s", addr)
			}
		}
		up = Uplink{Name: link.Attrs().Name, MTU: link.Attrs().MTU, MAC: link.Attrs().HardwareAddr}
		return nil
	})
	return up, err
}

// Package podnet plumbs a pod into the node's network: it creates the veth
// pair whose pod end lives in the pod's network namespace, configures that end
// (MAC, MTU, address, default route, offloads) and brings the host end up so
// the agent can attach it to the OVS bridge. It knows nothing of OVS, IPAM or
// Kubernetes; the agent calls it while serving CNI ADD, DEL and CHECK.
//
// Callers serialise operations per sandbox (per pod network namespace);
// operations on different sandboxes may run concurrently.
package podnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// DefaultMTU is used for both veth ends when Config.MTU is zero.
const DefaultMTU = 1500

// hostIfPrefix starts every host-side interface name derived by HostIfName, so
// an operator can tell ovsnet's pod ports apart in `ip link` output.
const hostIfPrefix = "ovsn"

// maxIfNameLen is the longest Linux interface name (IFNAMSIZ minus the NUL).
const maxIfNameLen = 15

// Plumber sets up, checks and tears down a pod's veth pair. Implementations
// are safe for concurrent use on different sandboxes.
type Plumber interface {
	// Setup creates (or, when it already exists and is ours, converges) the
	// pod's veth pair. It is idempotent: calling it again with the same
	// Config returns the same interface.
	Setup(ctx context.Context, cfg Config) (*Result, error)
	// Check reports every way the pod's interface differs from cfg, nil when
	// it matches. A mismatch is a *CheckError.
	Check(ctx context.Context, cfg Config) error
	// Teardown removes the pod's veth pair: the interface ifName in the pod
	// namespace only if it is a veth paired with hostIfName in the host
	// namespace (anything else of that name is not ovsnet's and stays), and
	// otherwise a host veth hostIfName whose pod end is unreachable. It
	// forgives like CNI DEL must: a vanished network namespace or a missing
	// interface is success, so it can be repeated. The host namespace is the
	// one given by WithHostNetns, else the caller's.
	Teardown(ctx context.Context, netnsPath, ifName, hostIfName string) error
}

// Config describes one pod interface.
type Config struct {
	// NetnsPath is the pod's network namespace (CNI_NETNS), for example
	// /var/run/netns/cni-1234.
	NetnsPath string
	// IfName is the interface name inside the pod (CNI_IFNAME), e.g. eth0.
	IfName string
	// HostIfName is the name of the host end; see HostIfName for a stable
	// choice.
	HostIfName string
	// MAC of the pod interface. Empty means MACFromIP(Address.Addr()), so a
	// pod that is recreated with the same IP keeps its MAC and neighbours'
	// ARP caches stay valid.
	MAC net.HardwareAddr
	// MTU of both veth ends; zero means DefaultMTU.
	MTU int
	// Address is the pod's address with the prefix length of its route to
	// the local subnet, e.g. 10.244.0.5/24 (or /32 for point-to-point).
	Address netip.Prefix
	// Gateway is the next hop of the pod's default route. The route is
	// installed on-link, so the gateway need not lie inside Address.
	Gateway netip.Addr
	// DisableTxChecksumOffload turns TX checksum offload off on the pod end.
	// Set it for OVS's userspace (netdev) datapath: it does not complete the
	// partial checksums a veth hands over, so TCP between pods fails.
	DisableTxChecksumOffload bool
	// QuietHostEnd keeps the host's kernel from answering ARP on the host
	// end. Set it for the userspace datapath, where the kernel sees the
	// host end's frames beside OVS.
	QuietHostEnd bool
	// HostNetns is the network namespace (a path) that holds the host end,
	// where ovs-vswitchd runs. Empty means the plumber's default: the one
	// given by WithHostNetns, else the caller's namespace.
	HostNetns string
}

// Result is what Setup built, in the terms a CNI result needs.
type Result struct {
	HostIfName string
	HostMAC    net.HardwareAddr
	PodIfName  string
	PodMAC     net.HardwareAddr
	// PodIfIndex is the pod interface's index inside the pod namespace.
	PodIfIndex int
	// Sandbox is the pod's network namespace path (the CNI interface's
	// "sandbox").
	Sandbox string
	MTU     int
	Address netip.Prefix
	Gateway netip.Addr
}

// Option adjusts a Plumber built by New.
type Option func(*options)

type options struct {
	hostNetns string
}

// WithHostNetns makes path the default namespace of host ends: Setup and
// Check use it when Config.HostNetns is empty, and Teardown always. ovsnet
// uses it when ovs-vswitchd runs in a network namespace of its own.
func WithHostNetns(path string) Option {
	return func(o *options) { o.hostNetns = path }
}

// HostIfName derives the host-side interface name of a pod's veth from the
// container ID and the pod's interface name: "ovsn" followed by the first 11
// hex digits of SHA-256(containerID NUL ifName), 15 bytes in all, the Linux
// maximum. The same sandbox always gets the same name, which makes Setup and
// Teardown idempotent across agent restarts; 44 bits of hash make a collision
// between the pods of one node vanishingly unlikely.
func HostIfName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifName))
	return (hostIfPrefix + hex.EncodeToString(sum[:]))[:maxIfNameLen]
}

// MACFromIP derives a pod MAC from its IP: 0a:58 followed by the four bytes of
// the IPv4 address (for IPv6, its last four bytes). 0x0a has the locally
// administered bit set and the multicast bit clear, so the result never
// clashes with a vendor-assigned MAC, and the same IP always maps to the same
// MAC, so a restarted pod keeps it. It returns nil for an invalid address.
func MACFromIP(ip netip.Addr) net.HardwareAddr {
	if !ip.IsValid() {
		return nil
	}
	b := ip.Unmap().AsSlice()
	tail := b[len(b)-4:]
	return net.HardwareAddr{0x0a, 0x58, tail[0], tail[1], tail[2], tail[3]}
}

// normalize validates cfg and fills in the defaults (MTU, MAC) so the rest
// of the package works with the values that are actually applied.
func (cfg Config) normalize() (Config, error) {
	var errs []error
	if cfg.NetnsPath == "" {
		errs = append(errs, errors.New("pod network namespace path is empty (CNI_NETNS must be set)"))
	}
	if err := validIfName(cfg.IfName); err != nil {
		errs = append(errs, fmt.Errorf("pod interface name: %w", err))
	}
	if err := validIfName(cfg.HostIfName); err != nil {
		errs = append(errs, fmt.Errorf("host interface name: %w", err))
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 68 || cfg.MTU > 65535 {
		errs = append(errs, fmt.Errorf("MTU %d is outside 68..65535", cfg.MTU))
	}
	switch {
	case !cfg.Address.IsValid():
		errs = append(errs, errors.New("pod address is missing or invalid (want e.g. 10.244.0.5/24)"))
	case cfg.Address.Addr().Is4In6():
		errs = append(errs, fmt.Errorf("pod address %s is an IPv4-mapped IPv6 address; give the IPv4 address", cfg.Address))
	case !cfg.Gateway.IsValid():
		errs = append(errs, errors.New("gateway is missing or invalid"))
	case cfg.Address.Addr().Is4() != cfg.Gateway.Unmap().Is4():
		errs = append(errs, fmt.Errorf("gateway %s and pod address %s are of different IP families", cfg.Gateway, cfg.Address))
	case cfg.Address.Addr() == cfg.Gateway.Unmap():
		errs = append(errs, fmt.Errorf("gateway %s equals the pod address", cfg.Gateway))
	}
	// The route is bound to the pod interface, so an IPv6 zone adds nothing.
	cfg.Gateway = cfg.Gateway.Unmap().WithZone("")
	if len(cfg.MAC) == 0 {
		cfg.MAC = MACFromIP(cfg.Address.Addr())
	} else if len(cfg.MAC) != 6 || cfg.MAC[0]&1 == 1 {
		errs = append(errs, fmt.Errorf("MAC %s is not a 6-byte unicast Ethernet address", cfg.MAC))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("invalid pod interface config: %w", err)
	}
	return cfg, nil
}

// validIfName applies the kernel's rules for interface names.
func validIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("%q is longer than %d bytes", name, maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f\x00"):
		return fmt.Errorf("%q contains '/', ':', NUL or whitespace", name)
	}
	return nil
}

// CheckError lists every way a pod's interface differs from its Config.
type CheckError struct {
	Problems []string
}

func (e *CheckError) Error() string {
	return strings.Join(e.Problems, "; ")
}

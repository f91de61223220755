package podnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// New returns the Linux Plumber. log may be nil.
func New(log *slog.Logger, opts ...Option) Plumber {
	return &plumber{log: discardIfNil(log), opts: buildOptions(opts)}
}

func buildOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

func discardIfNil(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

type plumber struct {
	log  *slog.Logger
	opts options
}

// session holds the two namespaces one operation works in.
type session struct {
	pod  *nsConn
	host *nsConn
}

func (s *session) close() {
	s.pod.close()
	s.host.close()
}

// podErr wraps err with the pod interface, its namespace and the step that
// failed, the context every message from this package carries.
func podErr(cfg Config, step string, err error) error {
	if errors.Is(err, unix.EPERM) {
		err = fmt.Errorf("%w (the agent needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN)", err)
	}
	return fmt.Errorf("pod interface %s in %s: %s: %w", cfg.IfName, cfg.NetnsPath, step, err)
}

func (p *plumber) hostNetns(cfg Config) string {
	if cfg.HostNetns != "" {
		return cfg.HostNetns
	}
	return p.opts.hostNetns
}

// open enters nothing for longer than it takes to create the sockets; every
// later netlink call goes through those sockets from the caller's thread.
func (p *plumber) open(cfg Config) (*session, error) {
	pod, err := openNS(cfg.NetnsPath, cfg.DisableTxChecksumOffload)
	if err != nil {
		if nsGone(err) {
			return nil, podErr(cfg, "open the pod network namespace", fmt.Errorf("%w (is the sandbox still running?)", err))
		}
		return nil, podErr(cfg, "open the pod network namespace", err)
	}
	host, err := openNS(p.hostNetns(cfg), false)
	if err != nil {
		pod.close()
		return nil, podErr(cfg, "open the host network namespace "+p.hostNetns(cfg), err)
	}
	s := &session{pod: pod, host: host}
	same, err := sameNS(pod, host)
	if err != nil {
		s.close()
		return nil, podErr(cfg, "compare the pod and host network namespaces", err)
	}
	if same {
		s.close()
		return nil, podErr(cfg, "compare the pod and host network namespaces",
			fmt.Errorf("the pod network namespace is %s; the runtime must give the pod a namespace of its own", host.name))
	}
	return s, nil
}

// Setup implements Plumber.
func (p *plumber) Setup(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, podErr(cfg, "set up", err)
	}
	s, err := p.open(cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()

	podLink, created, err := p.ensureVeth(ctx, s, cfg)
	if err != nil {
		return nil, err
	}
	res, err := p.configure(ctx, s, cfg, podLink)
	if err != nil {
		if created {
			// A half-configured pair must not survive a failed ADD: the
			// retry would take it for ours and the runtime may never send
			// DEL for an ADD that failed.
			if derr := s.pod.nl.LinkDel(podLink); derr != nil && !isLinkNotFound(derr) {
				p.log.Warn("could not remove the veth pair after a failed setup; CNI DEL will remove it",
					"netns", cfg.NetnsPath, "ifname", cfg.IfName, "hostIfname", cfg.HostIfName, "error", derr)
			}
		}
		return nil, err
	}
	return res, nil
}

// ensureVeth returns the pod end of the pair, creating the pair unless an
// earlier Setup for this sandbox already did. created says which.
func (p *plumber) ensureVeth(ctx context.Context, s *session, cfg Config) (netlink.Link, bool, error) {
	podLink, err := lookupLink(s.pod.nl, cfg.IfName)
	if err != nil {
		return nil, false, podErr(cfg, "look up the pod interface", err)
	}
	hostLink, err := lookupLink(s.host.nl, cfg.HostIfName)
	if err != nil {
		return nil, false, podErr(cfg, "look up host interface "+cfg.HostIfName+" in "+s.host.name, err)
	}
	if podLink != nil {
		why, err := p.notOurPair(s, podLink, hostLink, cfg)
		if err != nil {
			return nil, false, podErr(cfg, "inspect the existing pod interface", err)
		}
		if why != "" {
			return nil, false, podErr(cfg, "create the veth pair",
				fmt.Errorf("an interface %s already exists in the pod and %s; run CNI DEL for this container (or delete the interface) and retry", cfg.IfName, why))
		}
		p.log.Debug("pod interface exists from an earlier setup; converging it",
			"netns", cfg.NetnsPath, "ifname", cfg.IfName, "hostIfname", cfg.HostIfName)
		return podLink, false, nil
	}
	if hostLink != nil {
		if hostLink.Type() != "veth" {
			return nil, false, podErr(cfg, "create the veth pair",
				fmt.Errorf("host interface %s in %s exists and is a %s, not a veth, so ovsnet leaves it alone; remove or rename it", cfg.HostIfName, s.host.name, hostLink.Type()))
		}
		// Its pod end is gone (or was never moved into this pod), so it is
		// left over from an attempt that crashed midway.
		p.log.Warn("removing stale host veth left by an earlier setup",
			"netns", cfg.NetnsPath, "ifname", cfg.IfName, "hostIfname", cfg.HostIfName, "hostNetns", s.host.name)
		if err := s.host.nl.LinkDel(hostLink); err != nil && !isLinkNotFound(err) {
			return nil, false, podErr(cfg, "remove stale host veth "+cfg.HostIfName, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, podErr(cfg, "create the veth pair", err)
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = cfg.HostIfName
	attrs.MTU = cfg.MTU
	veth := netlink.NewVeth(attrs)
	veth.PeerName = cfg.IfName
	veth.PeerMTU = uint32(cfg.MTU)
	veth.PeerHardwareAddr = cfg.MAC
	// Creating the peer directly in the pod's namespace is about ten times
	// faster than creating it here and moving it there afterwards.
	veth.PeerNamespace = netlink.NsFd(s.pod.fd())
	if err := s.host.nl.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%w: %s appeared in %s or %s in the pod meanwhile; is another setup for this container running?", err, cfg.HostIfName, s.host.name, cfg.IfName)
		}
		return nil, false, podErr(cfg, "create veth pair with host end "+cfg.HostIfName+" in "+s.host.name, err)
	}
	podLink, err = lookupLink(s.pod.nl, cfg.IfName)
	if err == nil && podLink == nil {
		err = errors.New("it is missing right after creation; something else removed it")
	}
	if err != nil {
		_ = s.host.nl.LinkDel(veth)
		return nil, false, podErr(cfg, "look up the new pod interface", err)
	}
	p.log.Debug("created veth pair", "netns", cfg.NetnsPath, "ifname", cfg.IfName,
		"hostIfname", cfg.HostIfName, "hostNetns", s.host.name)
	return podLink, true, nil
}

// notOurPair explains why podLink is not the pod end of a veth whose host end
// is hostLink, or returns "" when it is.
func (p *plumber) notOurPair(s *session, podLink, hostLink netlink.Link, cfg Config) (string, error) {
	pa := podLink.Attrs()
	switch {
	case podLink.Type() != "veth":
		return fmt.Sprintf("is a %s, not a veth", podLink.Type()), nil
	case hostLink == nil:
		return fmt.Sprintf("is not paired with host interface %s in %s (no such interface there)", cfg.HostIfName, s.host.name), nil
	case hostLink.Type() != "veth":
		return fmt.Sprintf("is not paired with host interface %s in %s, which is a %s", cfg.HostIfName, s.host.name, hostLink.Type()), nil
	}
	ha := hostLink.Attrs()
	if pa.ParentIndex != ha.Index || ha.ParentIndex != pa.Index {
		return fmt.Sprintf("is paired with another interface than host interface %s in %s", cfg.HostIfName, s.host.name), nil
	}
	// Interface indexes are per namespace, so also make sure the peer the
	// pod end points at lives in the host namespace and not in some other
	// one that happens to reuse the index.
	hostID, err := s.pod.nl.GetNetNsIdByFd(s.host.fd())
	if err != nil {
		return "", fmt.Errorf("get the id of %s as seen from the pod: %w", s.host.name, err)
	}
	if hostID < 0 || hostID != pa.NetNsID {
		return fmt.Sprintf("is paired with an interface in another namespace than %s", s.host.name), nil
	}
	return "", nil
}

// configure brings the pair to cfg. Every step compares before it changes, so
// running it on an already configured pair changes nothing.
func (p *plumber) configure(ctx context.Context, s *session, cfg Config, podLink netlink.Link) (*Result, error) {
	pa := podLink.Attrs()
	if !bytes.Equal(pa.HardwareAddr, cfg.MAC) {
		if err := s.pod.nl.LinkSetHardwareAddr(podLink, cfg.MAC); err != nil {
			return nil, podErr(cfg, "set MAC "+cfg.MAC.String(), err)
		}
	}
	if pa.MTU != cfg.MTU {
		if err := s.pod.nl.LinkSetMTU(podLink, cfg.MTU); err != nil {
			return nil, podErr(cfg, fmt.Sprintf("set MTU %d", cfg.MTU), err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, podErr(cfg, "configure", err)
	}
	if err := p.ensureAddress(s, cfg, podLink); err != nil {
		return nil, err
	}
	lo, err := lookupLink(s.pod.nl, "lo")
	if err == nil && lo == nil {
		err = errors.New("the namespace has no loopback interface")
	}
	if err != nil {
		return nil, podErr(cfg, "look up lo", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := s.pod.nl.LinkSetUp(lo); err != nil {
			return nil, podErr(cfg, "bring lo up", err)
		}
	}
	// The link must be up before the on-link route: the kernel refuses an
	// on-link next hop on a device that is down.
	if pa.Flags&net.FlagUp == 0 {
		if err := s.pod.nl.LinkSetUp(podLink); err != nil {
			return nil, podErr(cfg, "bring the interface up", err)
		}
	}
	if err := s.pod.nl.RouteReplace(defaultRoute(cfg, pa.Index)); err != nil {
		return nil, podErr(cfg, "install default route via "+cfg.Gateway.String(), err)
	}
	if cfg.DisableTxChecksumOffload {
		if err := disableTxChecksum(s.pod.ethtoolFD, cfg.IfName); err != nil {
			return nil, podErr(cfg, "configure offloads", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, podErr(cfg, "configure", err)
	}

	hostLink, err := lookupLink(s.host.nl, cfg.HostIfName)
	if err == nil && hostLink == nil {
		err = fmt.Errorf("host interface %s vanished from %s during setup", cfg.HostIfName, s.host.name)
	}
	if err != nil {
		return nil, podErr(cfg, "look up host interface "+cfg.HostIfName, err)
	}
	ha := hostLink.Attrs()
	if cfg.QuietHostEnd {
		if err := p.quietHostEnd(cfg); err != nil {
			return nil, podErr(cfg, "silence host interface "+cfg.HostIfName, err)
		}
	}
	if ha.MTU != cfg.MTU {
		if err := s.host.nl.LinkSetMTU(hostLink, cfg.MTU); err != nil {
			return nil, podErr(cfg, fmt.Sprintf("set MTU %d on host interface %s", cfg.MTU, cfg.HostIfName), err)
		}
	}
	if ha.Flags&net.FlagUp == 0 {
		if err := s.host.nl.LinkSetUp(hostLink); err != nil {
			return nil, podErr(cfg, "bring host interface "+cfg.HostIfName+" up", err)
		}
	}
	return &Result{
		HostIfName: cfg.HostIfName,
		HostMAC:    ha.HardwareAddr,
		PodIfName:  cfg.IfName,
		PodMAC:     slices.Clone(cfg.MAC),
		PodIfIndex: pa.Index,
		Sandbox:    cfg.NetnsPath,
		MTU:        cfg.MTU,
		Address:    cfg.Address,
		Gateway:    cfg.Gateway,
	}, nil
}

// ensureAddress leaves exactly cfg.Address as the interface's global address
// of its family. Link-local addresses the kernel adds itself stay.
func (p *plumber) ensureAddress(s *session, cfg Config, podLink netlink.Link) error {
	family := familyOf(cfg.Address.Addr())
	addrs, err := consistent(func() ([]netlink.Addr, error) { return s.pod.nl.AddrList(podLink, family) })
	if err != nil {
		return podErr(cfg, "list addresses", err)
	}
	present := false
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		if prefixOf(a.IPNet) == cfg.Address {
			present = true
			continue
		}
		p.log.Info("removing an address the pod interface should not have",
			"netns", cfg.NetnsPath, "ifname", cfg.IfName, "address", a.IPNet.String(), "want", cfg.Address.String())
		if err := s.pod.nl.AddrDel(podLink, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return podErr(cfg, "remove address "+a.IPNet.String(), err)
		}
	}
	if present {
		return nil
	}
	addr := &netlink.Addr{IPNet: ipNetOf(cfg.Address)}
	if family == netlink.FAMILY_V6 {
		// The address is ours by IPAM; duplicate address detection would only
		// keep it tentative (unusable) for a second or more after ADD.
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := s.pod.nl.AddrAdd(podLink, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return podErr(cfg, "add address "+cfg.Address.String(), err)
	}
	return nil
}

func defaultRoute(cfg Config, linkIndex int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: linkIndex,
		Dst:       defaultDst(cfg.Gateway),
		Gw:        net.IP(cfg.Gateway.AsSlice()),
		Flags:     int(netlink.FLAG_ONLINK),
		Scope:     netlink.SCOPE_UNIVERSE,
		Table:     unix.RT_TABLE_MAIN,
		Family:    familyOf(cfg.Gateway),
	}
}

func defaultDst(a netip.Addr) *net.IPNet {
	if a.Is4() {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNetOf(p netip.Prefix) *net.IPNet {
	bits := 128
	if p.Addr().Is4() {
		bits = 32
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// prefixOf converts an interface address (host bits kept) to a netip.Prefix;
// the zero Prefix when it cannot be represented.
func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// Teardown implements Plumber.
func (p *plumber) Teardown(ctx context.Context, netnsPath, ifName, hostIfName string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tear down pod interface %s in %s: %w", ifName, netnsPath, err)
	}
	removedPair, err := p.teardownPodEnd(netnsPath, ifName, hostIfName)
	if err != nil {
		return err
	}
	if removedPair || hostIfName == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tear down host interface %s: %w", hostIfName, err)
	}
	return p.teardownHostEnd(netnsPath, hostIfName)
}

// teardownPodEnd deletes the pod's veth end, which takes the host end with
// it, provided it is ovsnet's: a veth paired with hostIfName in the host
// namespace. An interface of that name that is anything else (another
// plugin's, or one the runtime reused the name for) is left alone. It
// reports whether it deleted a veth.
func (p *plumber) teardownPodEnd(netnsPath, ifName, hostIfName string) (bool, error) {
	if netnsPath == "" || ifName == "" {
		return false, nil
	}
	pod, err := openNS(netnsPath, false)
	if nsGone(err) {
		// The namespace's interfaces went with it, unless something still
		// holds it open; the host end is removed below in that case.
		p.log.Debug("pod network namespace is gone; nothing to remove in it", "netns", netnsPath, "ifname", ifName, "reason", err)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tear down pod interface %s in %s: open the pod network namespace: %w", ifName, netnsPath, err)
	}
	defer pod.close()
	link, err := lookupLink(pod.nl, ifName)
	if err != nil {
		return false, fmt.Errorf("tear down pod interface %s in %s: look it up: %w", ifName, netnsPath, err)
	}
	if link == nil {
		return false, nil
	}
	if link.Type() != "veth" {
		p.log.Warn("pod interface is not a veth, so it was not made by ovsnet; leaving it",
			"netns", netnsPath, "ifname", ifName, "type", link.Type())
		return false, nil
	}
	host, err := openNS(p.opts.hostNetns, false)
	if nsGone(err) {
		p.log.Warn("host network namespace is gone, so the pod's veth cannot be ovsnet's; leaving it",
			"netns", netnsPath, "ifname", ifName, "hostNetns", p.opts.hostNetns)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tear down pod interface %s in %s: open the host network namespace: %w", ifName, netnsPath, err)
	}
	defer host.close()
	hostLink, err := lookupLink(host.nl, hostIfName)
	if err != nil {
		return false, fmt.Errorf("tear down pod interface %s in %s: look up host interface %s: %w", ifName, netnsPath, hostIfName, err)
	}
	why, err := p.notOurPair(&session{pod: pod, host: host}, link, hostLink, Config{IfName: ifName, NetnsPath: netnsPath, HostIfName: hostIfName})
	if err != nil {
		return false, fmt.Errorf("tear down pod interface %s in %s: %w", ifName, netnsPath, err)
	}
	if why != "" {
		p.log.Warn("pod interface is not ovsnet's veth; leaving it", "netns", netnsPath, "ifname", ifName,
			"hostIfname", hostIfName, "why", why)
		return false, nil
	}
	if err := pod.nl.LinkDel(link); err != nil && !isLinkNotFound(err) {
		return false, fmt.Errorf("tear down pod interface %s in %s: delete it: %w", ifName, netnsPath, err)
	}
	p.log.Debug("deleted veth pair", "netns", netnsPath, "ifname", ifName)
	return true, nil
}

// teardownHostEnd deletes a host veth whose pod end could not be reached.
func (p *plumber) teardownHostEnd(netnsPath, hostIfName string) error {
	host, err := openNS(p.opts.hostNetns, false)
	if nsGone(err) {
		p.log.Debug("host network namespace is gone; nothing to remove in it", "hostNetns", p.opts.hostNetns, "hostIfname", hostIfName)
		return nil
	}
	if err != nil {
		return fmt.Errorf("tear down host interface %s of pod %s: open the host network namespace %s: %w", hostIfName, netnsPath, p.opts.hostNetns, err)
	}
	defer host.close()
	link, err := lookupLink(host.nl, hostIfName)
	if err != nil {
		return fmt.Errorf("tear down host interface %s in %s: look it up: %w", hostIfName, host.name, err)
	}
	if link == nil {
		return nil
	}
	if link.Type() != "veth" {
		p.log.Warn("host interface is not a veth, so it was not made by ovsnet; leaving it",
			"hostIfname", hostIfName, "hostNetns", host.name, "type", link.Type())
		return nil
	}
	if err := host.nl.LinkDel(link); err != nil && !isLinkNotFound(err) {
		return fmt.Errorf("tear down host interface %s in %s: delete it: %w", hostIfName, host.name, err)
	}
	p.log.Debug("deleted host veth whose pod end was unreachable", "netns", netnsPath, "hostIfname", hostIfName, "hostNetns", host.name)
	return nil
}

// quietHostEnd makes the host's kernel not answer ARP on the host end
// (arp_ignore 8). On the userspace datapath OVS reads the host end through a
// packet socket and the kernel's own stack still sees every frame: were it
// to answer a pod's ARP for the gateway (a local address), the pod would
// send to the host end's MAC and the kernel would route a copy of every such
// packet beside the one OVS forwards.
func (p *plumber) quietHostEnd(cfg Config) error {
	write := func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/"+cfg.HostIfName+"/arp_ignore", []byte("8"), 0o644)
	}
	if hn := p.hostNetns(cfg); hn != "" {
		return ns.WithNetNSPath(hn, func(ns.NetNS) error { return write() })
	}
	return write()
}

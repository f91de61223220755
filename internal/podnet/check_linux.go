package podnet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Check implements Plumber. It changes nothing.
func (p *plumber) Check(ctx context.Context, cfg Config) error {
	cfg, err := cfg.normalize()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return podErr(cfg, "check", err)
	}
	s, err := p.open(cfg)
	if err != nil {
		return err
	}
	defer s.close()

	c := &checker{cfg: cfg, subject: fmt.Sprintf("pod interface %s in %s", cfg.IfName, cfg.NetnsPath)}
	podLink, err := lookupLink(s.pod.nl, cfg.IfName)
	if err != nil {
		return podErr(cfg, "look up the pod interface", err)
	}
	hostLink, err := lookupLink(s.host.nl, cfg.HostIfName)
	if err != nil {
		return podErr(cfg, "look up host interface "+cfg.HostIfName+" in "+s.host.name, err)
	}
	if hostLink == nil {
		c.problems = append(c.problems, fmt.Sprintf("host interface %s does not exist in %s", cfg.HostIfName, s.host.name))
	}
	if podLink == nil {
		c.problems = append(c.problems, c.subject+" does not exist")
		return c.result()
	}
	if err := ctx.Err(); err != nil {
		return podErr(cfg, "check", err)
	}
	if err := p.checkPodEnd(s, c, podLink, hostLink); err != nil {
		return err
	}
	if hostLink != nil {
		ha := hostLink.Attrs()
		if ha.MTU != cfg.MTU {
			c.problems = append(c.problems, fmt.Sprintf("host interface %s has MTU %d, want %d", cfg.HostIfName, ha.MTU, cfg.MTU))
		}
		if ha.Flags&net.FlagUp == 0 {
			c.problems = append(c.problems, fmt.Sprintf("host interface %s is down, want up", cfg.HostIfName))
		}
	}
	return c.result()
}

// checker collects the differences between the live interface and cfg.
type checker struct {
	cfg      Config
	subject  string
	problems []string
}

func (c *checker) differs(format string, args ...any) {
	c.problems = append(c.problems, c.subject+" "+fmt.Sprintf(format, args...))
}

func (c *checker) result() error {
	if len(c.problems) == 0 {
		return nil
	}
	return &CheckError{Problems: c.problems}
}

func (p *plumber) checkPodEnd(s *session, c *checker, podLink, hostLink netlink.Link) error {
	cfg := c.cfg
	// A missing host end is already reported; pairing is only worth a word
	// when both ends exist.
	if hostLink != nil {
		why, err := p.notOurPair(s, podLink, hostLink, cfg)
		if err != nil {
			return podErr(cfg, "inspect the veth pair", err)
		}
		if why != "" {
			c.differs("%s", why)
		}
	}
	pa := podLink.Attrs()
	if !bytes.Equal(pa.HardwareAddr, cfg.MAC) {
		c.differs("has MAC %s, want %s", pa.HardwareAddr, cfg.MAC)
	}
	if pa.MTU != cfg.MTU {
		c.differs("has MTU %d, want %d", pa.MTU, cfg.MTU)
	}
	if pa.Flags&net.FlagUp == 0 {
		c.differs("is down, want up")
	}

	family := familyOf(cfg.Address.Addr())
	addrs, err := consistent(func() ([]netlink.Addr, error) { return s.pod.nl.AddrList(podLink, family) })
	if err != nil {
		return podErr(cfg, "list addresses", err)
	}
	var have []string
	found := false
	for _, a := range addrs {
		if a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		pfx := prefixOf(a.IPNet)
		found = found || pfx == cfg.Address
		have = append(have, pfx.String())
	}
	switch {
	case !found && len(have) == 0:
		c.differs("has no address, want %s", cfg.Address)
	case !found:
		c.differs("has address %s, want %s", strings.Join(have, ", "), cfg.Address)
	}

	routes, err := consistent(func() ([]netlink.Route, error) {
		return s.pod.nl.RouteListFiltered(family, &netlink.Route{
			LinkIndex: pa.Index,
			Dst:       defaultDst(cfg.Gateway),
			Table:     unix.RT_TABLE_MAIN,
		}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return podErr(cfg, "list routes", err)
	}
	var gws []string
	found = false
	for _, r := range routes {
		gw, ok := netip.AddrFromSlice(r.Gw)
		if !ok {
			gws = append(gws, "no gateway")
			continue
		}
		gw = gw.Unmap()
		found = found || gw == cfg.Gateway
		gws = append(gws, gw.String())
	}
	switch {
	case !found && len(gws) == 0:
		c.differs("has no default route, want one via %s", cfg.Gateway)
	case !found:
		c.differs("has a default route with %s, want via %s", strings.Join(gws, ", "), cfg.Gateway)
	}

	if cfg.DisableTxChecksumOffload {
		on, err := txChecksumEnabled(s.pod.ethtoolFD, cfg.IfName)
		if err != nil {
			return podErr(cfg, "read offloads", err)
		}
		if on {
			c.differs("has tx checksum offload on, want off")
		}
	}
	return nil
}

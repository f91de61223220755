package podnet

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nsConn is an open network namespace plus the sockets this package talks to
// it through. The sockets are bound to the namespace when they are created,
// so using them later needs no thread switching at all: only opening an
// nsConn for a foreign namespace enters it, once, briefly.
type nsConn struct {
	// name describes the namespace in messages.
	name string
	ns   ns.NetNS
	nl   *netlink.Handle
	// ethtoolFD is a socket for SIOCETHTOOL ioctls, which act on the
	// namespace the socket was created in; -1 when not opened.
	ethtoolFD int
}

// openNS opens the network namespace at path, or the caller's when path is
// empty. withEthtool also opens a socket for ethtool ioctls in it.
func openNS(path string, withEthtool bool) (*nsConn, error) {
	c := &nsConn{name: path, ethtoolFD: -1}
	if path == "" {
		c.name = "the agent's network namespace"
		cur, err := ns.GetCurrentNS()
		if err != nil {
			return nil, fmt.Errorf("open the current network namespace: %w", err)
		}
		c.ns = cur
		// Already here: the sockets can be made without entering anything.
		if err := c.makeSockets(withEthtool); err != nil {
			c.close()
			return nil, err
		}
		return c, nil
	}
	target, err := ns.GetNS(path)
	if err != nil {
		return nil, err
	}
	c.ns = target
	// netlink.NewHandleAt would also work, but if it failed to switch the
	// thread back it would still unlock it, leaving a thread of this process
	// in the pod's namespace for any goroutine to land on. ns.Do runs the
	// work on a fresh goroutine and lets the runtime discard the thread when
	// switching back fails, so nothing ever escapes into the namespace.
	if err := target.Do(func(ns.NetNS) error { return c.makeSockets(withEthtool) }); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// makeSockets creates the sockets in the calling thread's namespace.
func (c *nsConn) makeSockets(withEthtool bool) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open a netlink socket in %s: %w", c.name, err)
	}
	c.nl = h
	if withEthtool {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open an ethtool socket in %s: %w", c.name, err)
		}
		c.ethtoolFD = fd
	}
	return nil
}

func (c *nsConn) close() {
	if c == nil {
		return
	}
	if c.nl != nil {
		c.nl.Close()
	}
	if c.ethtoolFD >= 0 {
		_ = unix.Close(c.ethtoolFD)
	}
	if c.ns != nil {
		_ = c.ns.Close()
	}
}

// fd is the namespace's file descriptor, as netlink wants it.
func (c *nsConn) fd() int {
	return int(c.ns.Fd())
}

// sameNS reports whether two open namespaces are the same namespace.
func sameNS(a, b *nsConn) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a.fd(), &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a.name, err)
	}
	if err := unix.Fstat(b.fd(), &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b.name, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// nsGone reports whether err from openNS means the namespace no longer
// exists: its path is missing, or is a leftover file after the runtime
// unmounted it. Either way no interface can be left in it for us to remove.
func nsGone(err error) bool {
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	return errors.As(err, &notExist) || errors.As(err, &notNS)
}

// dumpRetries bounds how often a netlink dump that raced with a change is
// repeated; the kernel flags such dumps, and a second try normally succeeds.
const dumpRetries = 5

// consistent runs a netlink dump until it is not interrupted by a concurrent
// change, so decisions are never taken on a torn listing.
func consistent[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpRetries {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("netlink dump kept being interrupted by concurrent changes (%d tries): %w", dumpRetries, err)
}

// lookupLink finds a link by name; a missing link is (nil, nil).
func lookupLink(h *netlink.Handle, name string) (netlink.Link, error) {
	link, err := consistent(func() (netlink.Link, error) { return h.LinkByName(name) })
	if isLinkNotFound(err) {
		return nil, nil
	}
	return link, err
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

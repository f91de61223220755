// Package netns opens TCP connections and listeners inside another network
// namespace from a process that stays in its own. The multi-node e2e
// cluster puts every node and the control plane in a namespace of their
// own; the tests and the API server's loopback forwarder run on the host
// and reach into them this way, without a process per connection.
//
// A socket belongs to the namespace it was created in, whichever thread
// uses it later, so only the socket's creation needs the thread switched:
// containernetworking's ns.Do runs it on a locked OS thread that it
// switches into the namespace and back (and retires if it cannot).
package netns

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Dialer dials inside the network namespace at Path (a file like
// /run/netns/NAME or /proc/PID/ns/net). The zero Path dials from the
// caller's own namespace.
type Dialer struct {
	Path string
	// Timeout bounds each connect (default 10 s).
	Timeout time.Duration
}

// DialContext has the signature of net.Dialer.DialContext, for
// http.Transport and friends.
func (d Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.Timeout}
	if nd.Timeout == 0 {
		nd.Timeout = 10 * time.Second
	}
	if d.Path == "" {
		return nd.DialContext(ctx, network, addr)
	}
	var conn net.Conn
	err := ns.WithNetNSPath(d.Path, func(ns.NetNS) error {
		var err error
		conn, err = nd.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s in network namespace %s: %w", network, addr, d.Path, err)
	}
	return conn, nil
}

// Listen listens on addr inside the network namespace at path (the
// caller's own when path is empty).
func Listen(ctx context.Context, path, network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	if path == "" {
		return lc.Listen(ctx, network, addr)
	}
	var l net.Listener
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		var err error
		l, err = lc.Listen(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in network namespace %s: %w", network, addr, path, err)
	}
	return l, nil
}

// ListenPacket is Listen for UDP.
func ListenPacket(ctx context.Context, path, network, addr string) (net.PacketConn, error) {
	var lc net.ListenConfig
	if path == "" {
		return lc.ListenPacket(ctx, network, addr)
	}
	var pc net.PacketConn
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		var err error
		pc, err = lc.ListenPacket(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in network namespace %s: %w", network, addr, path, err)
	}
	return pc, nil
}

package cnitest

import (
	"context"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/ns"
)

// TCPTransfer sends n bytes from a socket opened in netns src to a listener
// opened in netns dst on dstIP:5201 and checks that all of them arrive.
// Sockets keep the namespace they were created in, so only their creation
// runs inside the namespaces.
func TCPTransfer(ctx context.Context, srcNetns, dstNetns, dstIP string, n int) error {
	var ln net.Listener
	err := ns.WithNetNSPath(dstNetns, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(dstIP, "5201"))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen in %s: %w", dstNetns, err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		buf := make([]byte, 64<<10)
		total := 0
		for total < n {
			k, err := c.Read(buf)
			total += k
			if err != nil {
				got <- fmt.Errorf("received %d of %d bytes: %w", total, n, err)
				return
			}
		}
		got <- nil
	}()
	var conn net.Conn
	err = ns.WithNetNSPath(srcNetns, func(ns.NetNS) error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort(dstIP, "5201"))
		return err
	})
	if err != nil {
		return fmt.Errorf("dial %s from %s: %w", dstIP, srcNetns, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(make([]byte, n)); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	select {
	case err := <-got:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

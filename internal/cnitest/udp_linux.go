package cnitest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
)

// UDPCounter is a UDP listener in a network namespace that counts the
// datagrams it receives by source address: the place to assert that a
// forbidden packet did not arrive.
type UDPCounter struct {
	conn *net.UDPConn

	mu      sync.Mutex
	from    map[netip.Addr]int
	changed chan struct{}
}

// ListenUDP opens a counter on ip:port inside netns.
func ListenUDP(netns, ip string, port int) (*UDPCounter, error) {
	var conn *net.UDPConn
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s:%d in %s: %w", ip, port, netns, err)
	}
	c := &UDPCounter{conn: conn, from: map[netip.Addr]int{}, changed: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *UDPCounter) read() {
	buf := make([]byte, 2048)
	for {
		_, src, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.from[src.Addr().Unmap()]++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// From returns how many datagrams came from src.
func (c *UDPCounter) From(src string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.from[netip.MustParseAddr(src)]
}

// WaitFrom waits until at least n datagrams came from src.
func (c *UDPCounter) WaitFrom(ctx context.Context, src string, n int) error {
	a := netip.MustParseAddr(src)
	for {
		c.mu.Lock()
		got, ch := c.from[a], c.changed
		c.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d datagrams from %s arrived: %w", got, n, src, ctx.Err())
		}
	}
}

// Close stops the listener.
func (c *UDPCounter) Close() error { return c.conn.Close() }

// SendUDP sends n datagrams from src (an address of an interface in netns)
// to dst:port.
func SendUDP(netns, src, dst string, port, n int) error {
	return ns.WithNetNSPath(netns, func(ns.NetNS) error {
		conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP(dst), Port: port})
		if err != nil {
			return fmt.Errorf("udp from %s to %s:%d in %s: %w", src, dst, port, netns, err)
		}
		defer conn.Close()
		for i := range n {
			if _, err := conn.Write([]byte(fmt.Sprintf("ovsnet test datagram %d", i))); err != nil {
				return fmt.Errorf("send datagram %d from %s to %s:%d: %w", i, src, dst, port, err)
			}
		}
		return nil
	})
}

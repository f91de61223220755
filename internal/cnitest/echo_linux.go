package cnitest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Echo is a TCP and UDP echo server on one address and port inside a
// network namespace: whatever a client sends comes back. A TCP client also
// gets the address the server saw it connect from, so a test can tell
// whether the client's address survived the path (or was masqueraded).
type Echo struct {
	tcp net.Listener
	udp *net.UDPConn
}

// StartEcho listens on ip:port (TCP and UDP) inside netns.
func StartEcho(netns, ip string, port int) (*Echo, error) {
	e := &Echo{}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var err error
		if e.tcp, err = net.Listen("tcp4", addr); err != nil {
			return err
		}
		ua, _ := net.ResolveUDPAddr("udp4", addr)
		e.udp, err = net.ListenUDP("udp4", ua)
		return err
	})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("echo server on %s in %s: %w", addr, netns, err)
	}
	go e.serveTCP()
	go e.serveUDP()
	return e, nil
}

func (e *Echo) serveTCP() {
	for {
		c, err := e.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil && !errors.Is(err, io.EOF) {
				return
			}
			_, _ = c.Write(append(buf[:n], []byte(" from "+c.RemoteAddr().(*net.TCPAddr).IP.String())...))
		}()
	}
}

func (e *Echo) serveUDP() {
	buf := make([]byte, 2048)
	for {
		n, src, err := e.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = e.udp.WriteToUDPAddrPort(buf[:n], src)
	}
}

// Close stops the server.
func (e *Echo) Close() {
	if e.tcp != nil {
		_ = e.tcp.Close()
	}
	if e.udp != nil {
		_ = e.udp.Close()
	}
}

// TCPEcho connects from netns to addr (host:port), sends msg and returns
// what came back: msg followed by " from <the address the server saw>".
func TCPEcho(ctx context.Context, netns, addr, msg string) (string, error) {
	var c net.Conn
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("connect to %s from %s: %w", addr, netns, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", fmt.Errorf("send to %s: %w", addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), fmt.Errorf("read the echo from %s: %w", addr, err)
	}
	return string(b), nil
}

// UDPEcho sends msg from netns to addr on a connected UDP socket and
// returns the answer; a reply from any other address than addr (an
// endpoint answering from its own address instead of the Service's) is
// not accepted, as by any connected client.
func UDPEcho(ctx context.Context, netns, addr, msg string) (string, error) {
	var c net.Conn
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "udp4", addr)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("udp to %s from %s: %w", addr, netns, err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	// Datagrams may be lost while a path is set up: resend until the
	// deadline, pacing the attempts.
	for {
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", fmt.Errorf("send to %s: %w", addr, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("no answer from %s: %w", addr, ctx.Err())
		}
	}
}

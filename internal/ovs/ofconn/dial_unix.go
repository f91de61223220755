//go:build unix

package ofconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// defaultRunDir is where packaged OVS keeps its sockets.
const defaultRunDir = "/var/run/openvswitch"

// dial connects to the bridge's management socket.
func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("OpenFlow socket %s not found (is ovs-vswitchd running and the bridge created? check the OVS run directory): %w", path, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("nothing listens on OpenFlow socket %s (ovs-vswitchd stopped or crashed): %w", path, err)
	case errors.Is(err, syscall.EAGAIN):
		return nil, fmt.Errorf("OpenFlow socket %s: ovs-vswitchd is not accepting connections (stopped or overloaded): %w", path, err)
	}
	return nil, fmt.Errorf("connect to OpenFlow socket %s: %w", path, err)
}

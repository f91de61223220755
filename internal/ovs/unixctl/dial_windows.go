package unixctl

import (
	"context"
	"fmt"
	"net"
)

// dial is not implemented on Windows: there ovs-vswitchd serves its control
// channel on a named pipe, not a unix socket.
func dial(_ context.Context, path string) (net.Conn, error) {
	return nil, fmt.Errorf("connect to OVS control %s: %w (ovs-vswitchd uses a named pipe on Windows)", path, ErrNotSupported)
}

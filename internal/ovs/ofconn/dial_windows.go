package ofconn

import (
	"context"
	"fmt"
	"net"
)

// defaultRunDir is where OVS for Windows keeps its run files.
const defaultRunDir = `C:\ProgramData\openvswitch`

// dial is not implemented on Windows, where ovs-vswitchd serves a bridge's
// management channel on a named pipe rather than a unix socket.
func dial(_ context.Context, path string) (net.Conn, error) {
	return nil, fmt.Errorf("connect to OpenFlow channel %s: %w (ovs-vswitchd uses a named pipe on Windows)", path, ErrNotSupported)
}

//go:build unix

package unixctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// dial connects to the control socket at path. Errors that a daemon
// (re)start cures wrap ErrUnavailable; the rest (permissions, a path longer
// than a socket address allows) are permanent.
func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("%w: socket %s not found (is ovs-vswitchd running? check --ovs-rundir): %w", ErrUnavailable, path, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w: nothing listens on %s (ovs-vswitchd stopped or crashed): %w", ErrUnavailable, path, err)
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ECONNRESET):
		// EAGAIN: the daemon's accept backlog is full because it is busy.
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, path, err)
	}
	return nil, fmt.Errorf("connect to OVS control socket %s: %w", path, err)
}

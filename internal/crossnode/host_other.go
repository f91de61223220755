//go:build !linux

package crossnode

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/ovsnet/ovsnet/internal/gateway"
)

// LinuxHost is only implemented on Linux; elsewhere its methods fail.
type LinuxHost struct {
	Netns   string
	Gateway gateway.Config
}

var errNotLinux = errors.New("cross-node routes are only implemented on Linux")

// SyncRoutes implements Host.
func (LinuxHost) SyncRoutes(context.Context, []Route) error { return errNotLinux }

// SetExempt implements Host.
func (LinuxHost) SetExempt(context.Context, []netip.Prefix) error { return errNotLinux }

// Uplink is the interface that carries the node's address.
type Uplink struct {
	Name string
	MTU  int
	MAC  net.HardwareAddr
}

// FindUplink is only implemented on Linux.
func FindUplink(string, string, netip.Addr) (Uplink, error) { return Uplink{}, errNotLinux }

// UplinkBridgeConfig describes the uplink bridge of the userspace datapath.
type UplinkBridgeConfig struct {
	Bridge, Uplink, Netns string
	NodeIP                netip.Addr
}

// EnsureUplinkBridge is only implemented on Linux.
func EnsureUplinkBridge(context.Context, UplinkBridgeConfig) error { return errNotLinux }

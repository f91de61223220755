//go:build !linux

package cniserver

import (
	"fmt"
	"net"
	"runtime"
)

// Listen is only implemented on Linux, where the agent runs.
func Listen(path string) (net.Listener, error) {
	return nil, fmt.Errorf("serving the CNI socket %s is not supported on %s", path, runtime.GOOS)
}

package unixctl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// DefaultRunDir is where packaged OVS keeps its pidfiles and sockets.
	DefaultRunDir = "/var/run/openvswitch"
	// DefaultTarget is the daemon whose control socket Client talks to.
	DefaultTarget = "ovs-vswitchd"
)

// Locate returns the control socket of daemon target under runDir the way
// ovs-appctl -t does: read <runDir>/<target>.pid and use
// <runDir>/<target>.<pid>.ctl. Each daemon start writes a new pid, so callers
// must locate again after a restart rather than cache the path.
func Locate(runDir, target string) (string, error) {
	if runDir == "" {
		runDir = DefaultRunDir
	}
	if target == "" {
		target = DefaultTarget
	}
	pidfile := filepath.Join(runDir, target+".pid")
	f, err := os.Open(pidfile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s pidfile %s not found: is %s running? check --ovs-rundir: %w",
			ErrUnavailable, target, pidfile, target, err)
	}
	if err != nil {
		return "", fmt.Errorf("open %s pidfile: %w (ovsnet needs read access to the OVS run directory)", target, err)
	}
	defer func() { _ = f.Close() }()
	// A pid is at most a few digits; the bound keeps a corrupt file harmless.
	data, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return "", fmt.Errorf("read %s pidfile %s: %w", target, pidfile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		// OVS replaces its pidfile atomically, so this is a leftover that the
		// next daemon start overwrites: worth waiting for, hence unavailable.
		return "", fmt.Errorf("%w: %s pidfile %s holds %q, not a process id: restart %s",
			ErrUnavailable, target, pidfile, data, target)
	}
	return filepath.Join(runDir, fmt.Sprintf("%s.%d.ctl", target, pid)), nil
}

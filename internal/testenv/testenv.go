// Package testenv lets tests state what they need from the machine (root, Open
// vSwitch binaries, network tools). Outside CI a missing requirement skips the
// test so a laptop run stays useful; under CI=true it fails, because a skipped
// integration test proves nothing.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in continuous integration, where every
// requirement must be met.
func InCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// missing reports an unmet requirement: a failure in CI, a skip elsewhere.
func missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: integration tests must not be skipped; run .ci/run or install it)", what)
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", what)
}

// RequireRoot needs uid 0: network namespaces, veth pairs and OVS sockets.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "test needs root (network namespaces, veth, OVS)")
	}
}

// RequireCommands needs each named program on PATH (or /usr/sbin, where Debian
// puts the OVS daemons).
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := LookPath(n); err != nil {
			missing(t, "test needs "+n+" (Debian: apt-get install openvswitch-switch iproute2 iputils-ping ethtool nftables)")
		}
	}
}

// RequireOVS needs root and the Open vSwitch daemons and utilities.
func RequireOVS(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommands(t, "ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ip")
}

// LookPath finds a program on PATH, falling back to the sbin directories that
// a non-login root shell may lack.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

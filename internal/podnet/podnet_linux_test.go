package podnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// cmdTimeout bounds every external command a test runs, so a wedged tool
// fails the test instead of hanging it.
const cmdTimeout = 30 * time.Second

func requirePlumbing(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "ethtool", "ping")
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func tryRun(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	path, err := testenv.LookPath(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

// testNetns is a named network namespace that lives for one test.
type testNetns struct {
	name string
	path string
}

func newNetns(t testing.TB, role string) testNetns {
	t.Helper()
	name := "pn-" + role + "-" + randomHex(t, 4)
	run(t, "ip", "netns", "add", name)
	n := testNetns{name: name, path: filepath.Join("/var/run/netns", name)}
	t.Cleanup(func() { n.remove(t) })
	return n
}

func (n testNetns) remove(t testing.TB) {
	if _, err := os.Stat(n.path); errors.Is(err, os.ErrNotExist) {
		return
	}
	if out, err := tryRun(t, "ip", "netns", "del", n.name); err != nil {
		t.Errorf("remove network namespace %s: %v\n%s", n.name, err, out)
	}
}

// ip runs `ip -n <ns> args...`.
func (n testNetns) ip(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", n.name}, args...)...)
}

// exec runs a program inside the namespace.
func (n testNetns) exec(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return tryRun(t, "ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// handle opens a netlink handle in the namespace for assertions.
func (n testNetns) handle(t testing.TB) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromPath(n.path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// ipLink is the part of `ip -j link/addr show` the tests read.
type ipLink struct {
	IfIndex  int      `json:"ifindex"`
	IfName   string   `json:"ifname"`
	Flags    []string `json:"flags"`
	MTU      int      `json:"mtu"`
	Address  string   `json:"address"`
	LinkType string   `json:"link_type"`
	AddrInfo []struct {
		Family    string   `json:"family"`
		Local     string   `json:"local"`
		PrefixLen int      `json:"prefixlen"`
		Scope     string   `json:"scope"`
		Tentative bool     `json:"tentative"`
		Flags     []string `json:"flags"`
	} `json:"addr_info"`
}

func (l ipLink) up() bool {
	for _, f := range l.Flags {
		if f == "UP" {
			return true
		}
	}
	return false
}

func (n testNetns) showAddr(t testing.TB, dev string) ipLink {
	t.Helper()
	var links []ipLink
	out := n.ip(t, "-j", "addr", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -n %s -j addr show dev %s: %v\n%s", n.name, dev, err, out)
	}
	return links[0]
}

func (n testNetns) linkExists(t testing.TB, dev string) bool {
	t.Helper()
	_, err := tryRun(t, "ip", "-n", n.name, "link", "show", "dev", dev)
	return err == nil
}

// netnsLeakGuard fails the test when any thread of this process is left in a
// namespace other than the one the test started in.
type netnsLeakGuard struct {
	home string
}

func newLeakGuard(t testing.TB) netnsLeakGuard {
	t.Helper()
	home, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return netnsLeakGuard{home: home}
}

func (g netnsLeakGuard) check(t testing.TB, after string) {
	t.Helper()
	if cur, err := os.Readlink("/proc/thread-self/ns/net"); err != nil || cur != g.home {
		t.Errorf("after %s the calling goroutine is in %s (%v), want %s", after, cur, err, g.home)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		if ns != g.home {
			t.Errorf("after %s thread %s is in %s, want %s: a thread leaked into a namespace", after, task.Name(), ns, g.home)
		}
	}
}

// guarded wraps a Plumber and checks for namespace leaks after every call.
type guarded struct {
	t     testing.TB
	guard netnsLeakGuard
	p     Plumber
}

func newGuarded(t testing.TB, opts ...Option) *guarded {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &guarded{t: t, guard: newLeakGuard(t), p: New(log, opts...)}
}

func (g *guarded) Setup(ctx context.Context, cfg Config) (*Result, error) {
	g.t.Helper()
	r, err := g.p.Setup(ctx, cfg)
	g.guard.check(g.t, "Setup")
	return r, err
}

func (g *guarded) Check(ctx context.Context, cfg Config) error {
	g.t.Helper()
	err := g.p.Check(ctx, cfg)
	g.guard.check(g.t, "Check")
	return err
}

func (g *guarded) Teardown(ctx context.Context, netnsPath, ifName, hostIfName string) error {
	g.t.Helper()
	err := g.p.Teardown(ctx, netnsPath, ifName, hostIfName)
	g.guard.check(g.t, "Teardown")
	return err
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func podConfig(pod, host testNetns, addr string) Config {
	pfx := netip.MustParsePrefix(addr)
	return Config{
		NetnsPath:                pod.path,
		IfName:                   "eth0",
		HostIfName:               HostIfName(pod.name, "eth0"),
		MTU:                      1400,
		Address:                  pfx,
		Gateway:                  pfx.Masked().Addr().Next(),
		DisableTxChecksumOffload: true,
		HostNetns:                host.path,
	}
}

func mustSetup(t testing.TB, p Plumber, cfg Config) *Result {
	t.Helper()
	res, err := p.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return res
}

func TestSetupConfiguresBothEnds(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")

	res := mustSetup(t, p, cfg)

	wantMAC := "0a:58:0a:f4:00:05"
	if res.PodMAC.String() != wantMAC || res.HostIfName != cfg.HostIfName || res.PodIfName != "eth0" ||
		res.Sandbox != pod.path || res.MTU != 1400 || res.Address != cfg.Address || res.Gateway != cfg.Gateway {
		t.Errorf("Result = %+v, want pod MAC %s, host %s, sandbox %s, MTU 1400", res, wantMAC, cfg.HostIfName, pod.path)
	}

	// Pod end, as netlink sees it.
	ph := pod.handle(t)
	link, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatalf("pod has no eth0: %v", err)
	}
	if link.Type() != "veth" || link.Attrs().Index != res.PodIfIndex || link.Attrs().HardwareAddr.String() != wantMAC ||
		link.Attrs().MTU != 1400 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("pod eth0 = %s index %d MAC %s MTU %d flags %v; want veth index %d MAC %s MTU 1400 up",
			link.Type(), link.Attrs().Index, link.Attrs().HardwareAddr, link.Attrs().MTU, link.Attrs().Flags, res.PodIfIndex, wantMAC)
	}
	addrs, err := ph.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.0.5/24" {
		t.Errorf("pod eth0 IPv4 addresses = %v (%v), want exactly 10.244.0.5/24", addrs, err)
	}

	// Pod end, as ip(8) and ethtool(8) see it.
	shown := pod.showAddr(t, "eth0")
	if shown.Address != wantMAC || shown.MTU != 1400 || !shown.up() {
		t.Errorf("ip addr show eth0 = %+v", shown)
	}
	if lo := pod.showAddr(t, "lo"); !lo.up() {
		t.Errorf("lo in the pod is down: %+v", lo)
	}
	route := pod.ip(t, "route", "show", "default")
	if !strings.Contains(route, "default via 10.244.0.1 dev eth0") || !strings.Contains(route, "onlink") {
		t.Errorf("pod default route = %q, want default via 10.244.0.1 dev eth0 onlink", route)
	}
	offloads, err := pod.exec(t, "ethtool", "-k", "eth0")
	if err != nil {
		t.Fatalf("ethtool -k eth0: %v\n%s", err, offloads)
	}
	if !strings.Contains(offloads, "tx-checksumming: off") {
		t.Errorf("ethtool -k eth0 in the pod does not show tx-checksumming off:\n%s", offloads)
	}

	// Host end.
	hl := host.showAddr(t, cfg.HostIfName)
	if hl.MTU != 1400 || !hl.up() || hl.Address != res.HostMAC.String() {
		t.Errorf("host end %s = %+v, want MTU 1400, up, MAC %s", cfg.HostIfName, hl, res.HostMAC)
	}
	if err := p.Check(context.Background(), cfg); err != nil {
		t.Errorf("Check right after Setup: %v", err)
	}
}

func TestSetupKeepsTxChecksumWhenNotAsked(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	cfg.DisableTxChecksumOffload = false
	mustSetup(t, p, cfg)
	offloads, err := pod.exec(t, "ethtool", "-k", "eth0")
	if err != nil {
		t.Fatalf("ethtool -k eth0: %v\n%s", err, offloads)
	}
	if !strings.Contains(offloads, "tx-checksumming: on") {
		t.Errorf("tx checksum offload changed although not asked:\n%s", offloads)
	}
}

func TestPodsReachEachOtherThroughHostEnds(t *testing.T) {
	requirePlumbing(t)
	host := newNetns(t, "host")
	podA, podB := newNetns(t, "pod"), newNetns(t, "pod")
	p := newGuarded(t)
	cfgA := podConfig(podA, host, "10.244.0.5/24")
	cfgB := podConfig(podB, host, "10.244.0.6/24")
	mustSetup(t, p, cfgA)
	mustSetup(t, p, cfgB)

	// A Linux bridge stands in for br-int: if the veths are right, L2
	// between the host ends is all the pods need.
	host.ip(t, "link", "add", "br0", "type", "bridge")
	host.ip(t, "link", "set", "br0", "up")
	host.ip(t, "link", "set", cfgA.HostIfName, "master", "br0")
	host.ip(t, "link", "set", cfgB.HostIfName, "master", "br0")

	if out, err := podA.exec(t, "ping", "-c1", "-w10", "10.244.0.6"); err != nil {
		t.Errorf("ping pod B from pod A: %v\n%s", err, out)
	}
	if out, err := podB.exec(t, "ping", "-c1", "-w10", "10.244.0.5"); err != nil {
		t.Errorf("ping pod A from pod B: %v\n%s", err, out)
	}
}

func TestSetupIsIdempotent(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	first := mustSetup(t, p, cfg)
	second := mustSetup(t, p, cfg)
	if first.PodIfIndex != second.PodIfIndex || first.HostMAC.String() != second.HostMAC.String() ||
		first.PodMAC.String() != second.PodMAC.String() {
		t.Errorf("second Setup returned %+v, first %+v: the interface was recreated", second, first)
	}
	if links, err := host.handle(t).LinkList(); err != nil || len(links) != 2 { // lo + host end
		t.Errorf("host namespace has %d links (%v), want lo and the host end", len(links), err)
	}
	if err := p.Check(context.Background(), cfg); err != nil {
		t.Errorf("Check after the second Setup: %v", err)
	}
}

func TestSetupConvergesDriftedInterface(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	first := mustSetup(t, p, cfg)

	pod.ip(t, "addr", "del", "10.244.0.5/24", "dev", "eth0")
	pod.ip(t, "addr", "add", "10.244.0.9/24", "dev", "eth0")
	pod.ip(t, "link", "set", "eth0", "mtu", "1300")
	if out, err := pod.exec(t, "ethtool", "-K", "eth0", "tx", "on"); err != nil {
		t.Fatalf("ethtool -K eth0 tx on: %v\n%s", err, out)
	}
	host.ip(t, "link", "set", cfg.HostIfName, "down")

	again := mustSetup(t, p, cfg)
	if again.PodIfIndex != first.PodIfIndex {
		t.Errorf("Setup recreated the interface (index %d, was %d) instead of converging it", again.PodIfIndex, first.PodIfIndex)
	}
	if err := p.Check(context.Background(), cfg); err != nil {
		t.Errorf("Check after converging Setup: %v", err)
	}
	if shown := pod.showAddr(t, "eth0"); len(shown.AddrInfo) == 0 {
		t.Errorf("no addresses left on eth0")
	} else {
		for _, a := range shown.AddrInfo {
			if a.Family == "inet" && a.Local != "10.244.0.5" {
				t.Errorf("stale address %s/%d kept on eth0", a.Local, a.PrefixLen)
			}
		}
	}
}

func TestSetupReplacesStaleHostVeth(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	// What a crash between creating the pair and moving its peer leaves.
	host.ip(t, "link", "add", cfg.HostIfName, "type", "veth", "peer", "name", "pn-stale")

	mustSetup(t, p, cfg)
	if host.linkExists(t, "pn-stale") {
		t.Errorf("stale veth peer pn-stale still exists: the stale pair was not removed")
	}
	if err := p.Check(context.Background(), cfg); err != nil {
		t.Errorf("Check after replacing the stale veth: %v", err)
	}
}

func TestSetupRefusesForeignInterfaces(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")

	pod.ip(t, "link", "add", "eth0", "type", "bridge")
	_, err := p.Setup(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "is a bridge, not a veth") || !strings.Contains(err.Error(), pod.path) {
		t.Errorf("Setup over a bridge eth0 = %v, want an error naming the bridge and %s", err, pod.path)
	}
	if !pod.linkExists(t, "eth0") {
		t.Errorf("Setup removed the foreign eth0")
	}
	pod.ip(t, "link", "del", "eth0")

	host.ip(t, "link", "add", cfg.HostIfName, "type", "bridge")
	_, err = p.Setup(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "not a veth") || !strings.Contains(err.Error(), cfg.HostIfName) {
		t.Errorf("Setup over a bridge host interface = %v, want an error naming %s", err, cfg.HostIfName)
	}
	if !host.linkExists(t, cfg.HostIfName) {
		t.Errorf("Setup removed the foreign host interface")
	}
	if pod.linkExists(t, "eth0") {
		t.Errorf("failed Setup left eth0 in the pod")
	}
}

func TestSetupRefusesVethPairedElsewhere(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")

	// Both pairs live inside one namespace each, created so that their
	// interface indexes mirror each other (pod: peer 2, eth0 3; host: our
	// name 2, its peer 3). Only the namespace check can tell that eth0 is
	// not paired with the host end.
	pod.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", "pn-x")
	host.ip(t, "link", "add", "pn-y", "type", "veth", "peer", "name", cfg.HostIfName)
	want := "is paired with an interface in another namespace than " + host.path
	if podEth0, hostEnd := pod.showAddr(t, "eth0"), host.showAddr(t, cfg.HostIfName); podEth0.IfIndex != 3 || hostEnd.IfIndex != 2 {
		t.Logf("indexes do not mirror (eth0 %d, host end %d); the index check alone catches this case", podEth0.IfIndex, hostEnd.IfIndex)
		want = "is paired with"
	}

	_, err := p.Setup(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "already exists in the pod and "+want) {
		t.Errorf("Setup over a veth paired elsewhere = %v, want a refusal saying %q", err, want)
	}
	err = p.Check(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "pod interface eth0 in "+pod.path+" "+want) {
		t.Errorf("Check of a veth paired elsewhere = %v, want it reported", err)
	}
	if !pod.linkExists(t, "pn-x") || !host.linkExists(t, "pn-y") {
		t.Errorf("Setup touched interfaces that are not its own")
	}
}

func TestSetupRefusesHostNamespaceAsPod(t *testing.T) {
	requirePlumbing(t)
	host := newNetns(t, "host")
	p := newGuarded(t)
	cfg := podConfig(host, host, "10.244.0.5/24")
	_, err := p.Setup(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "namespace of its own") {
		t.Errorf("Setup with pod netns = host netns: %v, want a refusal", err)
	}
}

func TestSetupMissingNetns(t *testing.T) {
	requirePlumbing(t)
	host := newNetns(t, "host")
	p := newGuarded(t)
	cfg := podConfig(testNetns{name: "gone", path: "/var/run/netns/pn-missing-" + randomHex(t, 4)}, host, "10.244.0.5/24")
	_, err := p.Setup(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), cfg.NetnsPath) || !strings.Contains(err.Error(), "open the pod network namespace") {
		t.Errorf("Setup in a missing netns = %v, want an error naming it", err)
	}
}

func TestSetupHonoursCancelledContext(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Setup(ctx, podConfig(pod, host, "10.244.0.5/24"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Setup with a cancelled context = %v, want context.Canceled", err)
	}
	if pod.linkExists(t, "eth0") {
		t.Errorf("Setup with a cancelled context created eth0")
	}
}

func TestSetupIPv6(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "fd00:10:244::5/64")
	cfg.Gateway = netip.MustParseAddr("fe80::1")
	res := mustSetup(t, p, cfg)
	if res.PodMAC.String() != "0a:58:00:00:00:05" {
		t.Errorf("pod MAC = %s, want 0a:58:00:00:00:05", res.PodMAC)
	}
	found := false
	for _, a := range pod.showAddr(t, "eth0").AddrInfo {
		if a.Local == "fd00:10:244::5" && a.PrefixLen == 64 {
			found = true
			if a.Tentative {
				t.Errorf("fd00:10:244::5 is tentative: duplicate address detection was not disabled")
			}
		}
	}
	if !found {
		t.Errorf("eth0 lacks fd00:10:244::5/64: %+v", pod.showAddr(t, "eth0"))
	}
	if route := pod.ip(t, "-6", "route", "show", "default"); !strings.Contains(route, "default via fe80::1 dev eth0") {
		t.Errorf("pod IPv6 default route = %q", route)
	}
	if err := p.Check(context.Background(), cfg); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestSetupInCallersNamespaceByDefault(t *testing.T) {
	requirePlumbing(t)
	pod := newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, testNetns{}, "10.244.0.5/24")
	cfg.HostNetns = ""
	t.Cleanup(func() {
		if err := p.Teardown(context.Background(), "", "", cfg.HostIfName); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	res := mustSetup(t, p, cfg)
	link, err := netlink.LinkByName(cfg.HostIfName)
	if err != nil {
		t.Fatalf("host end %s is not in the test's namespace: %v", cfg.HostIfName, err)
	}
	if link.Attrs().HardwareAddr.String() != res.HostMAC.String() {
		t.Errorf("host end MAC %s, Result says %s", link.Attrs().HardwareAddr, res.HostMAC)
	}
	if err := p.Teardown(context.Background(), pod.path, "eth0", cfg.HostIfName); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if _, err := netlink.LinkByName(cfg.HostIfName); err == nil {
		t.Errorf("host end %s survived Teardown", cfg.HostIfName)
	}
}

func TestTeardown(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t, WithHostNetns(host.path))
	cfg := podConfig(pod, host, "10.244.0.5/24")
	cfg.HostNetns = "" // from WithHostNetns
	mustSetup(t, p, cfg)
	if !host.linkExists(t, cfg.HostIfName) {
		t.Fatalf("WithHostNetns: host end is not in %s", host.name)
	}

	ctx := context.Background()
	if err := p.Teardown(ctx, pod.path, "eth0", cfg.HostIfName); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if pod.linkExists(t, "eth0") || host.linkExists(t, cfg.HostIfName) {
		t.Errorf("Teardown left an end of the pair behind")
	}
	if err := p.Teardown(ctx, pod.path, "eth0", cfg.HostIfName); err != nil {
		t.Errorf("second Teardown: %v, want success", err)
	}

	mustSetup(t, p, cfg)
	pod.remove(t)
	if err := p.Teardown(ctx, pod.path, "eth0", cfg.HostIfName); err != nil {
		t.Errorf("Teardown with the pod netns gone: %v, want success", err)
	}
	if host.linkExists(t, cfg.HostIfName) {
		t.Errorf("host end outlived the pod netns and Teardown")
	}
	if err := p.Teardown(ctx, "", "eth0", cfg.HostIfName); err != nil {
		t.Errorf("Teardown without a netns path: %v", err)
	}
}

func TestTeardownRemovesHostEndWhenPodNetnsIsGone(t *testing.T) {
	requirePlumbing(t)
	host := newNetns(t, "host")
	p := newGuarded(t, WithHostNetns(host.path))
	hostIf := HostIfName(randomHex(t, 8), "eth0")
	// A pair whose pod end never reached a namespace that still exists.
	host.ip(t, "link", "add", hostIf, "type", "veth", "peer", "name", "pn-orphan")
	if err := p.Teardown(context.Background(), "/var/run/netns/pn-gone-"+randomHex(t, 4), "eth0", hostIf); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if host.linkExists(t, hostIf) || host.linkExists(t, "pn-orphan") {
		t.Errorf("orphaned host veth %s survived Teardown", hostIf)
	}
}

func TestTeardownLeavesForeignInterfaces(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t, WithHostNetns(host.path))
	pod.ip(t, "link", "add", "eth0", "type", "bridge")
	host.ip(t, "link", "add", "pn-foreign", "type", "bridge")
	if err := p.Teardown(context.Background(), pod.path, "eth0", "pn-foreign"); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if !pod.linkExists(t, "eth0") || !host.linkExists(t, "pn-foreign") {
		t.Errorf("Teardown removed interfaces that are not veths")
	}
}

// A veth named like the pod interface but paired with something other than
// this attachment's host end (another plugin's, or a pair left by another
// container) is not ovsnet's to delete, even by a DEL that names it.
func TestTeardownLeavesVethPairedElsewhere(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t, WithHostNetns(host.path))
	hostIf := HostIfName(randomHex(t, 8), "eth0")
	// eth0 in the pod is one end of a pair whose other end is in the host
	// namespace under another name.
	host.ip(t, "link", "add", "pn-other", "type", "veth", "peer", "name", "eth0", "netns", pod.name)
	if err := p.Teardown(context.Background(), pod.path, "eth0", hostIf); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if !pod.linkExists(t, "eth0") || !host.linkExists(t, "pn-other") {
		t.Fatal("Teardown deleted a veth that is not paired with the attachment's host end")
	}
	// Once the host end has the attachment's name, the pair is ovsnet's.
	host.ip(t, "link", "set", "pn-other", "name", hostIf)
	if err := p.Teardown(context.Background(), pod.path, "eth0", hostIf); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if pod.linkExists(t, "eth0") || host.linkExists(t, hostIf) {
		t.Fatal("Teardown left ovsnet's own pair")
	}
}

func TestCheckReportsDifferences(t *testing.T) {
	requirePlumbing(t)
	host, pod := newNetns(t, "host"), newNetns(t, "pod")
	p := newGuarded(t)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	mustSetup(t, p, cfg)
	ctx := context.Background()
	subject := "pod interface eth0 in " + pod.path

	expectProblems := func(t *testing.T, want ...string) {
		t.Helper()
		err := p.Check(ctx, cfg)
		var ce *CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("Check = %v, want a *CheckError", err)
		}
		if len(ce.Problems) != len(want) {
			t.Errorf("Check problems = %q, want %q", ce.Problems, want)
			return
		}
		for i := range want {
			if ce.Problems[i] != want[i] {
				t.Errorf("Check problem %d = %q, want %q", i, ce.Problems[i], want[i])
			}
		}
	}

	t.Run("address", func(t *testing.T) {
		pod.ip(t, "addr", "del", "10.244.0.5/24", "dev", "eth0")
		pod.ip(t, "addr", "add", "10.244.0.9/24", "dev", "eth0")
		// Deleting the only address also took the routes through it.
		pod.ip(t, "route", "add", "default", "via", "10.244.0.1", "dev", "eth0", "onlink")
		expectProblems(t, subject+" has address 10.244.0.9/24, want 10.244.0.5/24")
		mustSetup(t, p, cfg)
	})
	t.Run("mtu, offload and route", func(t *testing.T) {
		pod.ip(t, "link", "set", "eth0", "mtu", "1300")
		pod.ip(t, "route", "del", "default")
		if out, err := pod.exec(t, "ethtool", "-K", "eth0", "tx", "on"); err != nil {
			t.Fatalf("ethtool -K eth0 tx on: %v\n%s", err, out)
		}
		expectProblems(t,
			subject+" has MTU 1300, want 1400",
			subject+" has no default route, want one via 10.244.0.1",
			subject+" has tx checksum offload on, want off")
		mustSetup(t, p, cfg)
	})
	t.Run("MAC and host end down", func(t *testing.T) {
		pod.ip(t, "link", "set", "eth0", "address", "02:00:00:00:00:01")
		host.ip(t, "link", "set", cfg.HostIfName, "down")
		expectProblems(t,
			subject+" has MAC 02:00:00:00:00:01, want 0a:58:0a:f4:00:05",
			"host interface "+cfg.HostIfName+" is down, want up")
		mustSetup(t, p, cfg)
	})
	t.Run("deleted interface", func(t *testing.T) {
		pod.ip(t, "link", "del", "eth0")
		expectProblems(t,
			"host interface "+cfg.HostIfName+" does not exist in "+host.path,
			subject+" does not exist")
	})
	t.Run("missing netns", func(t *testing.T) {
		missing := cfg
		missing.NetnsPath = "/var/run/netns/pn-gone-" + randomHex(t, 4)
		if err := p.Check(ctx, missing); err == nil || !strings.Contains(err.Error(), missing.NetnsPath) {
			t.Errorf("Check in a missing netns = %v, want an error naming it", err)
		}
	})
}

// BenchmarkSetupTeardown measures one pod's ADD and DEL plumbing: veth
// creation with the peer born in the pod namespace, configuration of both
// ends (with the offload change) and deletion.
func BenchmarkSetupTeardown(b *testing.B) {
	requirePlumbing(b)
	host, pod := newNetns(b, "host"), newNetns(b, "pod")
	p := New(nil)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	ctx := context.Background()
	for b.Loop() {
		if _, err := p.Setup(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		if err := p.Teardown(ctx, cfg.NetnsPath, cfg.IfName, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetup measures Setup alone; Teardown runs outside the timer.
func BenchmarkSetup(b *testing.B) {
	requirePlumbing(b)
	host, pod := newNetns(b, "host"), newNetns(b, "pod")
	p := New(nil)
	cfg := podConfig(pod, host, "10.244.0.5/24")
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := p.Setup(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := p.Teardown(ctx, cfg.NetnsPath, cfg.IfName, ""); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/crossnode"
	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
	"github.com/ovsnet/ovsnet/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// node is one node of a multi-node test: its own OVS (in its own network
// namespace, which is the node's), its own agent and its pods.
type node struct {
	t     *testing.T
	n     int
	o     *ovstest.OVS
	a     *runningAgent
	rt    *cnitest.Runtime
	cfg   agent.Config
	peers string
	pods  []*testPod
}

func (nd *node) ip() string      { return fmt.Sprintf("172.31.214.%d", nd.n) }
func (nd *node) podCIDR() string { return fmt.Sprintf("10.214.%d.0/24", nd.n) }

// twoNodes starts two nodes joined by an underlay veth (172.31.214.0/24),
// each running an agent in mode with the other as its peer, and two pods on
// each.
func twoNodes(t *testing.T, ctx context.Context, mode string) []*node {
	t.Helper()
	testenv.RequireCommands(t, "ip", "ping", "nft")
	bin, err := cnitest.SharedPluginDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*node{{t: t, n: 1}, {t: t, n: 2}}
	for _, nd := range nodes {
		nd.o = ovstest.Start(t, ovstest.Options{})
	}
	ns1, ns2 := nodes[0].o.Netns(), nodes[1].o.Netns()
	for _, args := range [][]string{
		{"ip", "-n", ns1, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0", "netns", ns2},
		{"ip", "-n", ns1, "addr", "add", nodes[0].ip() + "/24", "dev", "uplink0"},
		{"ip", "-n", ns2, "addr", "add", nodes[1].ip() + "/24", "dev", "uplink0"},
		{"ip", "-n", ns1, "link", "set", "uplink0", "up"},
		{"ip", "-n", ns2, "link", "set", "uplink0", "up"},
		// A default route through the uplink, as a node has: the move of
		// the address to the uplink bridge (tunnel modes) must keep it.
		{"ip", "-n", ns1, "route", "add", "default", "via", nodes[1].ip(), "dev", "uplink0"},
		{"ip", "-n", ns2, "route", "add", "default", "via", nodes[0].ip(), "dev", "uplink0"},
	} {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	// Every change of the nodes' routes, from before the agents start: a
	// node must never be without its default route, not even for the
	// moment between two netlink calls.
	monitors := make([]*routeMonitor, len(nodes))
	for i, nd := range nodes {
		monitors[i] = startRouteMonitor(t, ctx, nd.o)
	}
	for i, nd := range nodes {
		other := nodes[1-i]
		dir := t.TempDir()
		nd.peers = filepath.Join(dir, "peers", "peers.yaml")
		if err := os.MkdirAll(filepath.Dir(nd.peers), 0o755); err != nil {
			t.Fatal(err)
		}
		nd.writePeers(other)
		cfg := agent.Defaults()
		cfg.OVSDB, cfg.OVSRunDir, cfg.DatapathType, cfg.HealthAddr = nd.o.DBEndpoint(), nd.o.Dir(), "netdev", "127.0.0.1:0"
		// No --cluster-cidr: the peers' pod CIDRs alone must be exempt from
		// the masquerade.
		cfg.PodCIDR, cfg.NodeIP = nd.podCIDR(), nd.ip()
		cfg.TrafficMode, cfg.PeersFile = mode, nd.peers
		cfg.StateDir, cfg.CNISocket = dir+"/state", dir+"/cni.sock"
		cfg.HostNetns = nd.o.NetnsPath()
		nd.cfg = cfg
		a, err := agent.New(cfg, logger())
		if err != nil {
			t.Fatal(err)
		}
		nd.a = runAgent(t, a)
		if err := a.Status().WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.CrossNode().WaitStatus(ctx, func(st crossnode.Status) bool { return st.Synced }); err != nil {
			t.Fatal(err)
		}
		if out := nd.o.InNetns("ip", "-4", "route", "show", "default"); !strings.Contains(out, "via "+other.ip()) {
			t.Fatalf("node %d lost its default route via %s (routes: %s)", nd.n, other.ip(), nd.o.InNetns("ip", "-4", "route"))
		}
		if gap := monitors[i].defaultRouteGap(t, ctx, nd.o); gap != "" {
			t.Fatalf("node %d was without its default route for a moment while the agent started: %q", nd.n, gap)
		}
		if nd.rt, err = cnitest.NewRuntime(bin, dir+"/cache", cfg.CNISocket, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range nodes {
		for j := range 2 {
			n, err := cnitest.NewNetns(ctx, "ovsnet-mn-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Delete() })
			p := &testPod{Pod: cnitest.Pod{Name: fmt.Sprintf("n%d-p%d", nd.n, j), Namespace: "default",
				ContainerID: fmt.Sprintf("n%dp%d%s", nd.n, j, strings.Repeat("0", 22)), Netns: n.Path}, ns: n}
			res, err := nd.rt.Add(ctx, p.Pod)
			if err != nil {
				t.Fatalf("ADD %s: %v", p.Name, err)
			}
			p.ip = res.IPs[0].Address.IP.String()
			nd.pods = append(nd.pods, p)
		}
	}
	return nodes
}

func (nd *node) writePeers(peers ...*node) {
	nd.t.Helper()
	var b strings.Builder
	b.WriteString("peers:\n")
	for _, p := range peers {
		fmt.Fprintf(&b, "  - name: node-%d\n    nodeIP: %s\n    podCIDRs: [%s]\n", p.n, p.ip(), p.podCIDR())
	}
	// Atomically, as a ConfigMap update or an editor does.
	tmp := nd.peers + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		nd.t.Fatal(err)
	}
	if err := os.Rename(tmp, nd.peers); err != nil {
		nd.t.Fatal(err)
	}
}

// reach pings ip from netns until one answer comes (the first packet to a
// new underlay neighbour can be lost while OVS resolves its MAC), bounded
// by ctx.
func reach(ctx context.Context, netns, ip string) error {
	var out []byte
	var err error
	for ctx.Err() == nil {
		out, err = exec.CommandContext(ctx, "ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", ip).CombinedOutput()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("ping %s from %s: %v: %s", ip, netns, err, out)
}

// TestTwoNodes runs two agents on two nodes in each traffic mode and checks
// that every pod reaches every pod (ping and TCP) with its own source
// address, that a node reaches the other node's pods and they reach it, that
// nothing between pods is masqueraded, and that taking a peer out of the
// peers file removes its route and flows (and putting it back restores
// them) without disturbing the pods of the same node.
func TestTwoNodes(t *testing.T) {
	for _, mode := range []string{"noencap", "geneve", "vxlan"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			nodes := twoNodes(t, ctx, mode)
			var all []*testPod
			for _, nd := range nodes {
				all = append(all, nd.pods...)
			}
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			defer pcancel()
			var wg sync.WaitGroup
			errs := make(chan error, len(all)*len(all))
			for _, a := range all {
				for _, b := range all {
					if a == b {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := reach(pctx, a.ns.Name, b.ip); err != nil {
							errs <- err
						}
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				t.FailNow()
			}
			a, b := nodes[0].pods[0], nodes[1].pods[0]
			// Only the switch answers a pod's ARP for its gateway: were
			// the kernel to answer on the host end too, the pod would send
			// to the host end's MAC and the kernel would route copies.
			gw := netip.MustParsePrefix(nodes[0].podCIDR()).Addr().Next()
			macs, err := cnitest.ARPReplies(pctx, a.Netns, "eth0", netip.MustParseAddr(a.ip), gw, 300*time.Millisecond)
			if err != nil || len(macs) != 1 {
				t.Fatalf("ARP for the gateway %s from %s: %v answers %v, want exactly the switch's", gw, a.Name, err, macs)
			}
			// Each packet arrives once: neither node's kernel answers or
			// routes beside OVS (pod host ends, the uplink).
			for _, dst := range []string{b.ip, nodes[0].pods[1].ip, nodes[0].ip(), nodes[1].ip()} {
				out, err := a.ns.Exec(pctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)
				if err != nil || strings.Contains(out, "DUP!") {
					t.Fatalf("ping %s from %s: %v\n%s", dst, a.Name, err, out)
				}
			}
			// TCP across, and the receiver sees the sender's own address.
			if err := cnitest.TCPTransfer(pctx, a.Netns, b.Netns, b.ip, 4<<20); err != nil {
				t.Fatalf("TCP %s -> %s: %v", a.Name, b.Name, err)
			}
			echo, err := cnitest.StartEcho(b.Netns, b.ip, 8080)
			if err != nil {
				t.Fatal(err)
			}
			defer echo.Close()
			got, err := cnitest.TCPEcho(pctx, a.Netns, b.ip+":8080", "hello")
			if err != nil || got != "hello from "+a.ip {
				t.Fatalf("echo across nodes: %q, %v; want the client's own address %s", got, err, a.ip)
			}
			// The pod MTU is the underlay's minus the mode's overhead, and
			// a packet of exactly that size crosses (not fragmented).
			want := 1500
			if mode != "noencap" {
				want = 1450
			}
			if out, _ := a.ns.Exec(pctx, "cat", "/sys/class/net/eth0/mtu"); strings.TrimSpace(out) != fmt.Sprint(want) {
				t.Fatalf("pod MTU %q, want %d", strings.TrimSpace(out), want)
			}
			if out, err := a.ns.Exec(pctx, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", fmt.Sprint(want-28), b.ip); err != nil {
				t.Fatalf("a full-MTU packet across nodes: %v %s", err, out)
			}
			// Node -> remote pod and remote pod -> node.
			if err := reach(pctx, nodes[0].o.Netns(), b.ip); err != nil {
				t.Fatalf("node 1 -> pod on node 2: %v", err)
			}
			if err := reach(pctx, b.ns.Name, nodes[0].ip()); err != nil {
				t.Fatalf("pod on node 2 -> node 1: %v", err)
			}

			// Node 2 leaves node 1's peer list: its route and flows go,
			// node 1's own pods keep talking.
			nd := nodes[0]
			nd.writePeers()
			if err := nd.a.CrossNode().WaitStatus(pctx, func(st crossnode.Status) bool { return st.Synced && len(st.Peers) == 0 }); err != nil {
				t.Fatal(err)
			}
			if out := nd.o.InNetns("ip", "route", "show", "proto", "79"); strings.TrimSpace(out) != "" {
				t.Fatalf("routes to the removed peer left: %s", out)
			}
			for _, f := range (&podEnv{a: nd.a, ctx: ctx}).apiFlows(t) {
				if strings.HasPrefix(f.Owner, "peer/") {
					t.Fatalf("flow of the removed peer left: %s %s", f.Owner, f.Text)
				}
			}
			if err := reach(pctx, nd.pods[0].ns.Name, nd.pods[1].ip); err != nil {
				t.Fatalf("same-node traffic after the peer left: %v", err)
			}
			nd.writePeers(nodes[1])
			if err := nd.a.CrossNode().WaitStatus(pctx, func(st crossnode.Status) bool { return st.Synced && len(st.Peers) == 1 }); err != nil {
				t.Fatal(err)
			}
			if err := reach(pctx, a.ns.Name, b.ip); err != nil {
				t.Fatalf("after the peer came back: %v", err)
			}

			// ovs-vswitchd crashes and starts again on node 1 (a restart
			// of the OVS container): the agent passes the gate for the new
			// process and the node keeps its default route and its
			// address (in the tunnel modes both live on the uplink bridge's
			// device, which the new ovs-vswitchd takes down and up again to
			// set its MAC); cross-node traffic resumes.
			nd.o.KillVswitchd()
			nd.o.StartVswitchd(ovssandbox.Foreground)
			rctx, rcancel := context.WithTimeout(ctx, time.Minute)
			defer rcancel()
			nd.a.waitReadyFor(t, rctx, nd.o.VswitchdPID())
			if err := nd.a.CrossNode().WaitStatus(rctx, func(st crossnode.Status) bool { return st.Synced && len(st.Peers) == 1 }); err != nil {
				t.Fatal(err)
			}
			if err := reach(rctx, a.ns.Name, b.ip); err != nil {
				t.Fatalf("pod on node 1 -> pod on node 2 after ovs-vswitchd restarted on node 1: %v (routes: %s)", err, nd.o.InNetns("ip", "-4", "route"))
			}
			if out := nd.o.InNetns("ip", "-4", "route", "show", "default"); !strings.Contains(out, "via "+nodes[1].ip()) {
				t.Fatalf("node 1 lost its default route after ovs-vswitchd restarted (routes: %s)", nd.o.InNetns("ip", "-4", "route"))
			}
			if err := reach(rctx, nodes[0].o.Netns(), b.ip); err != nil {
				t.Fatalf("node 1 -> pod on node 2 after ovs-vswitchd restarted: %v (addresses: %s)", err, nd.o.InNetns("ip", "-4", "addr"))
			}
		})
	}
}

// A pod MTU that cannot cross the underlay with the mode's overhead is
// refused at start-up (the userspace datapath would drop such packets
// without a word), naming the numbers; unset, it is derived.
func TestMTUThatCannotCrossIsRefused(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := cnitest.NewNetns(ctx, "ovsnet-mtu-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n.Delete() }()
	for _, args := range [][]string{
		{"ip", "-n", n.Name, "link", "add", "up0", "type", "veth", "peer", "name", "up1"},
		{"ip", "-n", n.Name, "addr", "add", "172.31.215.1/24", "dev", "up0"},
	} {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	cfg := agent.Defaults()
	cfg.PodCIDR, cfg.NodeIP, cfg.HostNetns, cfg.StateDir = "10.215.1.0/24", "172.31.215.1", n.Path, t.TempDir()
	cfg.MTU, cfg.TrafficMode = 1500, "geneve"
	if _, err := agent.New(cfg, logger()); err == nil || !strings.Contains(err.Error(), "at most 1450") {
		t.Fatalf("--mtu 1500 with geneve over a 1500 uplink: %v, want a refusal naming 1450", err)
	}
	cfg.TrafficMode = "noencap"
	if _, err := agent.New(cfg, logger()); err != nil {
		t.Fatalf("--mtu 1500 routed over a 1500 uplink: %v", err)
	}
}

// With ovs-vswitchd started with userspace-tso-enable, pods keep their
// checksum offloads in routed mode (and TCP works); with a tunnel mode the
// agent refuses to become ready and says why.
func TestUserspaceTSO(t *testing.T) {
	testenv.RequireCommands(t, "ip", "ethtool", "nft")
	for _, mode := range []string{"noencap", "geneve"} {
		t.Run(mode, func(t *testing.T) {
			o := ovstest.Start(t, ovstest.Options{NoVswitchd: true})
			o.Vsctl("--no-wait", "init", "--", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true")
			o.StartVswitchd(ovssandbox.Detached)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			cfg := agent.Defaults()
			cfg.OVSDB, cfg.OVSRunDir, cfg.DatapathType, cfg.HealthAddr = o.DBEndpoint(), o.Dir(), "netdev", "127.0.0.1:0"
			cfg.PodCIDR, cfg.TrafficMode, cfg.StateDir, cfg.CNISocket = "10.216.1.0/24", mode, dir+"/state", dir+"/cni.sock"
			cfg.HostNetns = o.NetnsPath()
			a, err := agent.New(cfg, logger())
			if err != nil {
				t.Fatal(err)
			}
			runAgent(t, a)
			if mode == "geneve" {
				err := a.Status().WaitFor(ctx, func(st health.Status) bool { return strings.Contains(st.Reason, "userspace-tso-enable") })
				if err != nil {
					t.Fatalf("agent with TSO and a tunnel mode: %v, want it not ready naming userspace-tso-enable", err)
				}
				return
			}
			if err := a.Status().WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			e := &podEnv{t: t, o: o, ctx: ctx, cfg: cfg}
			bin, err := cnitest.SharedPluginDir(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e.rt, err = cnitest.NewRuntime(bin, dir+"/cache", cfg.CNISocket, ""); err != nil {
				t.Fatal(err)
			}
			p, q := e.newPod(), e.newPod()
			e.add(p)
			e.add(q)
			if out, _ := p.ns.Exec(ctx, "ethtool", "-k", "eth0"); !strings.Contains(out, "tx-checksumming: on") {
				t.Fatalf("pod offloads with userspace TSO: %s", out)
			}
			if err := cnitest.TCPTransfer(ctx, p.Netns, q.Netns, q.ip, 16<<20); err != nil {
				t.Fatalf("TCP between pods with offloads on: %v", err)
			}
		})
	}
}

// routeMonitor follows the route changes of a network namespace.
type routeMonitor struct {
	mu      sync.Mutex
	updates []netlink.RouteUpdate
	grew    chan struct{}
}

// startRouteMonitor subscribes before it returns: every change made after
// it is reported.
func startRouteMonitor(t *testing.T, ctx context.Context, o *ovstest.OVS) *routeMonitor {
	t.Helper()
	h, err := netns.GetFromPath(o.NetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	m := &routeMonitor{grew: make(chan struct{})}
	ch, done := make(chan netlink.RouteUpdate, 256), make(chan struct{})
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for u := range ch {
			m.mu.Lock()
			m.updates = append(m.updates, u)
			close(m.grew)
			m.grew = make(chan struct{})
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(done); <-finished })
	return m
}

// defaultRouteGap returns the first sign so far that the default route was
// gone for a moment (or ""). A marker route added and awaited first makes "so far" include
// every change made before the call: changes are reported in order.
func (m *routeMonitor) defaultRouteGap(t *testing.T, ctx context.Context, o *ovstest.OVS) string {
	t.Helper()
	marker := netip.MustParsePrefix("198.18.255.1/32")
	o.InNetns("ip", "route", "add", "blackhole", marker.String())
	defer o.InNetns("ip", "route", "del", "blackhole", marker.String())
	for {
		m.mu.Lock()
		updates, grew := slices.Clone(m.updates), m.grew
		m.mu.Unlock()
		for _, u := range updates {
			if u.Dst == nil || u.Dst.String() != marker.String() {
				continue
			}
			// A default route that is replaced in place is reported as a
			// new route with NLM_F_REPLACE; one created afresh (without
			// it) had been gone, the kernel having flushed it without a
			// word (routes flushed with an address or a link are not
			// reported as deleted).
			for _, u := range updates {
				if u.Dst != nil && u.Dst.String() != "0.0.0.0/0" {
					continue
				}
				if u.Type == unix.RTM_DELROUTE || u.NlFlags&unix.NLM_F_REPLACE == 0 {
					return fmt.Sprintf("%s (message type %d, flags %#x)", u.Route, u.Type, u.NlFlags)
				}
			}
			return ""
		}
		select {
		case <-grew:
		case <-ctx.Done():
			t.Fatalf("route monitor never reported the marker route: %v", ctx.Err())
		}
	}
}

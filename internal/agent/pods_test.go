package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/podnet"
	"github.com/ovsnet/ovsnet/internal/testenv"
)

type podEnv struct {
	t     *testing.T
	o     *ovstest.OVS
	a     *runningAgent
	rt    *cnitest.Runtime
	ctx   context.Context
	cfg   agent.Config
	mu    sync.Mutex
	count int
}

func newPodEnv(t *testing.T, mutate func(*agent.Config)) *podEnv {
	t.Helper()
	testenv.RequireCommands(t, "ip", "ping", "nft")
	o := ovstest.Start(t, ovstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	bin, err := cnitest.SharedPluginDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := agent.Defaults()
	cfg.OVSDB, cfg.OVSRunDir, cfg.DatapathType, cfg.HealthAddr = o.DBEndpoint(), o.Dir(), "netdev", "127.0.0.1:0"
	cfg.PodCIDR = "10.244.7.0/24"
	cfg.StateDir = dir + "/state"
	cfg.CNISocket = dir + "/cni.sock"
	cfg.HostNetns = o.NetnsPath()
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := agent.New(cfg, logger())
	if err != nil {
		t.Fatal(err)
	}
	ra := runAgent(t, a)
	if err := a.Status().WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	rt, err := cnitest.NewRuntime(bin, dir+"/cache", cfg.CNISocket, "")
	if err != nil {
		t.Fatal(err)
	}
	return &podEnv{t: t, o: o, a: ra, rt: rt, ctx: ctx, cfg: cfg}
}

func runAgent(t *testing.T, a *agent.Agent) *runningAgent {
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, exited: make(chan error, 1), cancel: cancel}
	go func() { ra.exited <- a.Run(ctx) }()
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

// stop ends the agent and waits for Run to return; it is idempotent.
func (ra *runningAgent) stop(t *testing.T) {
	ra.once.Do(func() {
		ra.cancel()
		if err := <-ra.exited; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
}

// podPorts counts the bridge's pod ports ("ovsn" and 11 hex digits; the
// gateway and the tunnel port are not pods).
func (e *podEnv) podPorts() int {
	n := 0
	for _, p := range strings.Fields(e.o.Vsctl("list-ports", "br-int")) {
		if podPortRE.MatchString(p) {
			n++
		}
	}
	return n
}

var podPortRE = regexp.MustCompile(`^ovsn[0-9a-f]{11}$`)

type testPod struct {
	cnitest.Pod
	ns *cnitest.Netns
	ip string
}

func (e *podEnv) newPod() *testPod {
	e.t.Helper()
	n, err := cnitest.NewNetns(e.ctx, "ovsnet-pod-")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = n.Delete() })
	e.mu.Lock()
	e.count++
	i := e.count
	e.mu.Unlock()
	return &testPod{Pod: cnitest.Pod{Name: fmt.Sprintf("pod-%d", i), Namespace: "default",
		ContainerID: fmt.Sprintf("c%06d%s", i, strings.Repeat("0", 20)), Netns: n.Path}, ns: n}
}

func (e *podEnv) add(p *testPod) {
	e.t.Helper()
	res, err := e.rt.Add(e.ctx, p.Pod)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", p.Name, err)
	}
	if len(res.IPs) != 1 {
		e.t.Fatalf("ADD %s: %d IPs", p.Name, len(res.IPs))
	}
	p.ip = res.IPs[0].Address.IP.String()
}

func (p *testPod) ping(t *testing.T, ctx context.Context, ip string) error {
	t.Helper()
	out, err := p.ns.Exec(ctx, "ping", "-c", "1", "-W", "5", ip)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v: %s", ip, p.Name, err, out)
	}
	return nil
}

func TestPodsPingAndTCP(t *testing.T) {
	e := newPodEnv(t, nil)
	a, b := e.newPod(), e.newPod()
	e.add(a)
	e.add(b)
	if a.ip == b.ip {
		t.Fatalf("both pods got %s", a.ip)
	}
	for _, tc := range []struct {
		from *testPod
		to   string
	}{{a, b.ip}, {b, a.ip}, {a, "10.244.7.1"}} {
		if err := tc.from.ping(t, e.ctx, tc.to); err != nil {
			t.Fatal(err)
		}
	}
	// Host (the gateway side, where ovs-vswitchd runs) to pod.
	if out, err := e.o.Sandbox.InNetns(e.ctx, "ping", "-c", "1", "-W", "5", a.ip); err != nil {
		t.Fatalf("host -> pod: %v %s", err, out)
	}
	// TCP between pods: 4 MiB through the userspace datapath.
	if err := cnitest.TCPTransfer(e.ctx, a.ns.Path, b.ns.Path, b.ip, 4<<20); err != nil {
		t.Fatal(err)
	}
	// CHECK passes; the result is idempotent on a repeated ADD.
	if err := e.rt.Check(e.ctx, a.Pod); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	res, err := e.rt.Add(e.ctx, a.Pod)
	if err != nil || res.IPs[0].Address.IP.String() != a.ip {
		t.Fatalf("second ADD: %v %v", err, res)
	}
	// DEL frees the port and the address; a second DEL succeeds.
	if err := e.rt.Del(e.ctx, a.Pod); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Del(e.ctx, a.Pod); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	if n := e.podPorts(); n != 1 {
		t.Fatalf("%d pod ports after DEL, want 1", n)
	}
	if err := b.ping(t, e.ctx, a.ip); err == nil {
		t.Fatal("deleted pod still reachable")
	}
}

// SpoofGuard, asserted where a forged packet would arrive: pod a sends UDP
// to pod c from b's address, from a MAC not its own, and as b entirely
// (b's address and MAC); c counts datagrams by source. A control batch from
// a's true identity follows each forgery through the same port and must
// arrive, so when it has, the forged ones had their chance. Finally the
// test shows it can fail: with a flow above SpoofGuard that lets everything
// through, the same forged datagrams reach c.
func TestSpoofGuardAtTheReceiver(t *testing.T) {
	e := newPodEnv(t, nil)
	a, b, c := e.newPod(), e.newPod(), e.newPod()
	e.add(a)
	e.add(b)
	e.add(c)
	const port = 9999
	rx, err := cnitest.ListenUDP(c.ns.Path, c.ip, port)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	sh := func(args ...string) {
		t.Helper()
		if out, err := a.ns.Exec(e.ctx, args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	send := func(src string, n int) {
		t.Helper()
		if err := cnitest.SendUDP(a.ns.Path, src, c.ip, port, n); err != nil {
			t.Fatal(err)
		}
	}
	// a knows c's MAC (so no ARP of its own is needed) and, as far as its
	// own kernel goes, owns b's address too.
	cMAC := podnet.MACFromIP(netip.MustParseAddr(c.ip)).String()
	sh("ip", "neigh", "replace", c.ip, "lladdr", cMAC, "dev", "eth0", "nud", "permanent")
	sh("ip", "addr", "add", b.ip+"/32", "dev", "eth0")
	aMAC := podnet.MACFromIP(netip.MustParseAddr(a.ip)).String()
	bMAC := podnet.MACFromIP(netip.MustParseAddr(b.ip)).String()
	truthful := 0
	fence := func(what string) {
		t.Helper()
		send(a.ip, 5)
		truthful += 5
		if err := rx.WaitFrom(e.ctx, a.ip, truthful); err != nil {
			t.Fatalf("control datagrams after %s: %v", what, err)
		}
	}
	fence("nothing")

	send(b.ip, 20)
	fence("a forged source address")
	if n := rx.From(b.ip); n != 0 {
		t.Fatalf("%d datagrams with b's address, sent by a, arrived at c", n)
	}

	sh("ip", "link", "set", "eth0", "address", "0a:58:0a:f4:07:77")
	send(a.ip, 20)
	sh("ip", "link", "set", "eth0", "address", aMAC)
	fence("a forged MAC")
	if n := rx.From(a.ip); n != truthful {
		t.Fatalf("%d datagrams from a arrived at c, %d sent from its own MAC: frames from a forged MAC got through", n, truthful)
	}

	sh("ip", "link", "set", "eth0", "address", bMAC)
	send(b.ip, 20)
	sh("ip", "link", "set", "eth0", "address", aMAC)
	fence("b's address and MAC from a's port")
	if n := rx.From(b.ip); n != 0 {
		t.Fatalf("%d datagrams as b (its address and MAC), sent from a's port, arrived at c", n)
	}

	// The same check with SpoofGuard bypassed must see the forgery.
	e.o.Ofctl("-O", "OpenFlow13", "add-flow", "br-int", "table=10,priority=65000,actions=goto_table:20")
	send(b.ip, 20)
	if err := rx.WaitFrom(e.ctx, b.ip, 1); err != nil {
		t.Fatalf("with SpoofGuard bypassed, no forged datagram arrived either: the assertion could not fail: %v", err)
	}
	e.o.Ofctl("-O", "OpenFlow13", "--strict", "del-flows", "br-int", "table=10,priority=65000")
	if err := c.ping(t, e.ctx, b.ip); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAdds(t *testing.T) {
	e := newPodEnv(t, nil)
	const n = 30
	list := make([]*testPod, n)
	for i := range list {
		list[i] = e.newPod()
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, p := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.rt.Add(e.ctx, p.Pod); err != nil {
				errs <- fmt.Errorf("%s: %w", p.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ips := map[string]bool{}
	for _, p := range e.a.Pods().Attachments() {
		if ips[p.IP.String()] {
			t.Fatalf("address %s handed out twice", p.IP)
		}
		ips[p.IP.String()] = true
	}
	if len(ips) != n {
		t.Fatalf("%d attachments, want %d", len(ips), n)
	}
	// GC keeping only the first 10 removes the rest.
	var keep []cnitest.Pod
	for _, p := range list[:10] {
		keep = append(keep, p.Pod)
	}
	if err := e.rt.GC(e.ctx, keep...); err != nil {
		t.Fatal(err)
	}
	if got := len(e.a.Pods().Attachments()); got != 10 {
		t.Fatalf("%d attachments after GC, want 10", got)
	}
	if got := e.podPorts(); got != 10 {
		t.Fatalf("%d pod ports after GC, want 10", got)
	}
}

func TestAgentDownIsTryAgainLater(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin, err := cnitest.SharedPluginDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rt, err := cnitest.NewRuntime(bin, dir, dir+"/no-agent.sock", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Add(ctx, cnitest.Pod{ContainerID: "c1", Netns: "/run/netns/none"})
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrTryAgainLater {
		t.Fatalf("ADD with no agent: %v, want code 11", err)
	}
}

// The asynchronous model: ADD declares the port and returns before the
// interface exists; the interface appears seconds later; flows follow the
// port, and CHECK says "try again later" until they are in.
func TestAsyncInterfaces(t *testing.T) {
	release := make(chan struct{})
	e := newPodEnv(t, func(c *agent.Config) {
		c.AsyncInterfaces = true
		c.PlumbHook = func(ctx context.Context, _ attachments.Attachment) {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	})
	a, b := e.newPod(), e.newPod()
	e.add(a)
	e.add(b)
	// ADD has returned; no interface exists in the pod yet.
	if out, err := a.ns.Exec(e.ctx, "ip", "link", "show", "eth0"); err == nil {
		t.Fatalf("eth0 exists before the asynchronous setup: %s", out)
	}
	err := e.rt.Check(e.ctx, a.Pod)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrTryAgainLater {
		t.Fatalf("CHECK before the interface exists: %v, want code 11", err)
	}
	// The interfaces appear two seconds later (the timer only schedules
	// that; the test then waits on the agent's readiness condition).
	time.AfterFunc(2*time.Second, func() { close(release) })
	for _, p := range []*testPod{a, b} {
		if err := e.a.Pods().WaitReady(e.ctx, p.ContainerID, "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rt.Check(e.ctx, a.Pod); err != nil {
		t.Fatalf("CHECK after the interface appeared: %v", err)
	}
	if err := a.ping(t, e.ctx, b.ip); err != nil {
		t.Fatal(err)
	}
}

// An agent restart rebuilds its state from OVSDB and reinstalls flows under a
// new cookie round in one bundle: traffic between existing pods never stops,
// and new pods get new addresses.
func TestAgentRestartKeepsTraffic(t *testing.T) {
	e := newPodEnv(t, nil)
	a, b := e.newPod(), e.newPod()
	e.add(a)
	e.add(b)

	// A ping every 10 ms for the whole restart.
	pingCtx, stopPing := context.WithCancel(e.ctx)
	defer stopPing()
	ping := exec.CommandContext(pingCtx, "ip", "netns", "exec", a.ns.Name, "ping", "-i", "0.01", "-W", "1", b.ip)
	ping.Cancel = func() error { return ping.Process.Signal(os.Interrupt) }
	var out strings.Builder
	ping.Stdout = &out
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}

	first := e.a
	round := first.FlowRound()
	// Stop the first agent (as a DaemonSet rollout would) and start a new
	// one on the same OVS, state dir and socket.
	first.stop(t)
	second, err := agent.New(e.cfg, logger())
	if err != nil {
		t.Fatal(err)
	}
	e.a = runAgent(t, second)
	if err := second.Status().WaitReady(e.ctx); err != nil {
		t.Fatal(err)
	}
	if second.FlowRound() == round {
		t.Fatalf("flow round %d reused after restart", round)
	}
	if got := len(second.Pods().Attachments()); got != 2 {
		t.Fatalf("%d attachments restored, want 2", got)
	}
	// A few more pings on the new agent's flows, then stop.
	if err := a.ping(t, e.ctx, b.ip); err != nil {
		t.Fatal(err)
	}
	stopPing()
	_ = ping.Wait()
	sent, recv := pingCounts(out.String())
	if sent == 0 || recv != sent {
		t.Fatalf("ping during the restart: %d sent, %d received\n%s", sent, recv, lastLines(out.String(), 3))
	}
	t.Logf("ping during restart: %d/%d", recv, sent)

	// Old pods keep their addresses; a new pod gets a fresh one.
	c := e.newPod()
	e.add(c)
	if c.ip == a.ip || c.ip == b.ip {
		t.Fatalf("new pod got an address in use: %s", c.ip)
	}
	if err := c.ping(t, e.ctx, a.ip); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Check(e.ctx, a.Pod); err != nil {
		t.Fatalf("CHECK of a restored pod: %v", err)
	}
}

func pingCounts(out string) (sent, recv int) {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "packets transmitted") {
			_, _ = fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &recv)
		}
	}
	return sent, recv
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// A /29 has five pod addresses: the sixth ADD fails with a clear error, a
// DEL frees one, and the next ADD gets an address again. DEL of a container
// the agent never saw succeeds.
func TestExhaustionAndUnknownDel(t *testing.T) {
	e := newPodEnv(t, func(c *agent.Config) { c.PodCIDR = "10.244.9.0/29" })
	var list []*testPod
	for range 5 {
		p := e.newPod()
		e.add(p)
		list = append(list, p)
	}
	extra := e.newPod()
	_, err := e.rt.Add(e.ctx, extra.Pod)
	if err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("sixth ADD in a /29: %v, want an exhaustion error", err)
	}
	if err := e.rt.Del(e.ctx, list[0].Pod); err != nil {
		t.Fatal(err)
	}
	e.add(extra)
	if err := extra.ping(t, e.ctx, list[1].ip); err != nil {
		t.Fatal(err)
	}
	ghost := e.newPod()
	if err := e.rt.Del(e.ctx, ghost.Pod); err != nil {
		t.Fatalf("DEL of an unknown container: %v", err)
	}
	// Full again: STATUS tells the runtime no pod can be added (code 50),
	// and why; once an address is free it is available again.
	err = e.rt.Status(e.ctx)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrPluginNotAvailable || !strings.Contains(ce.Msg, "exhausted") {
		t.Fatalf("STATUS with the pod CIDR exhausted: %v, want code 50 naming the exhaustion", err)
	}
	if err := e.rt.Del(e.ctx, list[1].Pod); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Status(e.ctx); err != nil {
		t.Fatalf("STATUS with a free address: %v", err)
	}
}

// Pod traffic to an address outside the pod CIDR leaves through the
// gateway and is masqueraded to the node's address.
func TestMasqueradeToOutside(t *testing.T) {
	e := newPodEnv(t, nil)
	p := e.newPod()
	e.add(p)
	// "Outside": a namespace linked to the node's namespace (where OVS and
	// the gateway live) by a veth, 192.0.2.0/24.
	out, err := cnitest.NewNetns(e.ctx, "ovsnet-out-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Delete() })
	node := e.o.Netns()
	for _, args := range [][]string{
		{"ip", "-n", node, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", out.Name},
		{"ip", "-n", node, "addr", "add", "192.0.2.1/24", "dev", "uplink0"},
		{"ip", "-n", node, "link", "set", "uplink0", "up"},
		{"ip", "-n", out.Name, "addr", "add", "192.0.2.2/24", "dev", "eth0"},
		{"ip", "-n", out.Name, "link", "set", "eth0", "up"},
	} {
		if b, err := exec.CommandContext(e.ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, b)
		}
	}
	// The outside has no route to the pod CIDR: only a masqueraded reply
	// (to 192.0.2.1) can come back.
	if err := p.ping(t, e.ctx, "192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	nat := e.o.InNetns("nft", "list", "table", "ip", "ovsnet")
	if !strings.Contains(nat, "masquerade") || !strings.Contains(nat, e.cfg.PodCIDR) {
		t.Fatalf("nftables table: %s", nat)
	}
}

// A sandbox whose network namespace disappears without a CNI DEL is
// garbage-collected: port and address are freed.
func TestVanishedSandboxCollected(t *testing.T) {
	e := newPodEnv(t, nil)
	a, b := e.newPod(), e.newPod()
	e.add(a)
	e.add(b)
	if err := a.ns.Delete(); err != nil {
		t.Fatal(err)
	}
	err := e.a.Pods().WaitAttachments(e.ctx, func(list []attachments.Attachment) bool {
		return len(list) == 1 && list[0].ContainerID == b.ContainerID
	})
	if err != nil {
		t.Fatalf("attachment of the removed sandbox not collected: %v", err)
	}
	if n := e.podPorts(); n != 1 {
		t.Fatalf("%d pod ports after GC, want 1", n)
	}
	// New pods still attach; next-fit does not hand out the freed address
	// at once (stale neighbour entries elsewhere may still point at it).
	c := e.newPod()
	e.add(c)
	if c.ip == a.ip {
		t.Fatalf("next-fit reused the just-freed address %s at once", a.ip)
	}
}

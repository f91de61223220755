//go:build e2e

package suite

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ovsnet/ovsnet/e2e/framework"
)

// The tests of a cluster of several nodes (E2E_NODES=2 and more: the netns
// layout, ovsnet as its DaemonSet). They skip on one node.

const (
	// peerDeadline bounds the wait for a node's ovsnet to take a peer
	// node's route and flows in or out (one informer event).
	peerDeadline = time.Minute
	// hostWebPort is where the hostNetwork web pods listen, on their
	// node's addresses.
	hostWebPort = 18080
	// bigSize is the file every web pod serves at /big: large enough that
	// a TCP transfer crosses the MTU, the segmentation and the checksum
	// offloads of both nodes many times.
	bigSize = 1 << 20
)

// multiNode loads a cluster with ovsnet and at least two nodes, and its
// nodes.
func multiNode(t *testing.T, ctx context.Context) (*framework.Cluster, []framework.Node) {
	t.Helper()
	c := ovsnetCluster(t)
	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) < 2 {
		t.Skipf("needs two nodes or more (make e2e-multinode, or E2E_NODES=2 e2e/run.sh up); the cluster in %s has %d", c.Lab, len(nodes))
	}
	return c, nodes
}

// webCommand serves name at /, bigSize bytes derived from name at /big and
// the client's address at /cgi-bin/peer (busybox httpd's CGI sets
// REMOTE_ADDR), on port.
func webCommand(name string, port int) []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf(`set -e
mkdir -p /www/cgi-bin
echo %[1]s >/www/index.html
yes %[1]s | head -c %[2]d >/www/big
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n' >/www/cgi-bin/peer
chmod +x /www/cgi-bin/peer
exec httpd -f -p %[3]d -h /www`, name, bigSize, port)}
}

// bigSum is the MD5 of what webCommand serves at /big for name.
func bigSum(name string) string {
	b := []byte(strings.Repeat(name+"\n", bigSize/(len(name)+1)+1))[:bigSize]
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// webPod is a web pod on node; hostNetwork ones serve on hostWebPort of
// the node's addresses, the others on webPort.
func webPod(c *framework.Cluster, ns, name, node string, hostNetwork bool, labels map[string]string) *corev1.Pod {
	port := webPort
	if hostNetwork {
		port = hostWebPort
	}
	spec := c.BusyboxPodSpec(webCommand(name, port)...)
	spec.NodeName = node
	spec.HostNetwork = hostNetwork
	spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}},
		PeriodSeconds: 1,
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Spec: spec}
}

// target is what a probe reaches: a web pod (or a node's hostNetwork web
// pod) at addr.
type target struct {
	Name string
	Node string
	Addr netip.AddrPort
	// Pod is false for a node's own address.
	Pod bool
}

func (tg target) arg() string {
	return fmt.Sprintf("%s=%s=%s", tg.Addr, tg.Name, bigSum(tg.Name))
}

// pairScript runs in a source pod, for every ADDR:PORT=NAME=MD5 argument:
// three pings (a target that answers none is unreachable; fewer than
// three is reported as loss), then the 1 MiB /big over TCP compared by
// MD5, then the source address the server saw. Each step runs for all
// targets at once, the steps one after the other, so that the bulk
// transfers do not crowd out the pings. Prints FAIL, LOSS and PEER lines.
const pairScript = `
for t in "$@"; do
	ap=${t%%=*}; rest=${t#*=}; name=${rest%%=*}; ip=${ap%:*}
	( r=$(ping -c 3 -w 6 -q "$ip" 2>&1 | sed -n 's/.*, \([0-9]*\) packets received.*/\1/p')
	  case ${r:-0} in 0) echo "FAIL ping $ap ($name): no reply to 3 pings" ;; 3) ;; *) echo "LOSS ping $ap ($name): $r of 3 replies" ;; esac ) &
done
wait
for t in "$@"; do
	ap=${t%%=*}; rest=${t#*=}; name=${rest%%=*}; sum=${rest#*=}
	( got=$(timeout 30 wget -q -O - "http://$ap/big" 2>/dev/null | md5sum | cut -d' ' -f1)
	  [ "$got" = "$sum" ] || echo "FAIL tcp $ap ($name): /big has MD5 $got, want $sum" ) &
done
wait
for t in "$@"; do
	ap=${t%%=*}
	( p=$(timeout 10 wget -q -O - "http://$ap/cgi-bin/peer" 2>&1); echo "PEER $ap $p" ) &
done
wait
`

var peerLine = regexp.MustCompile(`^PEER (\S+) (\S*)`)

// probe runs pairScript in pod (of namespace ns) against targets and
// returns the failures, the pings lost on reachable targets, and the
// source address each target saw (IPv4-mapped and bracketed as busybox
// httpd reports it: normalised).
func probe(ctx context.Context, c *framework.Cluster, ns, pod string, targets []target) (fails, losses []string, peers map[string]string, err error) {
	args := []string{"sh", "-c", pairScript, "probe"}
	for _, tg := range targets {
		args = append(args, tg.arg())
	}
	out, err := c.Exec(ctx, ns, pod, args...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("probe from %s: %w\n%s", pod, err, out)
	}
	peers = map[string]string{}
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "FAIL "):
			fails = append(fails, strings.TrimPrefix(line, "FAIL "))
		case strings.HasPrefix(line, "LOSS "):
			losses = append(losses, strings.TrimPrefix(line, "LOSS "))
		default:
			if m := peerLine.FindStringSubmatch(line); m != nil {
				addr := strings.TrimPrefix(strings.Trim(m[2], "[]"), "::ffff:")
				peers[m[1]] = addr
			}
		}
	}
	return fails, losses, peers, nil
}

// startWebPods creates the pods and waits until they are Ready; it returns
// them by name.
func startWebPods(t *testing.T, ctx context.Context, c *framework.Cluster, ns string, pods ...*corev1.Pod) map[string]*corev1.Pod {
	t.Helper()
	want := map[string]bool{}
	for _, p := range pods {
		want[p.Name] = true
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]*corev1.Pod{}
	err := c.WatchPods(ctx, ns, "", func(cur map[string]*corev1.Pod) (bool, error) {
		for n := range want {
			p, ok := cur[n]
			if !ok {
				return false, nil
			}
			if p.Status.Phase == corev1.PodFailed {
				return false, fmt.Errorf("pod %s failed: %s", n, framework.Describe(map[string]*corev1.Pod{n: p}))
			}
			if !framework.PodReady(p) {
				return false, nil
			}
			got[n] = p
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("pods Ready: %v", err)
	}
	return got
}

func podTarget(p *corev1.Pod) target {
	ip := netip.MustParseAddr(p.Status.PodIP)
	return target{Name: p.Name, Node: p.Spec.NodeName, Addr: netip.AddrPortFrom(ip, webPort), Pod: true}
}

// runProbes probes every target from every source pod (two sources at a
// time) and reports each failure; lost pings of reachable targets are
// logged. It returns how many pairs were checked and how many of them
// crossed nodes, counting only targets other than the source itself.
func runProbes(t *testing.T, ctx context.Context, c *framework.Cluster, ns string, sources []*corev1.Pod, targets []target, checkPeer bool) (pairs, cross int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, src := range sources {
		var mine []target
		for _, tg := range targets {
			if tg.Name == src.Name {
				continue
			}
			mine = append(mine, tg)
			pairs++
			if tg.Node != src.Spec.NodeName {
				cross++
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fails, losses, peers, err := probe(ctx, c, src.Namespace, src.Name, mine)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			for _, f := range fails {
				t.Errorf("%s (node %s) -> %s", src.Name, src.Spec.NodeName, f)
			}
			for _, l := range losses {
				t.Logf("%s (node %s) -> %s (reachable)", src.Name, src.Spec.NodeName, l)
			}
			if !checkPeer || src.Spec.HostNetwork {
				return
			}
			for _, tg := range mine {
				if !tg.Pod {
					continue
				}
				// Pod to pod, on one node or across: no SNAT.
				if got := peers[tg.Addr.String()]; got != src.Status.PodIP {
					t.Errorf("%s (node %s, %s) -> %s (node %s): the server saw the client as %q, want its pod address",
						src.Name, src.Spec.NodeName, src.Status.PodIP, tg.Name, tg.Node, got)
				}
			}
		}()
	}
	wg.Wait()
	return pairs, cross
}

// Every pod reaches every other pod, on its node and on every other node:
// ICMP, 1 MiB over TCP (MD5 compared), and the destination sees the
// source's own pod address. Two pods per node.
func TestMultiNodePodToPod(t *testing.T) {
	ctx := deadline(t, 5*time.Minute)
	c, nodes := multiNode(t, ctx)
	ns := namespace(t, ctx, c, "ovsnet-e2e-mn-pods")
	var specs []*corev1.Pod
	for _, n := range nodes {
		for i := range 2 {
			specs = append(specs, webPod(c, ns, fmt.Sprintf("web-%s-%d", n.Name, i), n.Name, false, nil))
		}
	}
	pods := startWebPods(t, ctx, c, ns, specs...)
	var sources []*corev1.Pod
	var targets []target
	for _, p := range specs {
		got := pods[p.Name]
		sources = append(sources, got)
		targets = append(targets, podTarget(got))
		if !nodeOf(nodes, got.Spec.NodeName).PodCIDR.Contains(netip.MustParseAddr(got.Status.PodIP)) {
			t.Errorf("pod %s has %s, outside the pod CIDR of its node %s", got.Name, got.Status.PodIP, got.Spec.NodeName)
		}
	}
	pairs, cross := runProbes(t, ctx, c, ns, sources, targets, true)
	if !t.Failed() {
		t.Logf("%d nodes, %d pods: all %d ordered pairs reachable (%d across nodes): ping, 1 MiB over TCP, source address kept",
			len(nodes), len(sources), pairs, cross)
	}
}

func nodeOf(nodes []framework.Node, name string) framework.Node {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return framework.Node{Name: name}
}

// Every node reaches every pod, on it and on the other nodes, and every pod
// reaches every node's address: ICMP and 1 MiB over TCP each way. The node
// side is a hostNetwork pod per node (it shares the node's network
// namespace); the test process also fetches from every pod through each
// node's namespace.
func TestMultiNodeNodeToPod(t *testing.T) {
	ctx := deadline(t, 5*time.Minute)
	c, nodes := multiNode(t, ctx)
	ns := namespace(t, ctx, c, "ovsnet-e2e-mn-node")
	var specs []*corev1.Pod
	for _, n := range nodes {
		specs = append(specs, webPod(c, ns, "host-"+n.Name, n.Name, true, nil), webPod(c, ns, "web-"+n.Name, n.Name, false, nil))
	}
	pods := startWebPods(t, ctx, c, ns, specs...)
	var hosts, webs []*corev1.Pod
	var podTargets, nodeTargets []target
	for _, n := range nodes {
		h, w := pods["host-"+n.Name], pods["web-"+n.Name]
		hosts, webs = append(hosts, h), append(webs, w)
		podTargets = append(podTargets, podTarget(w))
		nodeTargets = append(nodeTargets, target{Name: h.Name, Node: n.Name, Addr: netip.AddrPortFrom(n.IP, hostWebPort)})
	}
	t.Run("node-to-pod", func(t *testing.T) {
		pairs, cross := runProbes(t, ctx, c, ns, hosts, podTargets, false)
		if !t.Failed() {
			t.Logf("%d node -> pod pairs (%d to another node's pod): ping and 1 MiB over TCP", pairs, cross)
		}
	})
	t.Run("pod-to-node", func(t *testing.T) {
		pairs, cross := runProbes(t, ctx, c, ns, webs, nodeTargets, false)
		if !t.Failed() {
			t.Logf("%d pod -> node pairs (%d to another node): ping and 1 MiB over TCP", pairs, cross)
		}
	})
	t.Run("test-process-through-node-namespaces", func(t *testing.T) {
		for _, n := range nodes {
			for _, w := range webs {
				url := "http://" + net.JoinHostPort(w.Status.PodIP, strconv.Itoa(webPort)) + "/"
				body, err := n.HTTPGet(ctx, url)
				if err != nil || strings.TrimSpace(body) != w.Name {
					t.Errorf("node %s -> pod %s (node %s) %s: %q, %v", n.Name, w.Name, w.Spec.NodeName, url, body, err)
				}
			}
		}
	})
}

// A Service whose endpoints are all on another node than its client:
// ClusterIP over TCP and UDP and by DNS name from a pod, NodePort through
// every node's address from the pod, and ClusterIP and NodePort from the
// client's node itself.
func TestMultiNodeServiceRemoteEndpoints(t *testing.T) {
	ctx := deadline(t, 6*time.Minute)
	c, nodes := multiNode(t, ctx)
	ns := namespace(t, ctx, c, "ovsnet-e2e-mn-svc")
	clientNode, serverNode := nodes[0], nodes[1]
	labels := map[string]string{"app": "remote-web"}
	svcs := c.Client.CoreV1().Services(ns)
	web, err := svcs.Create(ctx, webService("remote-web", corev1.ServiceTypeNodePort, labels), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	servers := []string{"server-0", "server-1"}
	for _, name := range servers {
		p := c.NettoolPod(ns, name, "", labels, "serve", fmt.Sprintf("-http=%d", podHTTPPort), fmt.Sprintf("-udp=%d", podUDPPort))
		p.Spec.NodeName = serverNode.Name
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	client := c.NettoolPod(ns, "client", "", map[string]string{"app": "client"}, "serve")
	client.Spec.NodeName = clientNode.Name
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.WatchPods(ctx, ns, "", framework.AllReady(3)); err != nil {
		t.Fatalf("servers and client Ready: %v", err)
	}
	if _, err := c.WaitEndpoints(ctx, ns, "remote-web", 2); err != nil {
		t.Fatal(err)
	}
	clusterIP, nodePort := web.Spec.ClusterIP, web.Spec.Ports[0].NodePort
	t.Logf("service remote-web %s (tcp %d, udp %d, NodePort %d), endpoints on %s, client on %s",
		clusterIP, svcHTTPPort, svcUDPPort, nodePort, serverNode.Name, clientNode.Name)

	// answersServer: the output is one of the servers' names.
	answersServer := func(out string) error {
		if got := strings.TrimSpace(out); !slices.Contains(servers, got) {
			return fmt.Errorf("answered %q, want one of %v", got, servers)
		}
		return nil
	}
	fromPod := func(t *testing.T, args ...string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, probeDeadline)
		defer cancel()
		err := framework.Eventually(pctx, "client: nettool "+strings.Join(args, " ")+" answers a server on "+serverNode.Name,
			func(ctx context.Context) error {
				out, err := c.Exec(ctx, ns, "client", append([]string{"/nettool"}, args...)...)
				if err != nil {
					return err
				}
				return answersServer(out)
			})
		if err != nil {
			t.Error(err)
		}
	}
	fromNode := func(t *testing.T, url string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, probeDeadline)
		defer cancel()
		err := framework.Eventually(pctx, "node "+clientNode.Name+": GET "+url+" answers a server on "+serverNode.Name,
			func(ctx context.Context) error {
				body, err := clientNode.HTTPGet(ctx, url)
				if err != nil {
					return err
				}
				return answersServer(body)
			})
		if err != nil {
			t.Error(err)
		}
	}
	hostPort := func(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }
	t.Run("clusterip-tcp", func(t *testing.T) { fromPod(t, "http", "http://"+hostPort(clusterIP, svcHTTPPort)+"/") })
	t.Run("clusterip-udp", func(t *testing.T) { fromPod(t, "udp", hostPort(clusterIP, svcUDPPort)) })
	t.Run("dns-name-tcp", func(t *testing.T) {
		fromPod(t, "http", fmt.Sprintf("http://remote-web.%s.svc.%s/", ns, c.ClusterDomain))
	})
	for _, n := range nodes {
		t.Run("nodeport-via-"+n.Name+"-from-pod", func(t *testing.T) {
			fromPod(t, "http", "http://"+hostPort(n.IP.String(), nodePort)+"/")
		})
	}
	t.Run("clusterip-from-node", func(t *testing.T) { fromNode(t, "http://"+hostPort(clusterIP, svcHTTPPort)+"/") })
	t.Run("nodeport-from-node", func(t *testing.T) {
		fromNode(t, "http://"+hostPort(clientNode.IP.String(), nodePort)+"/")
	})
}

// pinger is a ping at 10 per second from a pod; every reply is recorded by
// its sequence number as it arrives.
type pinger struct {
	t    *testing.T
	ctx  context.Context
	what string
	stop context.CancelFunc
	wait func() error

	mu       sync.Mutex
	received map[int]bool
	max      int
	changed  chan struct{} // closed and replaced on every reply
	ended    bool
}

func startPinger(t *testing.T, ctx context.Context, c *framework.Cluster, ns, pod, ip, what string) *pinger {
	t.Helper()
	pctx, stop := context.WithCancel(ctx)
	cmd := c.ExecCommand(pctx, ns, pod, "ping", "-i", "0.1", "-w", "900", ip)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stop()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		stop()
		t.Fatal(err)
	}
	p := &pinger{t: t, ctx: ctx, what: what, stop: stop, wait: cmd.Wait, received: map[int]bool{}, max: -1, changed: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := pingSeq.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.Atoi(m[1])
				p.mu.Lock()
				p.received[n] = true
				p.max = max(p.max, n)
				close(p.changed)
				p.changed = make(chan struct{})
				p.mu.Unlock()
			}
		}
		p.mu.Lock()
		p.ended = true
		close(p.changed)
		p.mu.Unlock()
	}()
	t.Cleanup(func() { stop(); _ = cmd.Wait() })
	return p
}

// awaitSeq waits for a reply with a sequence number >= n and returns the
// highest one received.
func (p *pinger) awaitSeq(n int, why string) int {
	p.t.Helper()
	for {
		p.mu.Lock()
		last, ended, changed, got := p.max, p.ended, p.changed, len(p.received)
		p.mu.Unlock()
		if last >= n {
			return last
		}
		if ended {
			p.t.Fatalf("%s: ping ended before %s (%d replies): %v", p.what, why, got, p.wait())
		}
		select {
		case <-changed:
		case <-p.ctx.Done():
			p.t.Fatalf("%s: waiting for %s: %v (%d replies)", p.what, why, p.ctx.Err(), got)
		}
	}
}

// last is the highest sequence number received so far.
func (p *pinger) last() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max
}

// finish waits for seconds more of replies, stops the ping and returns the
// sequence numbers lost between the first reply and the last.
func (p *pinger) finish(seconds int) (lost []int, first, last int) {
	p.t.Helper()
	last = p.awaitSeq(p.last()+seconds*10, fmt.Sprintf("%d more seconds of replies", seconds))
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	first = last
	for s := range p.received {
		first = min(first, s)
	}
	for s := first; s <= last; s++ {
		if !p.received[s] {
			lost = append(lost, s)
		}
	}
	return lost, first, last
}

// agents is the DaemonSet's agent of every node.
func agents(t *testing.T, nodes []framework.Node) map[string]*framework.Ovsnet {
	t.Helper()
	if framework.OvsnetDeploy() != framework.DeployDaemonSet {
		t.Skip("needs ovsnet as the DaemonSet (E2E_OVSNET_DEPLOY=daemonset, the default with more than one node)")
	}
	out := map[string]*framework.Ovsnet{}
	for _, n := range nodes {
		o, err := framework.AgentOn(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n.Name] = o
	}
	return out
}

// An agent killed (SIGKILL) on one node and restarted by its kubelet, then
// the same on the next node: a ping between pods of two nodes (10 per
// second, both directions' packets crossing both restarted agents'
// switches) loses nothing; each restarted agent restores its pods from
// OVSDB with flows under a new cookie round; a new pod reaches the old.
func TestMultiNodeAgentRestartKeepsCrossNodeTraffic(t *testing.T) {
	ctx := deadline(t, 8*time.Minute)
	c, nodes := multiNode(t, ctx)
	ags := agents(t, nodes)
	ns := namespace(t, ctx, c, "ovsnet-e2e-mn-restart")
	a, b := nodes[0], nodes[1]
	pods := startWebPods(t, ctx, c, ns, webPod(c, ns, "a", a.Name, false, nil), webPod(c, ns, "b", b.Name, false, nil))
	ping := startPinger(t, ctx, c, ns, "a", pods["b"].Status.PodIP, "ping a ("+a.Name+") -> b ("+b.Name+")")
	first := ping.awaitSeq(0, "the first reply")
	ping.awaitSeq(first+10, "ten replies")

	for _, n := range []framework.Node{a, b} {
		o := ags[n.Name]
		before, err := o.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		oldPID, err := o.AgentPID()
		if err != nil {
			t.Fatal(err)
		}
		if err := o.KillAgent(ctx); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		err = framework.Eventually(ctx, "agent on "+n.Name+" restarted by kubelet and ready", func(ctx context.Context) error {
			pid, err := o.AgentPID()
			if err != nil {
				return err
			}
			if pid == oldPID {
				return fmt.Errorf("still pid %d", pid)
			}
			return o.Ready(ctx)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("agent on %s killed and ready again in %v", n.Name, time.Since(killed).Round(time.Millisecond))
		ping.awaitSeq(ping.last()+30, "30 replies after the restart on "+n.Name)
		after, err := o.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.FlowRound == before.FlowRound {
			t.Errorf("agent on %s: flow round still %d after the restart: flows were not reinstalled", n.Name, after.FlowRound)
		}
		name := map[string]string{a.Name: "a", b.Name: "b"}[n.Name]
		att, ok, err := o.PodAttachment(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || !att.Restored || !att.FlowsIn {
			t.Errorf("pod %s on %s after the restart: attachment %+v (found %v), want restored with flows", name, n.Name, att, ok)
		}
	}
	lost, first, last := ping.finish(3)
	if len(lost) > 0 {
		t.Errorf("%d of %d pings lost across the agent restarts: seq %v", len(lost), last-first+1, lost)
	} else {
		t.Logf("%d pings (seq %d-%d) across both restarts, none lost", last-first+1, first, last)
	}

	// A new pod on the first node reaches the pod on the second.
	fresh := startWebPods(t, ctx, c, ns, webPod(c, ns, "c", a.Name, false, nil))
	runProbes(t, ctx, c, ns, []*corev1.Pod{fresh["c"]}, []target{podTarget(pods["b"])}, true)
}

// A node joins the cluster (namespaces, containerd, kubelet, kube-proxy;
// the DaemonSet starts ovsnet on it) and leaves it again, while pods on two
// other nodes ping each other: no ping is lost. While it is there, its pod
// reaches the others' and back; once it is gone, no other node routes its
// pod CIDR or keeps a flow for it.
func TestMultiNodeJoinLeaveKeepsTraffic(t *testing.T) {
	ctx := deadline(t, 10*time.Minute)
	c, nodes := multiNode(t, ctx)
	ags := agents(t, nodes)
	ns := namespace(t, ctx, c, "ovsnet-e2e-mn-join")
	a, b := nodes[0], nodes[1]
	pods := startWebPods(t, ctx, c, ns, webPod(c, ns, "a", a.Name, false, nil), webPod(c, ns, "b", b.Name, false, nil))
	ab := startPinger(t, ctx, c, ns, "a", pods["b"].Status.PodIP, "ping a -> b")
	ba := startPinger(t, ctx, c, ns, "b", pods["a"].Status.PodIP, "ping b -> a")
	for _, p := range []*pinger{ab, ba} {
		p.awaitSeq(p.awaitSeq(0, "the first reply")+10, "ten replies")
	}

	joinStart := time.Now()
	out, err := c.NodeCtl(ctx, "add")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.TrimSpace(lastLine(out))
	removed := false
	t.Cleanup(func() {
		if removed {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, err := c.NodeCtl(cctx, "remove", joined); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	n, err := c.Node(ctx, joined)
	if err != nil {
		t.Fatal(err)
	}
	joinTook := time.Since(joinStart)
	// The node is Ready once the DaemonSet's install-cni ran; its agent may
	// still be starting.
	agentN, err := framework.AgentOn(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := agentN.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s (%s, pod CIDR %s) joined and Ready in %v", n.Name, n.IP, n.PodCIDR, joinTook.Round(time.Millisecond))

	cidr := n.PodCIDR.String()
	// Every other node learns the new one: a route of ovsnet's to its pod
	// CIDR and, in the tunnel modes, flows owned by it that send its pods'
	// traffic into the tunnel (routed mode needs no flow of its own): what
	// the leave check below expects gone.
	tunnel := os.Getenv("OVSNET_TRAFFIC_MODE") != "noencap"
	for _, other := range nodes {
		lctx, cancel := context.WithTimeout(ctx, peerDeadline)
		err := framework.Eventually(lctx, "node "+other.Name+" learns "+joined, func(ctx context.Context) error {
			route, flows, err := peerState(ctx, other, ags[other.Name], joined, cidr)
			if err != nil {
				return err
			}
			if !route || (tunnel && flows == 0) {
				return fmt.Errorf("route to %s: %v, flows owned by peer/%s: %d (traffic mode %s)",
					cidr, route, joined, flows, os.Getenv("OVSNET_TRAFFIC_MODE"))
			}
			return nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	fresh := startWebPods(t, ctx, c, ns, webPod(c, ns, "n", n.Name, false, nil))
	t.Run("joined-node-reaches-the-others", func(t *testing.T) {
		runProbes(t, ctx, c, ns, []*corev1.Pod{fresh["n"]}, []target{podTarget(pods["a"]), podTarget(pods["b"])}, true)
		runProbes(t, ctx, c, ns, []*corev1.Pod{pods["a"], pods["b"]}, []target{podTarget(fresh["n"])}, true)
	})
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "n", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
		t.Fatal(err)
	}
	if err := c.WatchPods(ctx, ns, "", func(cur map[string]*corev1.Pod) (bool, error) { _, ok := cur["n"]; return !ok, nil }); err != nil {
		t.Fatal(err)
	}

	leaveStart := time.Now()
	if _, err := c.NodeCtl(ctx, "remove", joined); err != nil {
		t.Fatal(err)
	}
	removed = true
	t.Logf("node %s removed in %v", joined, time.Since(leaveStart).Round(time.Millisecond))
	for _, other := range nodes {
		fctx, cancel := context.WithTimeout(ctx, peerDeadline)
		err := framework.Eventually(fctx, "node "+other.Name+" forgets "+joined, func(ctx context.Context) error {
			route, flows, err := peerState(ctx, other, ags[other.Name], joined, cidr)
			if err != nil {
				return err
			}
			if route || flows > 0 {
				return fmt.Errorf("route to %s: %v, flows owned by peer/%s: %d", cidr, route, joined, flows)
			}
			return nil
		})
		cancel()
		if err != nil {
			t.Error(err)
		}
	}

	for _, p := range []*pinger{ab, ba} {
		lost, first, last := p.finish(3)
		if len(lost) > 0 {
			t.Errorf("%s: %d of %d pings lost while %s joined and left: seq %v", p.what, len(lost), last-first+1, joined, lost)
		} else {
			t.Logf("%s: %d pings (seq %d-%d) while %s joined and left, none lost", p.what, last-first+1, first, last, joined)
		}
	}
}

// peerState is what node n's ovsnet has for the peer node named peer: whether
// a route of ovsnet's (protocol 79) leads to cidr, and how many flows the
// peer owns.
func peerState(ctx context.Context, n framework.Node, agent *framework.Ovsnet, peer, cidr string) (route bool, flows int, err error) {
	routes, err := n.Run(ctx, "ip", "-4", "route", "show", "proto", "79")
	if err != nil {
		return false, 0, err
	}
	for line := range strings.Lines(routes) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == cidr {
			route = true
		}
	}
	all, err := agent.Flows(ctx)
	if err != nil {
		return false, 0, err
	}
	for _, f := range all {
		if f.Owner == "peer/"+peer {
			flows++
		}
	}
	return route, flows, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/crossnode"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
	"github.com/ovsnet/ovsnet/internal/policy"
)

// DatapathConfig configures the services and crossnode benchmarks.
type DatapathConfig struct {
	Out       io.Writer
	PluginDir string
	// Conns is the number of TCP connections timed per target; RTTs the
	// number of UDP round trips per path.
	Conns, RTTs int
	// Seconds is each throughput measurement's length, Rounds how many
	// interleaved rounds of them per target.
	Seconds, Rounds int
	// Modes are the traffic modes the crossnode benchmark runs.
	Modes []string
	// Joins is how many times the crossnode benchmark times a peer
	// joining.
	Joins int
}

// benchNode is one node of a datapath benchmark: an OVS sandbox (its
// namespace is the node's), an agent in standalone mode, the plugin.
type benchNode struct {
	n      int
	sb     *ovssandbox.Sandbox
	a      *agent.Agent
	cancel context.CancelFunc
	exited chan error
	rt     *cnitest.Runtime
	dir    string
	peers  string
	nss    []*cnitest.Netns
	joined chan time.Time
	// policy, if set, is the agent's NetworkPolicy source.
	policy policy.Source
}

func (nd *benchNode) ip() string      { return fmt.Sprintf("172.31.217.%d", nd.n) }
func (nd *benchNode) podCIDR() string { return fmt.Sprintf("10.217.%d.0/24", nd.n) }

func newBenchNode(ctx context.Context, n int) (*benchNode, error) {
	sb, err := newSandbox(ctx, true)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ovsnet-bench-node-")
	if err != nil {
		_ = sb.Close()
		return nil, err
	}
	return &benchNode{n: n, sb: sb, dir: dir, peers: filepath.Join(dir, "peers", "peers.yaml"), joined: make(chan time.Time, 64)}, nil
}

func (nd *benchNode) start(ctx context.Context, mode, pluginDir string, peers ...*benchNode) error {
	if err := os.MkdirAll(filepath.Dir(nd.peers), 0o755); err != nil {
		return err
	}
	if err := nd.writePeers(peers...); err != nil {
		return err
	}
	c := agent.Defaults()
	c.OVSDB, c.OVSRunDir, c.DatapathType, c.HealthAddr = nd.sb.DBEndpoint(), nd.sb.Dir(), "netdev", "127.0.0.1:0"
	c.PodCIDR, c.TrafficMode, c.PeersFile = nd.podCIDR(), mode, nd.peers
	if len(peers) > 0 {
		c.NodeIP = nd.ip()
	}
	c.StateDir, c.CNISocket, c.HostNetns = nd.dir+"/state", nd.dir+"/cni.sock", nd.sb.NetnsPath()
	c.PolicySource = nd.policy
	a, err := agent.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	nd.a, nd.cancel, nd.exited = a, cancel, make(chan error, 1)
	go func() { nd.exited <- a.Run(rctx) }()
	if err := a.Status().WaitReady(ctx); err != nil {
		return err
	}
	nd.rt, err = cnitest.NewRuntime(pluginDir, nd.dir+"/cache", c.CNISocket, "")
	return err
}

func (nd *benchNode) writePeers(peers ...*benchNode) error {
	var b strings.Builder
	b.WriteString("peers:\n")
	for _, p := range peers {
		fmt.Fprintf(&b, "  - name: node-%d\n    nodeIP: %s\n    podCIDRs: [%s]\n", p.n, p.ip(), p.podCIDR())
	}
	tmp := nd.peers + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, nd.peers)
}

// pod adds a pod (a network namespace through the real plugin) and returns
// its namespace and address.
func (nd *benchNode) pod(ctx context.Context) (*cnitest.Netns, string, error) {
	n, err := cnitest.NewNetns(ctx, "ovsnet-bdp-")
	if err != nil {
		return nil, "", err
	}
	nd.nss = append(nd.nss, n)
	res, err := nd.rt.Add(ctx, cnitest.Pod{Name: n.Name, Namespace: "bench",
		ContainerID: fmt.Sprintf("bdp%d%024d", nd.n, len(nd.nss)), Netns: n.Path})
	if err != nil {
		return nil, "", err
	}
	return n, res.IPs[0].Address.IP.String(), nil
}

func (nd *benchNode) close() {
	if nd.cancel != nil {
		nd.cancel()
		<-nd.exited
	}
	for _, n := range nd.nss {
		_ = n.Delete()
	}
	_ = nd.sb.Close()
	_ = os.RemoveAll(nd.dir)
}

// connectTimes dials addr from netns n times and returns how long each
// connect took (the server accepts and the connection is closed).
func connectTimes(ctx context.Context, netns, addr string, n int) (Sample, error) {
	var s Sample
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		d := net.Dialer{}
		for range n {
			t0 := time.Now()
			c, err := d.DialContext(ctx, "tcp4", addr)
			if err != nil {
				return fmt.Errorf("connect to %s: %w", addr, err)
			}
			s = append(s, time.Since(t0))
			_ = c.Close()
		}
		return nil
	})
	return s, err
}

// rtts sends n UDP datagrams, one at a time, to an echo server at addr and
// returns each round trip.
func rtts(ctx context.Context, netns, addr string, n int) (Sample, error) {
	var c net.Conn
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "udp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var s Sample
	buf := make([]byte, 64)
	for len(s) < n {
		t0 := time.Now()
		if _, err := c.Write([]byte("rtt")); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(t0.Add(time.Second))
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.As(err, &ne) && ne.Timeout() {
				continue // lost: not a round trip
			}
			return nil, fmt.Errorf("round trip to %s: %w", addr, err)
		}
		s = append(s, time.Since(t0))
	}
	return s, nil
}

// throughput runs iperf3 for seconds from clientNetns to dialIP:port, where
// a one-off server listens on bindIP:port in serverNetns (dialIP differs
// for a Service address NATed to bindIP), and returns the bits per second
// received.
func throughput(ctx context.Context, clientNetns, serverNetns, bindIP, dialIP string, port, seconds int) (float64, error) {
	ip := dialIP
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", serverNetns, "iperf3", "-s", "-1", "-B", bindIP, "-p", strconv.Itoa(port))
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("iperf3 server: %w (install iperf3)", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	type result struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	// The server needs a moment to listen: retry the client's connect,
	// paced, until it does (bounded by ctx).
	for pause := 10 * time.Millisecond; ; pause = min(pause*2, 200*time.Millisecond) {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", clientNetns, "iperf3", "-c", ip, "-p", strconv.Itoa(port),
			"-t", strconv.Itoa(seconds), "-J").Output()
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			return 0, fmt.Errorf("iperf3 to %s: output %q: %w", ip, out, err)
		}
		switch {
		case r.Error == "" && r.End.SumReceived.BitsPerSecond > 0:
			return r.End.SumReceived.BitsPerSecond, nil
		case !strings.Contains(r.Error, "refused"):
			return 0, fmt.Errorf("iperf3 to %s: no result (%s)", ip, r.Error)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return 0, fmt.Errorf("iperf3 to %s: %w", ip, ctx.Err())
		}
	}
}

func mbit(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return fmt.Sprintf("%.0f Mbit/s (median of %d; min %.0f, max %.0f)", s[len(s)/2]/1e6, len(s), s[0]/1e6, s[len(s)-1]/1e6)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// Services measures a pod reaching a ClusterIP whose endpoint is on the
// same node (kube-proxy's NAT written as kube-proxy's nftables mode does:
// DNAT in the node's prerouting) beside the same pod reaching the endpoint's
// own address: TCP connect time and throughput, interleaved round by round.
func Services(ctx context.Context, cfg DatapathConfig) error {
	nd, err := newBenchNode(ctx, 1)
	if err != nil {
		return err
	}
	defer nd.close()
	if err := nd.start(ctx, "geneve", cfg.PluginDir); err != nil {
		return err
	}
	client, _, err := nd.pod(ctx)
	if err != nil {
		return err
	}
	server, sip, err := nd.pod(ctx)
	if err != nil {
		return err
	}
	echo, err := cnitest.StartEcho(server.Path, sip, 8080)
	if err != nil {
		return err
	}
	defer echo.Close()
	rules := fmt.Sprintf(`table ip bench-services {
	chain pre {
		type nat hook prerouting priority dstnat;
		ip daddr 10.96.0.10 tcp dport 80 dnat to %[1]s:8080
		ip daddr 10.96.0.10 tcp dport 5201 dnat to %[1]s:5201
	}
}
`, sip)
	file := filepath.Join(nd.dir, "services.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", nd.sb.Netns(), "nft", "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v %s", err, out)
	}
	var direct, svc Sample
	var tDirect, tSvc []float64
	per := max(cfg.Conns/cfg.Rounds, 1)
	for r := range cfg.Rounds {
		for _, which := range []int{r % 2, 1 - r%2} {
			addr, dst := sip+":8080", &direct
			if which == 1 {
				addr, dst = "10.96.0.10:80", &svc
			}
			s, err := connectTimes(ctx, client.Path, addr, per)
			if err != nil {
				return err
			}
			*dst = append(*dst, s...)
			ip, tdst := sip, &tDirect
			if which == 1 {
				ip, tdst = "10.96.0.10", &tSvc
			}
			bps, err := throughput(ctx, client.Name, server.Name, sip, ip, 5201, cfg.Seconds)
			if err != nil {
				return err
			}
			*tdst = append(*tdst, bps)
		}
	}
	WriteTable(cfg.Out, fmt.Sprintf("pod -> endpoint on the same node: TCP connect (%d connections each, interleaved)", len(direct)), []Row{
		{Name: "floor: pod -> endpoint's pod address", Sample: direct},
		{Name: "pod -> ClusterIP (kube-proxy DNAT on the host)", Sample: svc},
	})
	fmt.Fprintf(cfg.Out, "connect p50 ratio ClusterIP/floor: %.2f, p99 ratio: %.2f\n",
		float64(svc.Percentile(50))/float64(direct.Percentile(50)), float64(svc.Percentile(99))/float64(direct.Percentile(99)))
	fmt.Fprintf(cfg.Out, "TCP throughput (iperf3 %d s x %d): pod address %s; ClusterIP %s\n", cfg.Seconds, cfg.Rounds, mbit(tDirect), mbit(tSvc))
	return nil
}

// CrossNode measures, per traffic mode, two nodes on one machine (each its
// own OVS and agent in its own namespace, joined by an underlay veth):
// same-node and cross-node pod RTT and TCP throughput, interleaved, beside
// the bare underlay measured before the agents start; and the time from a
// peer appearing in the peers file to the first echo from its pods.
func CrossNode(ctx context.Context, cfg DatapathConfig) error {
	for _, mode := range cfg.Modes {
		if _, err := crossnode.ParseMode(mode); err != nil {
			return err
		}
		if err := crossNodeMode(ctx, cfg, mode); err != nil {
			return fmt.Errorf("mode %s: %w", mode, err)
		}
	}
	return nil
}

func crossNodeMode(ctx context.Context, cfg DatapathConfig, mode string) error {
	n1, err := newBenchNode(ctx, 1)
	if err != nil {
		return err
	}
	defer n1.close()
	n2, err := newBenchNode(ctx, 2)
	if err != nil {
		return err
	}
	defer n2.close()
	for _, args := range [][]string{
		{"ip", "-n", n1.sb.Netns(), "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0", "netns", n2.sb.Netns()},
		{"ip", "-n", n1.sb.Netns(), "addr", "add", n1.ip() + "/24", "dev", "uplink0"},
		{"ip", "-n", n2.sb.Netns(), "addr", "add", n2.ip() + "/24", "dev", "uplink0"},
		{"ip", "-n", n1.sb.Netns(), "link", "set", "uplink0", "up"},
		{"ip", "-n", n2.sb.Netns(), "link", "set", "uplink0", "up"},
	} {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v %s", args, err, out)
		}
	}
	// The floor: the underlay alone (kernel veth), before OVS takes it.
	under, err := cnitest.StartEcho(n2.sb.NetnsPath(), n2.ip(), 7100)
	if err != nil {
		return err
	}
	uRTT, err := rtts(ctx, n1.sb.NetnsPath(), n2.ip()+":7100", cfg.RTTs)
	under.Close()
	if err != nil {
		return err
	}
	var uBPS []float64
	for range cfg.Rounds {
		bps, err := throughput(ctx, n1.sb.Netns(), n2.sb.Netns(), n2.ip(), n2.ip(), 5202, cfg.Seconds)
		if err != nil {
			return err
		}
		uBPS = append(uBPS, bps)
	}
	if err := n1.start(ctx, mode, cfg.PluginDir, n2); err != nil {
		return err
	}
	if err := n2.start(ctx, mode, cfg.PluginDir, n1); err != nil {
		return err
	}
	client, _, err := n1.pod(ctx)
	if err != nil {
		return err
	}
	local, lip, err := n1.pod(ctx)
	if err != nil {
		return err
	}
	remote, rip, err := n2.pod(ctx)
	if err != nil {
		return err
	}
	for _, s := range []struct{ ns, ip string }{{local.Path, lip}, {remote.Path, rip}} {
		e, err := cnitest.StartEcho(s.ns, s.ip, 7100)
		if err != nil {
			return err
		}
		defer e.Close()
	}
	// Warm the path (the first packet to a new underlay neighbour waits
	// for OVS to resolve it).
	if _, err := rtts(ctx, client.Path, rip+":7100", 3); err != nil {
		return err
	}
	var sameRTT, crossRTT Sample
	var sameBPS, crossBPS []float64
	per := max(cfg.RTTs/cfg.Rounds, 1)
	for r := range cfg.Rounds {
		for _, which := range []int{r % 2, 1 - r%2} {
			ip, nsName, dst, tdst := lip, local.Name, &sameRTT, &sameBPS
			if which == 1 {
				ip, nsName, dst, tdst = rip, remote.Name, &crossRTT, &crossBPS
			}
			s, err := rtts(ctx, client.Path, ip+":7100", per)
			if err != nil {
				return err
			}
			*dst = append(*dst, s...)
			bps, err := throughput(ctx, client.Name, nsName, ip, ip, 5201, cfg.Seconds)
			if err != nil {
				return err
			}
			*tdst = append(*tdst, bps)
		}
	}
	WriteTable(cfg.Out, fmt.Sprintf("%s: UDP round trip (%d each, same and cross node interleaved)", mode, len(sameRTT)), []Row{
		{Name: "floor: underlay alone (kernel veth, node to node)", Sample: uRTT},
		{Name: "pod -> pod, same node", Sample: sameRTT},
		{Name: "pod -> pod, cross node", Sample: crossRTT},
	})
	fmt.Fprintf(cfg.Out, "%s: cross - same node RTT p50 %s, p99 %s\n", mode,
		ms(crossRTT.Percentile(50)-sameRTT.Percentile(50)), ms(crossRTT.Percentile(99)-sameRTT.Percentile(99)))
	fmt.Fprintf(cfg.Out, "%s: TCP throughput (iperf3 %d s x %d): underlay %s; same node %s; cross node %s; cross/same %.2f\n",
		mode, cfg.Seconds, cfg.Rounds, mbit(uBPS), mbit(sameBPS), mbit(crossBPS), median(crossBPS)/median(sameBPS))

	// A peer joins: node 2 leaves node 1's peers file, then comes back
	// while a pod of node 1 probes a pod of node 2 every millisecond.
	var join, applied Sample
	failed := 0
	cn := n1.a.CrossNode()
	for range cfg.Joins {
		if err := n1.writePeers(); err != nil {
			return err
		}
		if err := cn.WaitStatus(ctx, func(st crossnode.Status) bool { return st.Synced && len(st.Peers) == 0 }); err != nil {
			return err
		}
		pr, err := newProber(client.Path, remote.Path, rip, time.Millisecond)
		if err != nil {
			return err
		}
		pctx, stop := context.WithCancel(ctx)
		go pr.run(pctx)
		t0 := time.Now()
		if err := n1.writePeers(n2); err != nil {
			stop()
			return err
		}
		var at time.Time
		err = cn.WaitStatus(ctx, func(st crossnode.Status) bool {
			if st.Synced && len(st.Peers) == 1 {
				at = st.At
				return true
			}
			return false
		})
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = pr.waitEchoes(wctx, t0, 1)
			cancel()
		}
		first := pr.firstEchoAfter(t0)
		stop()
		pr.wg.Wait()
		if err != nil {
			// Counted and reported, not fatal: one bad join must not hide
			// the other figures.
			failed++
			fmt.Fprintf(cfg.Out, "%s: peer join %d: no echo within 10 s of the peers file change: %v\n", mode, len(join)+failed, err)
			continue
		}
		join = append(join, first.Sub(t0))
		applied = append(applied, at.Sub(t0))
	}
	if failed > 0 {
		fmt.Fprintf(cfg.Out, "%s: %d of %d peer joins got no echo within 10 s\n", mode, failed, cfg.Joins)
	}
	WriteTable(cfg.Out, fmt.Sprintf("%s: a peer joins (peers file replaced, %d times; probe every 1 ms)", mode, len(join)), []Row{
		{Name: "file replaced -> routes and flows applied", Sample: applied},
		{Name: "file replaced -> first echo from the peer's pod", Sample: join},
	})
	return nil
}

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/policy"
)

// policyTables hold the policy flows.
var policyTables = []uint8{pipeline.TableEgressRule, pipeline.TableEgressDefault, pipeline.TableIngressRule, pipeline.TableIngressDefault}

// PolicyConfig configures the NetworkPolicy benchmark.
type PolicyConfig struct {
	Out       io.Writer
	PluginDir string
	// Rounds is how many times each realisation is timed.
	Rounds int
	// Many is the size of the "many policies at once" case.
	Many int
	// ScalePods and ScalePolicies size the compute-and-install scenario;
	// it also runs at a quarter and a half of ScalePods.
	ScalePods, ScalePolicies int
}

// Policy runs the NetworkPolicy benchmarks: how long a policy takes to be
// in force as a probe sees it (one policy, many at once, and their
// removal), beside the same drop flow installed by a bare OpenFlow client
// (the floor); then the flows and agent CPU time of a large synthetic
// cluster.
func Policy(ctx context.Context, cfg PolicyConfig) error {
	if err := policyRealisation(ctx, cfg); err != nil {
		return err
	}
	return policyScale(ctx, cfg)
}

// probe sends a numbered datagram every interval from the client to the
// server's port, and one to the fence port; the server side records when
// each arrives.
type probe struct {
	interval time.Duration

	mu    sync.Mutex
	sent  []time.Time     // by sequence number
	got   map[uint32]bool // probe datagrams that arrived
	fence uint32          // highest fence sequence number that arrived
	wake  chan struct{}
}

const (
	npProbePort = 9100
	npFencePort = 9101
)

func startProbe(ctx context.Context, client, server *cnitest.Netns, clientIP, serverIP string) (*probe, error) {
	p := &probe{interval: 500 * time.Microsecond, got: map[uint32]bool{}, wake: make(chan struct{})}
	var rx, fx *net.UDPConn
	err := ns.WithNetNSPath(server.Path, func(ns.NetNS) error {
		var err error
		if rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(serverIP), Port: npProbePort}); err != nil {
			return err
		}
		fx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(serverIP), Port: npFencePort})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("probe listeners: %w", err)
	}
	var tx, ftx *net.UDPConn
	err = ns.WithNetNSPath(client.Path, func(ns.NetNS) error {
		var err error
		local := &net.UDPAddr{IP: net.ParseIP(clientIP)}
		if tx, err = net.DialUDP("udp4", local, &net.UDPAddr{IP: net.ParseIP(serverIP), Port: npProbePort}); err != nil {
			return err
		}
		ftx, err = net.DialUDP("udp4", local, &net.UDPAddr{IP: net.ParseIP(serverIP), Port: npFencePort})
		return err
	})
	if err != nil {
		rx.Close()
		fx.Close()
		return nil, fmt.Errorf("probe senders: %w", err)
	}
	go func() { <-ctx.Done(); rx.Close(); fx.Close(); tx.Close(); ftx.Close() }()
	read := func(c *net.UDPConn, fence bool) {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n < 4 {
				continue
			}
			seq := binary.BigEndian.Uint32(buf)
			p.mu.Lock()
			if fence {
				p.fence = max(p.fence, seq)
			} else {
				p.got[seq] = true
			}
			close(p.wake)
			p.wake = make(chan struct{})
			p.mu.Unlock()
		}
	}
	go read(rx, false)
	go read(fx, true)
	go func() {
		t := time.NewTicker(p.interval)
		defer t.Stop()
		var b [4]byte
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p.mu.Lock()
			seq := uint32(len(p.sent))
			p.sent = append(p.sent, time.Now())
			p.mu.Unlock()
			binary.BigEndian.PutUint32(b[:], seq)
			_, _ = tx.Write(b[:])
			_, _ = ftx.Write(b[:])
		}
	}()
	return p, nil
}

// now returns the next sequence number to be sent.
func (p *probe) now() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return uint32(len(p.sent))
}

// waitFence waits until a fence datagram numbered at least seq arrived:
// every probe datagram sent before it has had its chance.
func (p *probe) waitFence(ctx context.Context, seq uint32) error {
	for {
		p.mu.Lock()
		ok, ch := p.fence >= seq, p.wake
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fence datagram %d never arrived: %w", seq, ctx.Err())
		}
	}
}

// waitArrival waits until a probe datagram numbered at least from arrives
// and returns when it was sent.
func (p *probe) waitArrival(ctx context.Context, from uint32) (time.Time, error) {
	for {
		p.mu.Lock()
		for s := from; s < uint32(len(p.sent)); s++ {
			if p.got[s] {
				t := p.sent[s]
				p.mu.Unlock()
				return t, nil
			}
		}
		ch := p.wake
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no probe datagram arrived: %w", ctx.Err())
		}
	}
}

// lastArrived returns when the last probe datagram of [from, to) that
// arrived was sent, and whether one did.
func (p *probe) lastArrived(from, to uint32) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := int64(to) - 1; s >= int64(from); s-- {
		if p.got[uint32(s)] {
			return p.sent[s], true
		}
	}
	return time.Time{}, false
}

// denial times one change that denies the probe: from t0, when the change
// is made, to the sending of the last probe datagram that still arrived.
// done must return once the change is fully in (the agent's PolicyPass, a
// flow install followed by revalidation).
func (p *probe) denial(ctx context.Context, change func() error, done func() error) (time.Duration, error) {
	from := p.now()
	t0 := time.Now()
	if err := change(); err != nil {
		return 0, err
	}
	if err := done(); err != nil {
		return 0, err
	}
	end := p.now() + 1
	if err := p.waitFence(ctx, end); err != nil {
		return 0, err
	}
	last, ok := p.lastArrived(from, end)
	if !ok {
		return 0, nil // denied before the first datagram after t0
	}
	return max(0, last.Sub(t0)), nil
}

// admission times one change that lets the probe through again: from t0
// to the sending of the first probe datagram that arrives.
func (p *probe) admission(ctx context.Context, change func() error) (time.Duration, error) {
	from := p.now()
	t0 := time.Now()
	if err := change(); err != nil {
		return 0, err
	}
	at, err := p.waitArrival(ctx, from)
	if err != nil {
		return 0, err
	}
	return max(0, at.Sub(t0)), nil
}

// denyPolicies returns n policies that isolate the server for ingress; each
// allows a block and port the probe is not in, and the first also the fence
// port from the client.
func denyPolicies(n int) []*networkingv1.NetworkPolicy {
	udp := corev1.ProtocolUDP
	out := make([]*networkingv1.NetworkPolicy, 0, n)
	for i := range n {
		p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("p%03d", i)}}
		p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
		port := intstr.FromInt32(int32(20000 + i))
		p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250)}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}},
		}}
		if i == 0 {
			fence := intstr.FromInt32(npFencePort)
			p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &fence}},
			})
		}
		out = append(out, p)
	}
	return out
}

func policyRealisation(ctx context.Context, cfg PolicyConfig) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nd, err := newBenchNode(ctx, 1)
	if err != nil {
		return err
	}
	defer nd.close()
	src := policy.NewMemory()
	nd.policy = src
	if err := nd.start(ctx, "geneve", cfg.PluginDir); err != nil {
		return err
	}
	clientNS, clientIP, err := nd.pod(ctx)
	if err != nil {
		return err
	}
	serverNS, serverIP, err := nd.pod(ctx)
	if err != nil {
		return err
	}
	src.Set(func(s *policy.Snapshot) {
		s.Namespaces = map[string]map[string]string{"bench": {"kubernetes.io/metadata.name": "bench"}}
		s.Pods = []policy.Pod{
			{Namespace: "bench", Name: clientNS.Name, Labels: map[string]string{"app": "client"}, IP: netip.MustParseAddr(clientIP)},
			{Namespace: "bench", Name: serverNS.Name, Labels: map[string]string{"app": "server"}, IP: netip.MustParseAddr(serverIP)},
		}
	})
	if err := nd.a.PolicyPass(ctx); err != nil {
		return err
	}
	pr, err := startProbe(ctx, clientNS, serverNS, clientIP, serverIP)
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = pr.waitArrival(wctx, 0)
	wcancel()
	if err != nil {
		return fmt.Errorf("probe before any policy: %w", err)
	}

	// The floor: the server's isolation flow, added and removed by a bare
	// OpenFlow client on its own connection, waited for as the agent's
	// PolicyPass waits (ovs-vswitchd's revalidation).
	conn, err := ofconn.New(ofconn.Config{Bridge: "br-int", RunDir: nd.sb.Dir()})
	if err != nil {
		return err
	}
	cctx, ccancel := context.WithCancel(ctx)
	cdone := make(chan struct{})
	go func() { _ = conn.Run(cctx); close(cdone) }()
	defer func() { ccancel(); <-cdone }()
	if _, err := conn.WaitSession(ctx); err != nil {
		return err
	}
	const floorCookie = 0x0fee_0000_0000_0001
	drop := pipeline.IsolationFlows(pipeline.Ingress, netip.MustParseAddr(serverIP))[0]
	fenceAllow := pipeline.Flow{Table: pipeline.TableIngressRule, Priority: 60000, Match: of.NewMatch(
		of.EthType(0x0800), of.IPProto(17), of.IPv4Dst(netip.MustParseAddr(serverIP)), of.UDPDst(npFencePort)),
		Instructions: []of.Instruction{of.GotoTable{Table: pipeline.TableConntrackCommit}}}
	settle := func() error {
		for range 2 {
			if _, err := nd.sb.Appctl(ctx, "revalidator/wait"); err != nil {
				return err
			}
		}
		return nil
	}
	var floorDeny, floorAllow, oneDeny, oneAllow, manyDeny, manyAllow Sample
	round := func(deny, allow *Sample, set func(), unset func(), done func() error) error {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		d, err := pr.denial(rctx, func() error { set(); return nil }, done)
		if err != nil {
			return err
		}
		*deny = append(*deny, d)
		a, err := pr.admission(rctx, func() error { unset(); return nil })
		if err != nil {
			return err
		}
		*allow = append(*allow, a)
		return done()
	}
	var ferr error
	addFloor := func() {
		msgs := []of.Message{}
		for _, f := range []pipeline.Flow{fenceAllow, drop} {
			fm := of.AddFlow(f.Table, f.Priority, f.Match, f.Instructions...)
			fm.Cookie = floorCookie
			msgs = append(msgs, fm)
		}
		ferr = conn.Bundle(ctx, msgs)
	}
	delFloor := func() {
		ferr = conn.Bundle(ctx, []of.Message{of.DeleteFlows(of.TableAll, of.Match{}, floorCookie, ^uint64(0))})
	}
	one, many := denyPolicies(1), denyPolicies(cfg.Many)
	setPolicies := func(ps []*networkingv1.NetworkPolicy) func() {
		return func() { src.Set(func(s *policy.Snapshot) { s.Policies = ps }) }
	}
	pass := func() error { return nd.a.PolicyPass(ctx) }
	for i := range cfg.Rounds {
		// Interleaved, so that a drift of the machine's load does not
		// favour one of them.
		if err := round(&floorDeny, &floorAllow, addFloor, delFloor, func() error {
			if ferr != nil {
				return ferr
			}
			return settle()
		}); err != nil {
			return fmt.Errorf("floor round %d: %w", i, err)
		}
		if err := round(&oneDeny, &oneAllow, setPolicies(one), setPolicies(nil), pass); err != nil {
			return fmt.Errorf("one-policy round %d: %w", i, err)
		}
		if err := round(&manyDeny, &manyAllow, setPolicies(many), setPolicies(nil), pass); err != nil {
			return fmt.Errorf("%d-policy round %d: %w", cfg.Many, i, err)
		}
	}
	WriteTable(cfg.Out, fmt.Sprintf("NetworkPolicy realisation, change -> in force as a probe sees it (probe every %v)", pr.interval), []Row{
		{"floor: drop flow by a bare OpenFlow client", floorDeny},
		{"1 policy created (isolates the probe's target)", oneDeny},
		{fmt.Sprintf("%d policies created at once", cfg.Many), manyDeny},
		{"floor: drop flow removed", floorAllow},
		{"1 policy deleted", oneAllow},
		{fmt.Sprintf("%d policies deleted at once", cfg.Many), manyAllow},
	})
	return nil
}

// policyScale computes and installs the policies of a synthetic node:
// pods local pods in 20 apps, policies policies each selecting one app,
// admitting another app on two ports and egress to a block; flows counted
// on the switch, agent CPU time from getrusage.
func policyScale(ctx context.Context, cfg PolicyConfig) error {
	fmt.Fprintf(cfg.Out, "\nNetworkPolicy at scale: %d policies, local pods in 20 apps (each policy: one app, ingress from another on 2 ports, egress to a block on 1)\n", cfg.ScalePolicies)
	fmt.Fprintln(cfg.Out, "pods\trules\tflows\tpods*peers*ports\tfirst pass\tagent CPU\tcompute only\tlabel change p50\tp99")
	for _, n := range []int{cfg.ScalePods / 4, cfg.ScalePods / 2, cfg.ScalePods} {
		if err := policyScaleOne(ctx, cfg, n); err != nil {
			return err
		}
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func scalePolicies(n int) []*networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	out := make([]*networkingv1.NetworkPolicy, 0, n)
	for i := range n {
		p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("s%03d", i)}}
		p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}}
		p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		p1, p2, p3 := intstr.FromInt32(int32(8000+i)), intstr.FromInt32(53), intstr.FromInt32(int32(9000+i))
		p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i+1)%20)}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p1}, {Protocol: &udp, Port: &p2}},
		}}
		p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.20.%d.0/24", i%250)}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p3}},
		}}
		out = append(out, p)
	}
	return out
}

func policyScaleOne(ctx context.Context, cfg PolicyConfig, pods int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sb, err := newSandbox(ctx, true)
	if err != nil {
		return err
	}
	defer sb.Close()
	if _, err := sb.Vsctl(ctx, "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
		"protocols=OpenFlow13", "fail_mode=secure"); err != nil {
		return err
	}
	conn, err := ofconn.New(ofconn.Config{Bridge: "br-int", RunDir: sb.Dir()})
	if err != nil {
		return err
	}
	cdone := make(chan struct{})
	go func() { _ = conn.Run(ctx); close(cdone) }()
	defer func() { cancel(); <-cdone }()
	sess, err := conn.WaitSession(ctx)
	if err != nil {
		return err
	}
	flows := pipeline.NewManager(nil)
	network := pipeline.Network{PodCIDR: netip.MustParsePrefix("10.218.0.0/16"), GatewayIP: netip.MustParseAddr("10.218.0.1")}
	_ = flows.Set(ctx, pipeline.OwnerBase, pipeline.BaseFlows())
	if err := flows.Resync(ctx, sess); err != nil {
		return err
	}
	store := attachments.New()
	src := policy.NewMemory()
	var podList []policy.Pod
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{10, 218, byte((i + 2) / 256), byte((i + 2) % 256)})
		name := fmt.Sprintf("pod%04d", i)
		a, err := store.Reserve(attachments.Attachment{Key: attachments.Key{ContainerID: "c" + name, IfName: "eth0"},
			HostIfName: "h" + name, Pod: cniapi.PodRef{Namespace: "bench", Name: name}})
		if err != nil {
			return err
		}
		if _, err := store.Update(a.Key, a.Incarnation, func(x *attachments.Attachment) {
			x.IP, x.State = netip.PrefixFrom(ip, 16), attachments.Ready
		}); err != nil {
			return err
		}
		podList = append(podList, policy.Pod{Namespace: "bench", Name: name, IP: ip, Labels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}})
	}
	pols := scalePolicies(cfg.ScalePolicies)
	snap := policy.Snapshot{Policies: pols, Namespaces: map[string]map[string]string{"bench": {}}, Pods: podList}
	// The computation alone, on the same input.
	local := make([]policy.Pod, len(podList))
	for i, p := range podList {
		p.Local = true
		local[i] = p
	}
	t0 := time.Now()
	res := policy.Compute(policy.Snapshot{Policies: pols, Namespaces: snap.Namespaces, Pods: local})
	compute := time.Since(t0)
	product := 0
	for _, r := range res.Rules {
		peers := len(r.Peers)
		if r.AnyPeer {
			peers = 1
		}
		product += len(r.Pods) * peers * max(1, len(r.Ports))
	}

	c := policy.New(policy.Config{Source: src, Store: store, Flows: flows, Network: network,
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}})
	rdone := make(chan struct{})
	go func() { _ = c.Run(ctx); close(rdone) }()
	defer func() { cancel(); <-rdone }()
	if err := c.WaitPass(ctx); err != nil { // the empty start
		return err
	}
	cpu0, w0 := cpuTime(), time.Now()
	src.Set(func(s *policy.Snapshot) { *s = snap })
	if err := c.WaitPass(ctx); err != nil {
		return err
	}
	wall, cpu := time.Since(w0), cpuTime()-cpu0
	n := 0
	for _, t := range policyTables {
		fs, err := conn.DumpFlows(ctx, of.NewFlowStatsRequest(t, of.Match{}))
		if err != nil {
			return err
		}
		n += len(fs)
	}
	// A label change moves one pod to another app: the rules of two apps
	// change, nothing else.
	var change Sample
	for i := range 20 {
		idx := (i * 37) % pods
		src.Set(func(s *policy.Snapshot) {
			ps := make([]policy.Pod, len(s.Pods))
			copy(ps, s.Pods)
			ps[idx].Labels = map[string]string{"app": fmt.Sprintf("app%d", (idx+1+i)%20)}
			s.Pods = ps
		})
		t := time.Now()
		if err := c.WaitPass(ctx); err != nil {
			return err
		}
		change = append(change, time.Since(t))
	}
	rules, _ := c.Summary()
	fmt.Fprintf(cfg.Out, "%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", pods, rules, n, product, ms(wall), ms(cpu), ms(compute),
		ms(change.Percentile(50)), ms(change.Percentile(99)))
	return nil
}

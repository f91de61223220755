package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/agentapi"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ctl"
	"github.com/ovsnet/ovsnet/internal/policy"
)

// fakePolicies is a policy.Source the test edits.
type fakePolicies struct {
	mu       sync.Mutex
	policies []*networkingv1.NetworkPolicy
	labels   map[string]map[string]string // pod name -> labels (namespace "default")
	changed  chan struct{}
}

func newFakePolicies() *fakePolicies {
	return &fakePolicies{labels: map[string]map[string]string{}, changed: make(chan struct{})}
}

func (f *fakePolicies) Snapshot() (policy.Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := policy.Snapshot{Policies: append([]*networkingv1.NetworkPolicy(nil), f.policies...),
		Namespaces: map[string]map[string]string{"default": {"kubernetes.io/metadata.name": "default"}}}
	for name, l := range f.labels {
		s.Pods = append(s.Pods, policy.Pod{Namespace: "default", Name: name, Labels: l})
	}
	return s, true
}

func (f *fakePolicies) Pod(namespace, name, _ string) (policy.Pod, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.labels[name]
	return policy.Pod{Namespace: namespace, Name: name, Labels: l}, ok
}

func (f *fakePolicies) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakePolicies) set(edit func()) {
	f.mu.Lock()
	edit()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func udpPort(n int) networkingv1.NetworkPolicyPort {
	p := corev1.ProtocolUDP
	v := intstr.FromInt32(int32(n))
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

// TestNetworkPolicyTables enforces NetworkPolicy through the agent on a
// real OVS, asserting every denial where the forbidden datagram would
// arrive: after the forbidden batch, an allowed batch from the same pod
// through the same ports is sent and waited for; when it has arrived, the
// forbidden one had its chance and must not have.
func TestNetworkPolicyTables(t *testing.T) {
	src := newFakePolicies()
	e := newPodEnv(t, func(c *agent.Config) { c.PolicySource = src })
	a, b, c := e.newPod(), e.newPod(), e.newPod()
	src.set(func() {
		src.labels[a.Name] = map[string]string{"app": "a"}
		src.labels[b.Name] = map[string]string{"app": "b"}
		src.labels[c.Name] = map[string]string{"app": "c"}
	})
	e.add(a)
	e.add(b)
	e.add(c)
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	counters := map[int]*cnitest.UDPCounter{}
	for _, port := range []int{9000, 9001, 9002} {
		rx, err := cnitest.ListenUDP(b.ns.Path, b.ip, port)
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		counters[port] = rx
	}
	sent := map[string]int{} // "src:port" -> datagrams sent, for the waits
	send := func(from *testPod, port, n int) {
		t.Helper()
		if err := cnitest.SendUDP(from.ns.Path, from.ip, b.ip, port, n); err != nil {
			t.Fatal(err)
		}
		sent[fmt.Sprintf("%s:%d", from.Name, port)] += n
	}
	arrives := func(from *testPod, port int) {
		t.Helper()
		if err := counters[port].WaitFrom(ctx, from.ip, sent[fmt.Sprintf("%s:%d", from.Name, port)]); err != nil {
			t.Fatalf("allowed datagrams from %s to port %d: %v", from.Name, port, err)
		}
	}
	never := func(from *testPod, port int, what string) {
		t.Helper()
		if n := counters[port].From(from.ip); n != 0 {
			t.Fatalf("%s: %d datagrams from %s arrived at port %d", what, n, from.Name, port)
		}
	}
	// No policy: everything passes.
	send(a, 9001, 5)
	arrives(a, 9001)

	// b admits only UDP 9000 from app=a and UDP 9002 from app=c.
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "b-in"}}
	pol.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}}
	pol.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{
		{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}}},
			Ports: []networkingv1.NetworkPolicyPort{udpPort(9000)}},
		{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "c"}}}},
			Ports: []networkingv1.NetworkPolicyPort{udpPort(9002)}},
	}
	src.set(func() { src.policies = []*networkingv1.NetworkPolicy{pol} })
	if err := e.a.Agent.PolicyPass(ctx); err != nil {
		t.Fatal(err)
	}
	before := counters[9001].From(a.ip)
	send(a, 9001, 10) // a port no rule allows
	send(a, 9000, 5)  // the fence: allowed
	arrives(a, 9000)
	if n := counters[9001].From(a.ip); n != before {
		t.Fatalf("isolated pod: %d datagrams to a port no rule allows arrived\n%s", n-before, e.o.Ofctl("-O", "OpenFlow13", "dump-flows", "br-int"))
	}
	send(c, 9000, 10) // the port allowed to a, not to c
	send(c, 9002, 5)
	arrives(c, 9002)
	never(c, 9000, "a peer the rule does not select")
	checkPolicyAPI(t, e, b, 20)

	// An established connection's replies pass: b, isolated for ingress,
	// gets the answers to what it sends.
	echo, err := cnitest.StartEcho(a.ns.Path, a.ip, 7000)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	if got, err := cnitest.TCPEcho(ctx, b.ns.Path, a.ip+":7000", "out"); err != nil || got != "out from "+b.ip {
		t.Fatalf("b's own connection to a, replies through b's ingress isolation: %q %v", got, err)
	}
	// The node reaches isolated pods (kubelet probes).
	if err := reach(ctx, e.o.Netns(), b.ip); err != nil {
		t.Fatalf("node -> isolated pod: %v", err)
	}

	// Egress: a may send only to 10.244.7.0/24 except b.
	egress := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a-out"}}
	egress.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}
	egress.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	egress.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.7.0/24", Except: []string{b.ip + "/32"}}}}}}
	src.set(func() { src.policies = []*networkingv1.NetworkPolicy{pol, egress} })
	if err := e.a.Agent.PolicyPass(ctx); err != nil {
		t.Fatal(err)
	}
	before = counters[9000].From(a.ip)
	send(a, 9000, 10)
	// The fence: a's allowed traffic (to c) through a's port.
	rxc, err := cnitest.ListenUDP(c.ns.Path, c.ip, 9000)
	if err != nil {
		t.Fatal(err)
	}
	defer rxc.Close()
	if err := cnitest.SendUDP(a.ns.Path, a.ip, c.ip, 9000, 5); err != nil {
		t.Fatal(err)
	}
	if err := rxc.WaitFrom(ctx, a.ip, 5); err != nil {
		t.Fatalf("egress to an address the block allows: %v", err)
	}
	if n := counters[9000].From(a.ip); n != before {
		t.Fatalf("egress to the block's except: %d datagrams arrived\n%s", n-before, e.o.Ofctl("-O", "OpenFlow13", "dump-flows", "br-int"))
	}

	// A new pod its policy selects is isolated from the moment ADD returns,
	// also when the agent learns of the pod late (its informer lags the
	// API): ADD waits for the pod's labels. The listeners bind before ADD,
	// so a datagram that passes right after ADD has a socket to arrive at.
	d := e.newPod()
	rxd, err := cnitest.ListenUDP(d.ns.Path, "0.0.0.0", 9001)
	if err != nil {
		t.Fatal(err)
	}
	defer rxd.Close()
	rxd2, err := cnitest.ListenUDP(d.ns.Path, "0.0.0.0", 9002)
	if err != nil {
		t.Fatal(err)
	}
	defer rxd2.Close()
	type addResult struct {
		ip  string
		err error
	}
	added := make(chan addResult, 1)
	go func() {
		res, err := e.rt.Add(e.ctx, d.Pod)
		if err == nil && len(res.IPs) != 1 {
			err = fmt.Errorf("%d IPs", len(res.IPs))
		}
		if err != nil {
			added <- addResult{err: err}
			return
		}
		added <- addResult{ip: res.IPs[0].Address.IP.String()}
	}()
	// While the pod is unknown, ADD must not return. The window only
	// bounds how long the test looks; ADD returning at all is the failure.
	select {
	case r := <-added:
		t.Fatalf("ADD of a pod unknown to the cluster's state returned (%v): its policies could not have been applied", r.err)
	case <-time.After(500 * time.Millisecond):
	}
	src.set(func() { src.labels[d.Name] = map[string]string{"app": "b"} })
	r := <-added
	if r.err != nil {
		t.Fatalf("ADD %s: %v", d.Name, r.err)
	}
	d.ip = r.ip
	if err := cnitest.SendUDP(c.ns.Path, c.ip, d.ip, 9001, 10); err != nil {
		t.Fatal(err)
	}
	if err := cnitest.SendUDP(c.ns.Path, c.ip, d.ip, 9002, 5); err != nil {
		t.Fatal(err)
	}
	if err := rxd2.WaitFrom(ctx, c.ip, 5); err != nil {
		t.Fatalf("a new pod's allowed port: %v", err)
	}
	if n := rxd.From(c.ip); n != 0 {
		t.Fatalf("a new pod was open right after ADD: %d datagrams to a denied port arrived", n)
	}

	// Removing the policies opens b again.
	src.set(func() { src.policies = nil })
	if err := e.a.Agent.PolicyPass(ctx); err != nil {
		t.Fatal(err)
	}
	before = counters[9000].From(c.ip)
	if err := cnitest.SendUDP(c.ns.Path, c.ip, b.ip, 9000, 5); err != nil {
		t.Fatal(err)
	}
	if err := counters[9000].WaitFrom(ctx, c.ip, before+5); err != nil {
		t.Fatalf("after the policies went: %v\n%s", err, e.o.Ofctl("-O", "OpenFlow13", "dump-flows", "br-int"))
	}
}

// checkPolicyAPI reads b's policy through ovsnetctl and the metrics: b is
// isolated for ingress by default/b-in, with its two rules, and its drop
// flows and the denied-packets counter have counted at least denied
// datagrams.
func checkPolicyAPI(t *testing.T, e *podEnv, b *testPod, denied int) {
	t.Helper()
	// Flow statistics reach the OpenFlow tables with the revalidators.
	e.o.Appctl("revalidator/wait")
	e.o.Appctl("revalidator/wait")
	addr, err := e.a.HealthAddr(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := ctl.Command()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--agent", addr.String(), "--json", "policy", "default/" + b.Name})
	if err := cmd.ExecuteContext(e.ctx); err != nil {
		t.Fatalf("ovsnetctl policy: %v", err)
	}
	var pp agentapi.PodPolicy
	if err := json.Unmarshal(out.Bytes(), &pp); err != nil {
		t.Fatal(err)
	}
	if !pp.Enforced || !pp.IngressIsolated || pp.EgressIsolated || !slices.Equal(pp.Policies, []string{"default/b-in"}) || len(pp.Rules) != 2 {
		t.Fatalf("ovsnetctl policy %s: %+v", b.Name, pp)
	}
	var drops uint64
	for _, f := range pp.Isolation {
		drops += f.Packets
	}
	if drops < uint64(denied) {
		t.Fatalf("isolation flows counted %d drops, want >= %d: %+v", drops, denied, pp.Isolation)
	}
	for _, r := range pp.Rules {
		if len(r.Flows) == 0 || r.Conjunction == 0 {
			t.Fatalf("rule %s: no flows or conjunction: %+v", r.ID, r)
		}
	}
	out.Reset()
	cmd = ctl.Command()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--agent", addr.String(), "policy", "default/" + b.Name})
	if err := cmd.ExecuteContext(e.ctx); err != nil {
		t.Fatalf("ovsnetctl policy: %v", err)
	}
	if !strings.Contains(out.String(), "isolated: only what a rule allows passes") {
		t.Fatalf("ovsnetctl policy table:\n%s", out.String())
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	series := fmt.Sprintf(`ovsnet_policy_denied_packets_total{direction="ingress",namespace="default",pod=%q,policies="default/b-in"} `, b.Name)
	i := strings.Index(string(body), series)
	if i < 0 {
		t.Fatalf("/metrics lacks %s", series)
	}
	var v float64
	if _, err := fmt.Sscan(string(body[i+len(series):]), &v); err != nil || v < float64(denied) {
		t.Fatalf("%s = %v (%v), want >= %d", series, v, err, denied)
	}
}

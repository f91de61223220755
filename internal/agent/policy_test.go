package agent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/cnitest"
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
	t.Logf("%s policy set", time.Now().Format(time.StampMicro))
	if err := e.a.Agent.PolicyPass(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s policy pass returned", time.Now().Format(time.StampMicro))
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

	// A new pod its policy selects is isolated from the moment ADD returns.
	d := e.newPod()
	src.set(func() { src.labels[d.Name] = map[string]string{"app": "b"} })
	e.add(d)
	rxd, err := cnitest.ListenUDP(d.ns.Path, d.ip, 9001)
	if err != nil {
		t.Fatal(err)
	}
	defer rxd.Close()
	rxd2, err := cnitest.ListenUDP(d.ns.Path, d.ip, 9002)
	if err != nil {
		t.Fatal(err)
	}
	defer rxd2.Close()
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

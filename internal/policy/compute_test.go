package policy

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovsnet/ovsnet/internal/pipeline"
)

func pod(ns, name, ip string, local bool, lbl map[string]string, ports ...NamedPort) Pod {
	return Pod{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), Local: local, Labels: lbl, Ports: ports}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func tcp(port int) networkingv1.NetworkPolicyPort {
	p := corev1.ProtocolTCP
	v := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

func named(name string) networkingv1.NetworkPolicyPort {
	p := corev1.ProtocolTCP
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

func np(ns, name string, podSel *metav1.LabelSelector, spec func(*networkingv1.NetworkPolicySpec)) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.PodSelector = *podSel
	if spec != nil {
		spec(&p.Spec)
	}
	return p
}

var world = Snapshot{
	Namespaces: map[string]map[string]string{"a": {"team": "red"}, "b": {"team": "blue"}, "c": {"team": "red"}},
	Pods: []Pod{
		pod("a", "web", "10.0.0.2", true, map[string]string{"app": "web"}, NamedPort{"http", 6, 8080}),
		pod("a", "db", "10.0.0.3", true, map[string]string{"app": "db"}, NamedPort{"http", 6, 9090}),
		pod("a", "client", "10.0.1.2", false, map[string]string{"app": "client"}),
		pod("b", "client", "10.0.1.3", false, map[string]string{"app": "client"}),
		pod("c", "other", "10.0.1.4", false, map[string]string{"app": "other"}),
	},
}

func ips(s ...string) []netip.Addr {
	out := []netip.Addr{}
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func prefixes(s ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func compute(pols ...*networkingv1.NetworkPolicy) Result {
	s := world
	s.Policies = pols
	return Compute(s)
}

func TestDefaultDenyIsolatesWithoutRules(t *testing.T) {
	r := compute(np("a", "deny", &metav1.LabelSelector{}, func(s *networkingv1.NetworkPolicySpec) {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}))
	if len(r.Rules) != 0 {
		t.Fatalf("rules of a default deny: %+v", r.Rules)
	}
	for _, p := range []string{"a/web", "a/db"} {
		if iso := r.Isolated[p]; !iso.Ingress || !iso.Egress {
			t.Errorf("%s isolation %+v, want both", p, iso)
		}
	}
	if _, ok := r.Isolated["a/client"]; ok {
		t.Error("a remote pod isolated: only local pods get flows")
	}
}

func TestPodAndNamespaceSelectors(t *testing.T) {
	r := compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}}, Ports: []networkingv1.NetworkPolicyPort{tcp(80)}},
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "red")}}},
			{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "blue"), PodSelector: sel("app", "client")}}},
		}
	}))
	if iso := r.Isolated["a/web"]; !iso.Ingress || iso.Egress {
		t.Fatalf("isolation %+v, want ingress only (policyTypes default)", iso)
	}
	if _, ok := r.Isolated["a/db"]; ok {
		t.Fatal("a pod the policy does not select is isolated")
	}
	if len(r.Rules) != 3 {
		t.Fatalf("%d rules, want 3: %+v", len(r.Rules), r.Rules)
	}
	// podSelector alone: the policy's namespace only.
	if got := r.Rules[0]; !slices.Equal(got.Pods, ips("10.0.0.2")) || !slices.Equal(got.Peers, prefixes("10.0.1.2/32")) ||
		!slices.Equal(got.Ports, []pipeline.PolicyPort{{Proto: 6, Port: 80}}) {
		t.Errorf("rule 0: %+v", got)
	}
	// namespaceSelector alone: every pod of namespaces a and c.
	if got := r.Rules[1].Peers; len(got) != 4 || !slices.Contains(got, netip.MustParsePrefix("10.0.1.4/32")) ||
		slices.Contains(got, netip.MustParsePrefix("10.0.1.3/32")) {
		t.Errorf("rule 1 peers %v", got)
	}
	// Both: pods matching in matching namespaces.
	if got := r.Rules[2].Peers; !slices.Equal(got, prefixes("10.0.1.3/32")) {
		t.Errorf("rule 2 peers %v", got)
	}
}

func TestEmptyFromIsAnyPeer(t *testing.T) {
	r := compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}
	}))
	if len(r.Rules) != 1 || !r.Rules[0].AnyPeer {
		t.Fatalf("rules %+v, want one from any peer", r.Rules)
	}
}

func TestIPBlockExcept(t *testing.T) {
	r := compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/24", Except: []string{"192.168.0.64/26", "192.168.0.5/32"}}},
		}}}
	}))
	if len(r.Rules) != 1 {
		t.Fatalf("rules %+v", r.Rules)
	}
	got := r.Rules[0].Peers
	in := func(a string) bool {
		for _, p := range got {
			if p.Contains(netip.MustParseAddr(a)) {
				return true
			}
		}
		return false
	}
	for a, want := range map[string]bool{"192.168.0.1": true, "192.168.0.5": false, "192.168.0.4": true, "192.168.0.6": true,
		"192.168.0.64": false, "192.168.0.127": false, "192.168.0.128": true, "192.168.0.255": true, "192.168.1.1": false} {
		if in(a) != want {
			t.Errorf("%s in the block minus except: %v, want %v (prefixes %v)", a, in(a), want, got)
		}
	}
	if iso := r.Isolated["a/web"]; iso.Ingress || !iso.Egress {
		t.Errorf("isolation %+v, want egress only", iso)
	}
}

func TestNamedPorts(t *testing.T) {
	// Ingress: resolved against each selected (destination) pod.
	r := compute(np("a", "p", &metav1.LabelSelector{}, func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{named("http")}}}
	}))
	if len(r.Rules) != 2 {
		t.Fatalf("ingress named port: %+v, want one rule per resolution", r.Rules)
	}
	for _, rule := range r.Rules {
		want := uint16(8080)
		if slices.Equal(rule.Pods, ips("10.0.0.3")) {
			want = 9090
		}
		if len(rule.Ports) != 1 || rule.Ports[0].Port != want {
			t.Errorf("rule %s for %v: ports %+v, want %d", rule.ID, rule.Pods, rule.Ports, want)
		}
	}
	// Egress: resolved against each peer.
	r = compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "db")}},
			Ports: []networkingv1.NetworkPolicyPort{named("http")}}}
	}))
	if len(r.Rules) != 1 || r.Rules[0].Ports[0].Port != 9090 || !slices.Equal(r.Rules[0].Peers, prefixes("10.0.0.3/32")) {
		t.Fatalf("egress named port: %+v", r.Rules)
	}
	// A name nobody has allows nothing (and isolates still).
	r = compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{named("nope")}}}
	}))
	if len(r.Rules) != 0 || !r.Isolated["a/web"].Ingress {
		t.Fatalf("unknown named port: %+v %+v", r.Rules, r.Isolated)
	}
}

func TestEndPortAndProtocols(t *testing.T) {
	udp := corev1.ProtocolUDP
	port := intstr.FromInt32(1000)
	end := int32(1010)
	r := compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: &udp, Port: &port, EndPort: &end}, {Protocol: &udp},
		}}}
	}))
	want := []pipeline.PolicyPort{{Proto: 17}, {Proto: 17, Port: 1000, EndPort: 1010}}
	if len(r.Rules) != 1 || !slices.Equal(r.Rules[0].Ports, want) {
		t.Fatalf("ports %+v, want %+v", r.Rules, want)
	}
}

func TestUnusableParts(t *testing.T) {
	r := compute(np("a", "p", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/64"}},
		}}}
	}))
	if len(r.Problems) != 1 || !r.Isolated["a/web"].Ingress {
		t.Fatalf("problems %+v isolation %+v", r.Problems, r.Isolated)
	}
	// The IPv6 block allows nothing: there is no rule with any peer.
	for _, rule := range r.Rules {
		if rule.AnyPeer {
			t.Fatalf("an unusable peer became any peer: %+v", rule)
		}
	}
}

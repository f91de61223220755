// Package policy realises Kubernetes NetworkPolicy on this node: from the
// policies, pods and namespaces of the cluster it computes, for each local
// pod, whether it is isolated in each direction and which rules allow
// traffic to or from it (compute.go, pure), and keeps the pipeline's policy
// flows equal to that (controller.go).
package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Pod is a pod as policy sees it.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	// IP is the pod's IPv4 address; invalid while it has none.
	IP netip.Addr
	// Ports are the container ports, for named ports.
	Ports []NamedPort
	// Local: the pod has an attachment on this node.
	Local bool
}

func (p Pod) key() string { return p.Namespace + "/" + p.Name }

// NamedPort is a container port with a name.
type NamedPort struct {
	Name  string
	Proto uint8
	Port  uint16
}

// Snapshot is the state rules are computed from.
type Snapshot struct {
	Policies []*networkingv1.NetworkPolicy
	// Namespaces maps a namespace's name to its labels.
	Namespaces map[string]map[string]string
	Pods       []Pod
}

// Rule is one compiled rule: the local pods it applies to, the peers, the
// ports. ID names it (and its flows' owner); it is stable while the rule's
// position in its policy is.
type Rule struct {
	ID        string
	Policy    string // namespace/name
	Direction pipeline.Direction
	Pods      []netip.Addr
	Peers     []netip.Prefix
	AnyPeer   bool
	Ports     []pipeline.PolicyPort
	// Describe says what the rule allows, for operators.
	Describe string
}

// Isolation says in which directions a local pod is isolated, and by which
// policies.
type Isolation struct {
	Ingress, Egress bool
	Policies        []string
}

// Problem is a part of a policy that cannot be realised.
type Problem struct {
	Policy  string
	Message string
}

// Result is what a snapshot compiles to.
type Result struct {
	Rules []Rule
	// Isolated maps each isolated local pod (namespace/name) to how.
	Isolated map[string]Isolation
	Problems []Problem
}

// Compute compiles a snapshot. It is a pure function.
func Compute(s Snapshot) Result {
	res := Result{Isolated: map[string]Isolation{}}
	pols := slices.Clone(s.Policies)
	slices.SortFunc(pols, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	byNS := map[string][]Pod{}
	for _, p := range s.Pods {
		byNS[p.Namespace] = append(byNS[p.Namespace], p)
	}
	for _, pol := range pols {
		name := pol.Namespace + "/" + pol.Name
		sel, err := metav1.LabelSelectorAsSelector(&pol.Spec.PodSelector)
		if err != nil {
			res.Problems = append(res.Problems, Problem{name, "podSelector: " + err.Error()})
			continue
		}
		var applied []Pod
		for _, p := range byNS[pol.Namespace] {
			if p.Local && p.IP.IsValid() && sel.Matches(labels.Set(p.Labels)) {
				applied = append(applied, p)
			}
		}
		if len(applied) == 0 {
			continue // only policies that select local pods produce flows
		}
		ingress, egress := policyTypes(pol)
		for _, p := range applied {
			iso := res.Isolated[p.key()]
			iso.Ingress = iso.Ingress || ingress
			iso.Egress = iso.Egress || egress
			iso.Policies = append(iso.Policies, name)
			res.Isolated[p.key()] = iso
		}
		if ingress {
			for i, r := range pol.Spec.Ingress {
				rules, probs := compileRule(s, byNS, pol, pipeline.Ingress, i, r.From, r.Ports, applied)
				res.Rules = append(res.Rules, rules...)
				res.Problems = append(res.Problems, probs...)
			}
		}
		if egress {
			for i, r := range pol.Spec.Egress {
				rules, probs := compileRule(s, byNS, pol, pipeline.Egress, i, r.To, r.Ports, applied)
				res.Rules = append(res.Rules, rules...)
				res.Problems = append(res.Problems, probs...)
			}
		}
	}
	return res
}

// policyTypes: Ingress unless the policy says otherwise; Egress when it
// says so or has egress rules.
func policyTypes(pol *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(pol.Spec.PolicyTypes) == 0 {
		return true, len(pol.Spec.Egress) > 0
	}
	for _, t := range pol.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// peerSet is the peers of a rule: pods (with their named ports) and
// address blocks.
type peerSet struct {
	any    bool
	pods   []Pod
	blocks []netip.Prefix
}

func selectPeers(s Snapshot, byNS map[string][]Pod, pol *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer) (peerSet, []string) {
	if len(peers) == 0 {
		return peerSet{any: true}, nil
	}
	var ps peerSet
	var probs []string
	seen := map[string]bool{}
	addPod := func(p Pod) {
		if !p.IP.IsValid() || seen[p.key()] {
			return
		}
		seen[p.key()] = true
		ps.pods = append(ps.pods, p)
	}
	for _, peer := range peers {
		switch {
		case peer.IPBlock != nil:
			blocks, err := ipBlock(peer.IPBlock)
			if err != nil {
				probs = append(probs, err.Error())
				continue
			}
			ps.blocks = append(ps.blocks, blocks...)
		case peer.PodSelector != nil || peer.NamespaceSelector != nil:
			podSel := labels.Everything()
			if peer.PodSelector != nil {
				sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil {
					probs = append(probs, "podSelector: "+err.Error())
					continue
				}
				podSel = sel
			}
			namespaces := []string{pol.Namespace}
			if peer.NamespaceSelector != nil {
				nsSel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
				if err != nil {
					probs = append(probs, "namespaceSelector: "+err.Error())
					continue
				}
				namespaces = namespaces[:0]
				for ns, l := range s.Namespaces {
					if nsSel.Matches(labels.Set(l)) {
						namespaces = append(namespaces, ns)
					}
				}
				slices.Sort(namespaces)
			}
			for _, ns := range namespaces {
				for _, p := range byNS[ns] {
					if podSel.Matches(labels.Set(p.Labels)) {
						addPod(p)
					}
				}
			}
		}
	}
	return ps, probs
}

// ipBlock is cidr minus its excepts, IPv4 only.
func ipBlock(b *networkingv1.IPBlock) ([]netip.Prefix, error) {
	c, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock %q: %w", b.CIDR, err)
	}
	if !c.Addr().Is4() {
		return nil, fmt.Errorf("ipBlock %s: IPv6 is not supported yet (pods are IPv4)", b.CIDR)
	}
	out := []netip.Prefix{c.Masked()}
	for _, e := range b.Except {
		x, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock %s except %q: %w", b.CIDR, e, err)
		}
		out = subtract(out, x.Masked())
	}
	return out, nil
}

// subtract removes x from every prefix of in.
func subtract(in []netip.Prefix, x netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range in {
		switch {
		case !p.Overlaps(x):
			out = append(out, p)
		case x.Bits() <= p.Bits():
			// x covers p: nothing of p is left.
		default:
			// Split p in halves until x is cut out.
			lo, hi := halves(p)
			out = append(out, subtract([]netip.Prefix{lo, hi}, x)...)
		}
	}
	return out
}

func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1 << (32 - bits)
	hi := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
	return lo, hi
}

func protoOf(p *corev1.Protocol) (uint8, bool) {
	if p == nil {
		return 6, true
	}
	switch *p {
	case corev1.ProtocolTCP:
		return 6, true
	case corev1.ProtocolUDP:
		return 17, true
	case corev1.ProtocolSCTP:
		return 132, true
	}
	return 0, false
}

// portSpec is a rule's port entry: a number (or range), or a name to be
// resolved against a pod.
type portSpec struct {
	proto   uint8
	port    uint16
	endPort uint16
	name    string
}

func rulePorts(ports []networkingv1.NetworkPolicyPort) ([]portSpec, []string) {
	var out []portSpec
	var probs []string
	for _, p := range ports {
		proto, ok := protoOf(p.Protocol)
		if !ok {
			probs = append(probs, fmt.Sprintf("protocol %s is not supported", *p.Protocol))
			continue
		}
		ps := portSpec{proto: proto}
		if p.Port != nil {
			if p.Port.Type == intstr.String {
				ps.name = p.Port.StrVal
			} else {
				ps.port = uint16(p.Port.IntVal)
				if p.EndPort != nil && *p.EndPort > p.Port.IntVal {
					ps.endPort = uint16(*p.EndPort)
				}
			}
		}
		out = append(out, ps)
	}
	return out, probs
}

// resolve turns port specs into pipeline ports for one pod (its named
// ports); named ports the pod does not have are dropped.
func resolve(specs []portSpec, pod *Pod) []pipeline.PolicyPort {
	var out []pipeline.PolicyPort
	for _, s := range specs {
		if s.name == "" {
			out = append(out, pipeline.PolicyPort{Proto: s.proto, Port: s.port, EndPort: s.endPort})
			continue
		}
		if pod == nil {
			continue
		}
		for _, np := range pod.Ports {
			if np.Name == s.name && np.Proto == s.proto {
				out = append(out, pipeline.PolicyPort{Proto: s.proto, Port: np.Port})
			}
		}
	}
	slices.SortFunc(out, func(a, b pipeline.PolicyPort) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.EndPort, b.EndPort))
	})
	return slices.Compact(out)
}

func hasNamed(specs []portSpec) bool {
	return slices.ContainsFunc(specs, func(s portSpec) bool { return s.name != "" })
}

func portsKey(ports []pipeline.PolicyPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%d:%d-%d,", p.Proto, p.Port, p.EndPort)
	}
	return b.String()
}

// compileRule compiles one rule of a policy. A rule with named ports splits
// into one rule per distinct resolution: per group of local pods (ingress:
// the port is the destination pod's) or of peer pods (egress: the peer's).
func compileRule(s Snapshot, byNS map[string][]Pod, pol *networkingv1.NetworkPolicy, dir pipeline.Direction, idx int,
	peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, applied []Pod) ([]Rule, []Problem) {
	name := pol.Namespace + "/" + pol.Name
	var problems []Problem
	specs, probs := rulePorts(ports)
	ps, probs2 := selectPeers(s, byNS, pol, peers)
	for _, p := range append(probs, probs2...) {
		problems = append(problems, Problem{name, fmt.Sprintf("%s rule %d: %s", dir, idx, p)})
	}
	if len(ports) > 0 && len(specs) == 0 {
		// Every port of the rule was unusable: the rule allows nothing
		// (allowing everything instead would open what was meant closed).
		return nil, problems
	}
	base := fmt.Sprintf("policy/%s/%s/%d", name, dir, idx)
	podIPs := func(pods []Pod) []netip.Addr {
		out := make([]netip.Addr, 0, len(pods))
		for _, p := range pods {
			out = append(out, p.IP)
		}
		return out
	}
	peerPrefixes := func(pods []Pod, blocks []netip.Prefix) []netip.Prefix {
		out := slices.Clone(blocks)
		for _, p := range pods {
			out = append(out, netip.PrefixFrom(p.IP, 32))
		}
		return out
	}
	describe := func(ports []pipeline.PolicyPort) string {
		peer := "any peer"
		if !ps.any {
			peer = fmt.Sprintf("%d pod(s), %d address block(s)", len(ps.pods), len(ps.blocks))
		}
		port := "any port"
		if len(specs) > 0 {
			var parts []string
			for _, p := range ports {
				q := protoName(p.Proto)
				if p.Port != 0 {
					q += fmt.Sprintf("/%d", p.Port)
					if p.EndPort > p.Port {
						q += fmt.Sprintf("-%d", p.EndPort)
					}
				}
				parts = append(parts, q)
			}
			port = strings.Join(parts, " ")
		}
		verb := "from"
		if dir == pipeline.Egress {
			verb = "to"
		}
		return fmt.Sprintf("%s %s %s on %s", dir, verb, peer, port)
	}
	mk := func(id string, pods []Pod, peerPods []Pod, blocks []netip.Prefix, any bool, ports []pipeline.PolicyPort) Rule {
		return Rule{ID: id, Policy: name, Direction: dir, Pods: podIPs(pods), Peers: peerPrefixes(peerPods, blocks),
			AnyPeer: any, Ports: ports, Describe: describe(ports)}
	}
	if !hasNamed(specs) {
		return []Rule{mk(base, applied, ps.pods, ps.blocks, ps.any, resolve(specs, nil))}, problems
	}
	var out []Rule
	if dir == pipeline.Ingress {
		groups := map[string][]Pod{}
		portsOf := map[string][]pipeline.PolicyPort{}
		for _, p := range applied {
			r := resolve(specs, &p)
			k := portsKey(r)
			groups[k] = append(groups[k], p)
			portsOf[k] = r
		}
		for i, k := range slices.Sorted(mapsKeys(groups)) {
			if len(portsOf[k]) == 0 {
				continue // none of the named ports exists on these pods
			}
			out = append(out, mk(fmt.Sprintf("%s/%d", base, i), groups[k], ps.pods, ps.blocks, ps.any, portsOf[k]))
		}
		return out, problems
	}
	// Egress: the named port is the peer's. Address blocks and "any
	// peer" get the numbered ports only.
	numbered := resolve(specs, nil)
	if len(numbered) > 0 && (len(ps.blocks) > 0 || ps.any) {
		out = append(out, mk(base+"/n", applied, nil, ps.blocks, ps.any, numbered))
	}
	candidates := ps.pods
	if ps.any {
		candidates = s.Pods // any peer: every pod with the named port
	}
	groups := map[string][]Pod{}
	portsOf := map[string][]pipeline.PolicyPort{}
	for _, p := range candidates {
		if !p.IP.IsValid() {
			continue
		}
		r := resolve(specs, &p)
		k := portsKey(r)
		groups[k] = append(groups[k], p)
		portsOf[k] = r
	}
	for i, k := range slices.Sorted(mapsKeys(groups)) {
		if len(portsOf[k]) == 0 {
			continue
		}
		out = append(out, mk(fmt.Sprintf("%s/%d", base, i), applied, groups[k], nil, false, portsOf[k]))
	}
	return out, problems
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return fmt.Sprintf("proto %d", p)
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/pipeline/pipelinetest"
)

// memSource is a Source the test edits.
type memSource struct {
	mu      sync.Mutex
	snap    Snapshot
	changed chan struct{}
	reads   int // snapshots taken
}

func newMemSource() *memSource {
	return &memSource{changed: make(chan struct{}),
		snap: Snapshot{Namespaces: map[string]map[string]string{"ns": {"kubernetes.io/metadata.name": "ns"}}}}
}

func (s *memSource) Snapshot() (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	out := Snapshot{Policies: append([]*networkingv1.NetworkPolicy(nil), s.snap.Policies...),
		Namespaces: s.snap.Namespaces, Pods: append([]Pod(nil), s.snap.Pods...)}
	return out, true
}

func (s *memSource) Pod(namespace, name, _ string) (Pod, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.snap.Pods {
		if p.Namespace == namespace && p.Name == name {
			return p, true
		}
	}
	return Pod{}, false
}

func (s *memSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *memSource) edit(f func(*Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.snap)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *memSource) snapshotReads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

type ctlEnv struct {
	t     *testing.T
	ctx   context.Context
	src   *memSource
	store *attachments.Store
	flows *pipeline.Manager
	sw    *pipelinetest.Switch
	c     *Controller
}

func newCtlEnv(t *testing.T, cfg Config) *ctlEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	e := &ctlEnv{t: t, ctx: ctx, src: newMemSource(), store: attachments.New(),
		flows: pipeline.NewManager(nil), sw: pipelinetest.New()}
	if err := e.flows.Resync(ctx, e.sw); err != nil {
		t.Fatal(err)
	}
	cfg.Source, cfg.Store, cfg.Flows = e.src, e.store, e.flows
	cfg.Network = pipeline.Network{PodCIDR: netip.MustParsePrefix("10.0.0.0/24"), GatewayIP: netip.MustParseAddr("10.0.0.1")}
	cfg.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
	e.c = New(cfg)
	done := make(chan struct{})
	go func() { defer close(done); _ = e.c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// attach adds a ready local attachment for pod ns/name at ip.
func (e *ctlEnv) attach(name, container string, ip netip.Addr) attachments.Attachment {
	e.t.Helper()
	a, err := e.store.Reserve(attachments.Attachment{Key: attachments.Key{ContainerID: container, IfName: "eth0"},
		HostIfName: "h-" + container, Pod: cniapi.PodRef{Namespace: "ns", Name: name, UID: "uid-" + name}})
	if err != nil {
		e.t.Fatal(err)
	}
	a, err = e.store.Update(a.Key, a.Incarnation, func(x *attachments.Attachment) {
		x.IP, x.State = netip.PrefixFrom(ip, 24), attachments.Plumbed
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// check asserts the controller's invariants after a pass that began after
// the last edit:
//   - every policy owner the flow manager holds belongs to a live rule, to
//     an isolated-or-not local attachment, or is the exemptions (no flow
//     without a live owner);
//   - every live rule and every local attachment has its owner, with the
//     flows the pure computation says;
//   - live rules have distinct conjunction ids and priorities;
//   - the switch holds exactly the manager's flows.
func (e *ctlEnv) check(step string) {
	e.t.Helper()
	if err := e.c.WaitPass(e.ctx); err != nil {
		e.t.Fatalf("%s: %v", step, err)
	}
	snap, _ := e.src.Snapshot()
	locals := map[attachments.Key]attachments.Attachment{}
	byKey := map[string]int{}
	for i, p := range snap.Pods {
		byKey[p.key()] = i
	}
	for _, a := range e.store.List() {
		if a.State == attachments.Deleting || !a.IP.IsValid() {
			continue
		}
		locals[a.Key] = a
		p, ok := e.src.Pod(a.Pod.Namespace, a.Pod.Name, a.Pod.UID)
		if !ok {
			p = Pod{Namespace: a.Pod.Namespace, Name: a.Pod.Name}
		}
		p.IP, p.Local = a.IP.Addr(), true
		if i, ok := byKey[p.key()]; ok {
			snap.Pods[i] = p
		} else {
			snap.Pods = append(snap.Pods, p)
		}
	}
	want := Compute(snap)
	desired := e.flows.Desired()
	rules := map[string]Rule{}
	for _, r := range want.Rules {
		rules[r.ID] = r
	}
	conjs, prios := map[uint32]string{}, map[uint16]string{}
	for o, flows := range desired {
		switch {
		case o == ownerExempt:
		case strings.HasPrefix(string(o), "isolation/"):
			found := false
			for k, a := range locals {
				if isolationOwner(k) != o {
					continue
				}
				found = true
				iso := want.Isolated[a.Pod.Namespace+"/"+a.Pod.Name]
				var exp []pipeline.Flow
				if iso.Ingress {
					exp = append(exp, pipeline.IsolationFlows(pipeline.Ingress, a.IP.Addr())...)
				}
				if iso.Egress {
					exp = append(exp, pipeline.IsolationFlows(pipeline.Egress, a.IP.Addr())...)
				}
				if fmt.Sprint(exp) != fmt.Sprint(flows) && !(len(exp) == 0 && len(flows) == 0) {
					e.t.Fatalf("%s: isolation of %s: flows %v, want %v", step, k, flows, exp)
				}
			}
			if !found {
				e.t.Fatalf("%s: owner %s has flows but no live attachment", step, o)
			}
		default:
			r, ok := rules[string(o)]
			if !ok {
				e.t.Fatalf("%s: owner %s has flows but no live rule", step, o)
			}
			e.c.mu.Lock()
			al := e.c.alloc[r.ID]
			e.c.mu.Unlock()
			if prev, dup := conjs[al.conj]; dup {
				e.t.Fatalf("%s: rules %s and %s share conjunction %d", step, prev, r.ID, al.conj)
			}
			if prev, dup := prios[al.prio]; dup {
				e.t.Fatalf("%s: rules %s and %s share priority %d", step, prev, r.ID, al.prio)
			}
			conjs[al.conj], prios[al.prio] = r.ID, r.ID
			exp := pipeline.PolicyRuleFlows(pipeline.PolicyRule{Direction: r.Direction, ConjID: al.conj, Priority: al.prio,
				Pods: r.Pods, Peers: r.Peers, AnyPeer: r.AnyPeer, Ports: r.Ports})
			if fmt.Sprint(exp) != fmt.Sprint(flows) {
				e.t.Fatalf("%s: rule %s: flows %v, want %v", step, r.ID, flows, exp)
			}
		}
	}
	for id, r := range rules {
		e.c.mu.Lock()
		al := e.c.alloc[r.ID]
		e.c.mu.Unlock()
		exp := pipeline.PolicyRuleFlows(pipeline.PolicyRule{Direction: r.Direction, ConjID: al.conj, Priority: al.prio,
			Pods: r.Pods, Peers: r.Peers, AnyPeer: r.AnyPeer, Ports: r.Ports})
		if _, ok := desired[pipeline.Owner(id)]; !ok && exp != nil {
			e.t.Fatalf("%s: live rule %s has no flows", step, id)
		}
	}
	for k := range locals {
		if _, ok := desired[isolationOwner(k)]; !ok {
			e.t.Fatalf("%s: local attachment %s has no isolation owner", step, k)
		}
	}
	n := 0
	for _, f := range desired {
		n += len(f)
	}
	if got := e.sw.Count(); got != n {
		e.t.Fatalf("%s: switch holds %d flows, the manager %d", step, got, n)
	}
}

func randPolicy(r *rand.Rand, i int) *networkingv1.NetworkPolicy {
	apps := []string{"a", "b", "c"}
	return np("ns", fmt.Sprintf("p%d", i), sel("app", apps[r.IntN(len(apps))]), func(s *networkingv1.NetworkPolicySpec) {
		switch r.IntN(3) {
		case 0: // deny all ingress
			s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		case 1:
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", apps[r.IntN(len(apps))])}},
				Ports: []networkingv1.NetworkPolicyPort{tcp(8000 + r.IntN(3))}}}
		case 2:
			s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
			s.Egress = []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.1.0.0/16", Except: []string{"10.1.2.0/24"}}}}}}
		}
	})
}

// TestControllerRandomized changes policies, labels and local attachments
// in random order, with passes racing the edits and switch restarts, and
// checks the invariants after each round; at the end, with everything gone, only the exemptions
// are left.
func TestControllerRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	e := newCtlEnv(t, Config{UnknownPodWait: time.Millisecond})
	apps := []string{"a", "b", "c"}
	live := map[string]attachments.Attachment{}
	incs := 0
	ipOf := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}) }
	for round := range 60 {
		for range 1 + r.IntN(6) {
			switch r.IntN(6) {
			case 5: // ovs-vswitchd restarts: the session goes, passes meet no
				// switch, and the next session starts empty
				e.flows.SessionLost()
				if r.IntN(2) == 0 {
					e.sw = pipelinetest.New()
					if err := e.flows.Resync(e.ctx, e.sw); err != nil {
						t.Fatal(err)
					}
				}
			case 0, 1: // a policy appears, changes or goes
				i := r.IntN(6)
				pol := randPolicy(r, i)
				del := r.IntN(3) == 0
				e.src.edit(func(s *Snapshot) {
					var keep []*networkingv1.NetworkPolicy
					for _, p := range s.Policies {
						if p.Name != pol.Name {
							keep = append(keep, p)
						}
					}
					if !del {
						keep = append(keep, pol)
					}
					s.Policies = keep
				})
			case 2: // a pod's labels change (local or remote)
				i := r.IntN(8)
				name := fmt.Sprintf("pod%d", i)
				app := apps[r.IntN(len(apps))]
				e.src.edit(func(s *Snapshot) {
					for j := range s.Pods {
						if s.Pods[j].Name == name {
							s.Pods[j].Labels = map[string]string{"app": app}
							return
						}
					}
					s.Pods = append(s.Pods, Pod{Namespace: "ns", Name: name, IP: ipOf(i), Labels: map[string]string{"app": app}})
				})
			case 3: // a local attachment comes
				i := r.IntN(8)
				name := fmt.Sprintf("pod%d", i)
				if _, ok := live[name]; !ok {
					incs++
					live[name] = e.attach(name, fmt.Sprintf("c-%s-%d", name, incs), ipOf(i))
				}
			case 4: // a local attachment goes (through Deleting, as DEL does)
				for name, a := range live {
					if _, err := e.store.Update(a.Key, a.Incarnation, func(x *attachments.Attachment) { x.State = attachments.Deleting }); err != nil {
						t.Fatal(err)
					}
					if r.IntN(2) == 0 {
						e.store.Remove(a.Key, a.Incarnation)
					}
					delete(live, name)
					break
				}
			}
		}
		if !e.flows.Connected() {
			if err := e.c.WaitPass(e.ctx); err != nil {
				t.Fatal(err)
			}
			e.sw = pipelinetest.New()
			if err := e.flows.Resync(e.ctx, e.sw); err != nil {
				t.Fatal(err)
			}
		}
		e.check(fmt.Sprintf("round %d", round))
	}
	e.src.edit(func(s *Snapshot) { s.Policies = nil })
	for _, a := range e.store.List() {
		e.store.Remove(a.Key, a.Incarnation)
	}
	e.check("all gone")
	for o := range e.flows.Desired() {
		if o != ownerExempt {
			t.Fatalf("after every policy and attachment went, owner %s is left", o)
		}
	}
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	if len(e.c.alloc) != 0 || len(e.c.usedPrio) != 0 {
		t.Fatalf("allocations left: %v %v", e.c.alloc, e.c.usedPrio)
	}
}

// TestControllerSkipsUnchanged: a store change that touches nothing a pass
// reads (an annotation of an attachment) completes waiters without a new
// computation.
func TestControllerSkipsUnchanged(t *testing.T) {
	e := newCtlEnv(t, Config{})
	e.src.edit(func(s *Snapshot) {
		s.Pods = []Pod{{Namespace: "ns", Name: "x", Labels: map[string]string{"app": "a"}}}
		s.Policies = []*networkingv1.NetworkPolicy{np("ns", "deny", sel("app", "a"), nil)}
	})
	a := e.attach("x", "c-x", netip.MustParseAddr("10.0.0.5"))
	e.check("attached")
	before := e.src.snapshotReads()
	applied := e.flows.Round()
	for i := range 20 {
		if _, err := e.store.Annotate(a.Key, a.Incarnation, func(x *attachments.Attachment) { x.ReadyAt = time.Unix(int64(i), 0) }); err != nil {
			t.Fatal(err)
		}
		if err := e.c.WaitPass(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Passes read the source's snapshot to learn they can skip; what they
	// must not do is change the switch.
	if e.src.snapshotReads() == before {
		t.Fatal("no pass ran after the annotations")
	}
	if e.flows.Round() != applied {
		t.Fatal("round changed")
	}
	bundles := e.sw.Bundles()
	if _, err := e.store.Update(a.Key, a.Incarnation, func(x *attachments.Attachment) { x.IP = netip.MustParsePrefix("10.0.0.6/24") }); err != nil {
		t.Fatal(err)
	}
	e.check("address changed")
	if e.sw.Bundles() == bundles {
		t.Fatal("an address change sent no flows")
	}
}

// TestWaitPodUnknownPod: a pod the source does not know yet holds its ADD
// until the source learns it, or until UnknownPodWait.
func TestWaitPodUnknownPod(t *testing.T) {
	e := newCtlEnv(t, Config{UnknownPodWait: time.Hour})
	e.src.edit(func(s *Snapshot) {
		s.Policies = []*networkingv1.NetworkPolicy{np("ns", "deny", sel("app", "a"), nil)}
	})
	a := e.attach("late", "c-late", netip.MustParseAddr("10.0.0.7"))
	res := make(chan error, 1)
	go func() { res <- e.c.WaitPod(e.ctx, a) }()
	e.check("attached, pod unknown")
	select {
	case err := <-res:
		t.Fatalf("WaitPod returned (%v) before the pod was known", err)
	default:
	}
	e.src.edit(func(s *Snapshot) {
		s.Pods = append(s.Pods, Pod{Namespace: "ns", Name: "late", Labels: map[string]string{"app": "a"}})
	})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	iso := e.c.ForPod("ns", "late", a.IP.Addr()).Isolation
	if !iso.Ingress {
		t.Fatalf("pod known with labels its policy selects, isolation %+v", iso)
	}
	if !e.flows.Installed(isolationOwner(a.Key)) {
		t.Fatal("isolation flows not installed when WaitPod returned")
	}
}

// TestControllerReportsProblems: a policy that cannot be realised in full is
// reported once (the agent makes a Kubernetes Event of it), and again, empty,
// when it is fixed.
func TestControllerReportsProblems(t *testing.T) {
	type report struct {
		policy   string
		problems []string
	}
	reports := make(chan report, 10)
	e := newCtlEnv(t, Config{OnProblems: func(p string, probs []string) { reports <- report{p, probs} }})
	e.src.edit(func(s *Snapshot) {
		s.Pods = []Pod{{Namespace: "ns", Name: "x", Labels: map[string]string{"app": "a"}}}
	})
	e.attach("x", "c-x", netip.MustParseAddr("10.0.0.5"))
	bad := np("ns", "bad", sel("app", "a"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
			PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}}}}}
	})
	e.src.edit(func(s *Snapshot) { s.Policies = []*networkingv1.NetworkPolicy{bad} })
	e.check("bad policy")
	select {
	case r := <-reports:
		if r.policy != "ns/bad" || len(r.problems) == 0 {
			t.Fatalf("report %+v", r)
		}
	case <-e.ctx.Done():
		t.Fatal("no problem reported")
	}
	// The same problem on the next pass is not reported again.
	e.src.edit(func(s *Snapshot) { s.Pods[0].Labels = map[string]string{"app": "a", "other": "x"} })
	e.check("unrelated change")
	select {
	case r := <-reports:
		t.Fatalf("reported again: %+v", r)
	default:
	}
	e.src.edit(func(s *Snapshot) { s.Policies = nil })
	e.check("policy gone")
	select {
	case r := <-reports:
		if r.policy != "ns/bad" || len(r.problems) != 0 {
			t.Fatalf("report %+v", r)
		}
	case <-e.ctx.Done():
		t.Fatal("the problem's end not reported")
	}
}

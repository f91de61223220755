package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Source is the cluster's policies, namespaces and pods.
type Source interface {
	// Snapshot returns the current state, and false until it is complete.
	Snapshot() (Snapshot, bool)
	// Pod returns one pod (with uid given: that incarnation), if known.
	Pod(namespace, name, uid string) (Pod, bool)
	// Changed is closed at the next change.
	Changed() <-chan struct{}
}

// Config wires the controller.
type Config struct {
	Source Source
	// Store holds the local attachments: a local pod's address is its
	// attachment's.
	Store   *attachments.Store
	Flows   *pipeline.Manager
	Network pipeline.Network
	// NodeIPs are the node's own addresses (its traffic to its pods is
	// always allowed); ServiceCIDRs the Service address ranges.
	NodeIPs      func() []netip.Addr
	ServiceCIDRs []netip.Prefix
	// OnProblems, if set, is told when the problems of a policy change (a
	// Kubernetes Event); problems is empty when they are gone.
	OnProblems func(policy string, problems []string)
	// UnknownPodWait bounds how long a new pod's ADD waits for the pod to
	// appear in the informer cache (default 10 s), after which it is
	// treated as having no labels.
	UnknownPodWait time.Duration
	// OnPass, if set, is told how long each applied pass took (computing
	// and installing; skipped passes are not reported).
	OnPass func(time.Duration)
	Logger *slog.Logger
}

// Controller keeps the policy flows equal to what the cluster's policies
// say about the local pods. It is level-triggered: every change of the
// source or of the local attachments leads to one pass, which computes the
// whole result and hands every owner's flows to the flow manager; the
// manager sends only the owners whose flows changed.
type Controller struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	kick    chan struct{}
	done    chan struct{} // closed and replaced after every pass
	applied map[pipeline.Owner]bool
	// sent is, per owner of the last applied pass, what its flows were made
	// from: an owner whose input is unchanged is left out of the next
	// change set, so its flows are neither rebuilt nor re-encoded (the flow
	// manager keeps them, across OpenFlow sessions too).
	sent     map[pipeline.Owner]any
	alloc    map[string]ruleAlloc
	nextConj uint32
	usedPrio map[uint16]bool
	// seen is, per local attachment, the incarnation included in the last
	// applied pass, and whether its pod was known then.
	seen map[attachments.Key]seenPod
	last Result
	// lastSrc and lastFP are the inputs of the last applied pass.
	lastSrc  <-chan struct{}
	lastFP   string
	problems map[string]string
	lastErr  error
	passes   uint64 // passes applied
	started  uint64 // passes begun
}

type ruleAlloc struct {
	conj uint32
	prio uint16
}

type seenPod struct {
	inc   uint64
	known bool
}

// New returns a controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.UnknownPodWait <= 0 {
		cfg.UnknownPodWait = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{cfg: cfg, log: log, kick: make(chan struct{}, 1), done: make(chan struct{}),
		applied: map[pipeline.Owner]bool{}, alloc: map[string]ruleAlloc{}, usedPrio: map[uint16]bool{},
		seen: map[attachments.Key]seenPod{}, problems: map[string]string{}}
}

const (
	minRulePrio = 1000
	maxRulePrio = 60000
)

// Run passes until ctx ends: on every change of the source, of the local
// attachments and on every Kick; a failed pass is retried, paced.
func (c *Controller) Run(ctx context.Context) error {
	pace := 50 * time.Millisecond
	for ctx.Err() == nil {
		src := c.cfg.Source.Changed()
		store := c.cfg.Store.Changed()
		var retry <-chan time.Time
		if err := c.pass(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("policy flows not in line yet; retrying", "retry_in", pace, "err", err)
			retry = time.After(pace)
			pace = min(pace*2, 5*time.Second)
		} else {
			pace = 50 * time.Millisecond
		}
		select {
		case <-src:
		case <-store:
		case <-c.kick:
		case <-retry:
		case <-ctx.Done():
		}
	}
	return nil
}

// Kick asks for a pass (a new OpenFlow session).
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) owner(r Rule) pipeline.Owner { return pipeline.Owner(r.ID) }

func isolationOwner(k attachments.Key) pipeline.Owner { return IsolationOwner(k) }

// IsolationOwner owns the isolation (drop) flows of a local attachment.
func IsolationOwner(k attachments.Key) pipeline.Owner {
	return pipeline.Owner(isolationPrefix + k.ContainerID + "/" + k.IfName)
}

const isolationPrefix = "isolation/"

// ParseIsolationOwner returns the attachment an isolation owner is for.
func ParseIsolationOwner(o pipeline.Owner) (attachments.Key, bool) {
	rest, ok := strings.CutPrefix(string(o), isolationPrefix)
	if !ok {
		return attachments.Key{}, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return attachments.Key{}, false
	}
	return attachments.Key{ContainerID: rest[:i], IfName: rest[i+1:]}, true
}

// ownerExempt owns the node's and the Services' exemptions.
const ownerExempt pipeline.Owner = "policy/exempt"

// pass computes and applies the policy flows once.
func (c *Controller) pass(ctx context.Context) error {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
	t0 := time.Now()
	// The source's change channel, taken before its snapshot, names the
	// snapshot's version: the pass can be skipped when neither it nor
	// anything the pass reads of the local attachments has changed. Most
	// store changes (a pod's phase, its flow report) are of that kind.
	srcVersion := c.cfg.Source.Changed()
	snap, ok := c.cfg.Source.Snapshot()
	if !ok {
		return nil // not listed yet: nothing is judged
	}
	local := c.cfg.Store.List()
	var nodeIPs []netip.Addr
	if c.cfg.NodeIPs != nil {
		nodeIPs = c.cfg.NodeIPs()
	}
	fp := fingerprint(local, nodeIPs)
	c.mu.Lock()
	if c.passes > 0 && c.lastErr == nil && c.lastSrc == srcVersion && c.lastFP == fp {
		c.passes++
		c.finishLocked()
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	// Local pods: the attachment's address; the API's labels and ports.
	type localPod struct {
		a     attachments.Attachment
		pod   Pod
		known bool
	}
	var locals []localPod
	byKey := map[string]int{}
	for i, p := range snap.Pods {
		byKey[p.key()] = i
	}
	for _, a := range local {
		if a.Pod.Name == "" || !a.IP.IsValid() || a.State == attachments.Deleting {
			continue
		}
		lp := localPod{a: a}
		if api, ok := c.cfg.Source.Pod(a.Pod.Namespace, a.Pod.Name, a.Pod.UID); ok {
			lp.pod, lp.known = api, true
		} else {
			lp.pod = Pod{Namespace: a.Pod.Namespace, Name: a.Pod.Name}
		}
		lp.pod.IP, lp.pod.Local = a.IP.Addr(), true
		if i, ok := byKey[lp.pod.key()]; ok {
			snap.Pods[i] = lp.pod
		} else {
			snap.Pods = append(snap.Pods, lp.pod)
		}
		locals = append(locals, lp)
	}
	res := Compute(snap)

	c.mu.Lock()
	defer c.mu.Unlock()
	changes := map[pipeline.Owner][]pipeline.Flow{}
	changes[ownerExempt] = pipeline.PolicyExemptFlows(c.cfg.Network, nodeIPs, c.cfg.ServiceCIDRs)
	inputs := map[pipeline.Owner]any{}
	kept := map[pipeline.Owner]bool{}
	// set puts an owner into the change set unless the last applied pass
	// sent it the same input (after a failed pass everything is sent).
	set := func(o pipeline.Owner, in any, flows func() []pipeline.Flow) {
		if prev, ok := c.sent[o]; ok && c.lastErr == nil && reflect.DeepEqual(prev, in) {
			kept[o] = true
			return
		}
		inputs[o] = in
		changes[o] = flows()
	}
	live := map[string]bool{}
	for _, r := range res.Rules {
		live[r.ID] = true
		al, ok := c.alloc[r.ID]
		if !ok {
			var err error
			if al, err = c.allocate(); err != nil {
				return err
			}
			c.alloc[r.ID] = al
		}
		pr := pipeline.PolicyRule{Direction: r.Direction, ConjID: al.conj,
			Priority: al.prio, Pods: r.Pods, Peers: r.Peers, AnyPeer: r.AnyPeer, Ports: r.Ports}
		set(c.owner(r), pr, func() []pipeline.Flow { return pipeline.PolicyRuleFlows(pr) })
	}
	for id, al := range c.alloc {
		if !live[id] {
			delete(c.alloc, id)
			delete(c.usedPrio, al.prio)
		}
	}
	for _, lp := range locals {
		iso := res.Isolated[lp.pod.key()]
		type isolationInput struct {
			iso Isolation
			ip  netip.Addr
		}
		set(isolationOwner(lp.a.Key), isolationInput{iso, lp.pod.IP}, func() []pipeline.Flow {
			flows := []pipeline.Flow{}
			if iso.Ingress {
				flows = append(flows, pipeline.IsolationFlows(pipeline.Ingress, lp.pod.IP)...)
			}
			if iso.Egress {
				flows = append(flows, pipeline.IsolationFlows(pipeline.Egress, lp.pod.IP)...)
			}
			return flows
		})
	}
	for o := range c.applied {
		if _, ok := changes[o]; !ok && !kept[o] {
			changes[o] = nil
		}
	}
	err := c.cfg.Flows.Apply(ctx, changes)
	if err != nil && !errors.Is(err, pipeline.ErrNoSession) {
		c.lastErr = err
		return fmt.Errorf("policy flows: %w", err)
	}
	c.lastErr = nil
	c.applied = map[pipeline.Owner]bool{}
	if c.sent == nil {
		c.sent = map[pipeline.Owner]any{}
	}
	for o, f := range changes {
		if f != nil {
			c.applied[o] = true
			if in, ok := inputs[o]; ok {
				c.sent[o] = in
			}
		} else {
			delete(c.sent, o)
		}
	}
	for o := range kept {
		c.applied[o] = true
	}
	c.seen = map[attachments.Key]seenPod{}
	for _, lp := range locals {
		c.seen[lp.a.Key] = seenPod{inc: lp.a.Incarnation, known: lp.known}
	}
	c.last = res
	c.lastSrc, c.lastFP = srcVersion, fp
	c.passes++
	c.log.Debug("policy pass applied", "pass", c.passes, "rules", len(res.Rules), "isolated", len(res.Isolated), "owners", len(changes))
	c.reportProblems(res.Problems)
	c.finishLocked()
	if c.cfg.OnPass != nil {
		c.cfg.OnPass(time.Since(t0))
	}
	return nil
}

// finishLocked wakes the waiters of a pass.
func (c *Controller) finishLocked() {
	close(c.done)
	c.done = make(chan struct{})
}

// fingerprint is what a pass reads of the local attachments and the node.
func fingerprint(local []attachments.Attachment, nodeIPs []netip.Addr) string {
	lines := make([]string, 0, len(local)+len(nodeIPs))
	for _, a := range local {
		if a.Pod.Name == "" || !a.IP.IsValid() || a.State == attachments.Deleting {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s/%s %d %s %s/%s/%s", a.Key.ContainerID, a.Key.IfName, a.Incarnation,
			a.IP, a.Pod.Namespace, a.Pod.Name, a.Pod.UID))
	}
	for _, ip := range nodeIPs {
		lines = append(lines, "node "+ip.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func (c *Controller) allocate() (ruleAlloc, error) {
	for p := uint16(minRulePrio); p < maxRulePrio; p++ {
		if !c.usedPrio[p] {
			c.usedPrio[p] = true
			c.nextConj++
			return ruleAlloc{conj: c.nextConj, prio: p}, nil
		}
	}
	return ruleAlloc{}, fmt.Errorf("more than %d NetworkPolicy rules apply to this node's pods", maxRulePrio-minRulePrio)
}

func (c *Controller) reportProblems(probs []Problem) {
	by := map[string][]string{}
	for _, p := range probs {
		by[p.Policy] = append(by[p.Policy], p.Message)
	}
	for pol, msgs := range by {
		text := strings.Join(msgs, "; ")
		if c.problems[pol] != text {
			c.problems[pol] = text
			c.log.Warn("NetworkPolicy cannot be realised in full", "policy", pol, "problems", text)
			if c.cfg.OnProblems != nil {
				c.cfg.OnProblems(pol, msgs)
			}
		}
	}
	for pol := range c.problems {
		if _, ok := by[pol]; !ok {
			delete(c.problems, pol)
			if c.cfg.OnProblems != nil {
				c.cfg.OnProblems(pol, nil)
			}
		}
	}
}

// WaitPod blocks until a pass has applied the policies of attachment a (its
// incarnation, with its pod known to the informer, or known to be missing
// after UnknownPodWait): a new pod's ADD returns only once its policy
// flows are in, so it is never briefly open to what its policies deny.
func (c *Controller) WaitPod(ctx context.Context, a attachments.Attachment) error {
	if a.Pod.Name == "" {
		return nil // not a Kubernetes pod
	}
	giveUp := time.Now().Add(c.cfg.UnknownPodWait)
	c.Kick()
	for {
		c.mu.Lock()
		s, ok := c.seen[a.Key]
		ch := c.done
		err := c.lastErr
		c.mu.Unlock()
		if ok && s.inc == a.Incarnation && (s.known || !time.Now().Before(giveUp)) {
			if !s.known {
				c.log.Warn("pod unknown to the API after waiting; its policies were applied as for a pod without labels",
					"pod", a.Pod.String(), "waited", c.cfg.UnknownPodWait)
			}
			return nil
		}
		var timer <-chan time.Time
		if ok && s.inc == a.Incarnation && !s.known {
			timer = time.After(time.Until(giveUp))
		}
		select {
		case <-ch:
		case <-timer:
			c.Kick()
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("policy flows of pod %s not installed: %w (last error: %v)", a.Pod.String(), ctx.Err(), err)
			}
			return fmt.Errorf("policy flows of pod %s not installed: %w", a.Pod.String(), ctx.Err())
		}
	}
}

// PodRules is what applies to one local pod: its isolation and the rules
// that allow traffic to (ingress) or from (egress) it.
type PodRules struct {
	Isolation Isolation
	Rules     []Rule
	Owners    []pipeline.Owner
}

// ForPod returns what the last pass applied to the pod at ip.
func (c *Controller) ForPod(namespace, name string, ip netip.Addr) PodRules {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := PodRules{Isolation: c.last.Isolated[namespace+"/"+name]}
	for _, r := range c.last.Rules {
		if slices.Contains(r.Pods, ip) {
			out.Rules = append(out.Rules, r)
			out.Owners = append(out.Owners, c.owner(r))
		}
	}
	return out
}

// Allocation returns the conjunction id and priority of a live rule.
func (c *Controller) Allocation(ruleID string) (conj uint32, prio uint16, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	al, ok := c.alloc[ruleID]
	return al.conj, al.prio, ok
}

// Rule returns the live rule whose flows owner o owns.
func (c *Controller) Rule(o pipeline.Owner) (Rule, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.last.Rules {
		if c.owner(r) == o {
			return r, true
		}
	}
	return Rule{}, false
}

// Isolation returns how the last pass isolated the pod namespace/name.
func (c *Controller) Isolation(namespace, name string) Isolation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last.Isolated[namespace+"/"+name]
}

// Summary counts the live rules and isolated local pods.
func (c *Controller) Summary() (rules, isolated int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.last.Rules), len(c.last.Isolated)
}

// Passes counts the applied passes.
func (c *Controller) Passes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passes
}

// WaitPass blocks until a pass that began after the call has been applied.
func (c *Controller) WaitPass(ctx context.Context) error {
	c.mu.Lock()
	want := c.started + 1
	c.mu.Unlock()
	c.Kick()
	for {
		c.mu.Lock()
		done, ch := c.passes >= want, c.done
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

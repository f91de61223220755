package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ovsnet/ovsnet/internal/agentapi"
	"github.com/ovsnet/ovsnet/internal/attachments"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/policy"
)

// policyTables are the tables that hold policy flows.
var policyTables = []uint8{pipeline.TableEgressRule, pipeline.TableEgressDefault, pipeline.TableIngressRule, pipeline.TableIngressDefault}

// findPod returns the live local attachment of the pod named ref
// ("namespace/name", or a name unique on the node).
func (a *Agent) findPod(ref string) (attachments.Attachment, error) {
	svc := a.podService()
	if svc == nil {
		return attachments.Attachment{}, fmt.Errorf("the pod network is not set up yet: %s", a.status.Status().Reason)
	}
	ns, name, qualified := strings.Cut(ref, "/")
	if !qualified {
		ns, name = "", ref
	}
	var found []attachments.Attachment
	for _, at := range svc.Attachments() {
		if at.State == attachments.Deleting || at.Pod.Name != name || (qualified && at.Pod.Namespace != ns) {
			continue
		}
		found = append(found, at)
	}
	switch len(found) {
	case 0:
		return attachments.Attachment{}, fmt.Errorf("no pod %q on this node (see ovsnetctl pods)", ref)
	case 1:
		return found[0], nil
	}
	if !qualified {
		return attachments.Attachment{}, fmt.Errorf("%d pods named %q on this node: name one as <namespace>/<name>", len(found), ref)
	}
	// Several interfaces of one pod: the first made.
	slices.SortFunc(found, func(x, y attachments.Attachment) int { return x.Created.Compare(y.Created) })
	return found[0], nil
}

// dumpPolicyFlows returns the flows of the policy tables.
func (a *Agent) dumpPolicyFlows(ctx context.Context) ([]of.FlowStats, error) {
	var out []of.FlowStats
	for _, t := range policyTables {
		fs, err := a.of.DumpFlows(ctx, of.NewFlowStatsRequest(t, of.Match{}))
		if err != nil {
			return nil, fmt.Errorf("dump flows of table %d: %w", t, err)
		}
		out = append(out, fs...)
	}
	return out, nil
}

func apiFlow(f *of.FlowStats, owner pipeline.Owner) agentapi.Flow {
	return agentapi.Flow{Table: f.Table, TableName: pipeline.TableNames[f.Table], Priority: f.Priority,
		Cookie: fmt.Sprintf("0x%x", f.Cookie), Owner: string(owner), Packets: f.PacketCount, Bytes: f.ByteCount, Text: f.FlowString()}
}

// apiPolicy serves what NetworkPolicy does to one pod, with the live flows.
func (a *Agent) apiPolicy(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("pod")
	if ref == "" {
		apiError(w, http.StatusBadRequest, "name the pod: ?pod=<namespace>/<name>")
		return
	}
	at, err := a.findPod(ref)
	if err != nil {
		apiError(w, http.StatusNotFound, err.Error())
		return
	}
	out := agentapi.PodPolicy{Pod: at.Pod.String(), IP: at.IP.Addr().String(), Rules: []agentapi.PolicyRule{}, Isolation: []agentapi.Flow{}}
	c := a.policyController()
	if c == nil {
		writeJSON(w, out)
		return
	}
	out.Enforced = true
	pr := c.ForPod(at.Pod.Namespace, at.Pod.Name, at.IP.Addr())
	out.IngressIsolated, out.EgressIsolated, out.Policies = pr.Isolation.Ingress, pr.Isolation.Egress, pr.Isolation.Policies
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	flows, err := a.dumpPolicyFlows(ctx)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	owners := a.flows.CookieOwners()
	byOwner := map[pipeline.Owner][]agentapi.Flow{}
	for i := range flows {
		if o, ok := owners[flows[i].Cookie]; ok {
			byOwner[o] = append(byOwner[o], apiFlow(&flows[i], o))
		}
	}
	for i, rule := range pr.Rules {
		ar := agentapi.PolicyRule{ID: rule.ID, Policy: rule.Policy, Direction: rule.Direction.String(),
			Describe: rule.Describe, Flows: byOwner[pr.Owners[i]]}
		ar.Conjunction, ar.Priority, _ = c.Allocation(rule.ID)
		if ar.Flows == nil {
			ar.Flows = []agentapi.Flow{}
		}
		out.Rules = append(out.Rules, ar)
	}
	if iso := byOwner[policy.IsolationOwner(at.Key)]; iso != nil {
		out.Isolation = iso
	}
	writeJSON(w, out)
}

// policyCollector exports, from the flow statistics of the policy tables,
// the packets each isolated pod's drop flows denied and the packets each
// rule allowed. Flow counters restart when an owner's flows are replaced
// (a pod's address changes, a rule's peers change); the collector carries
// what a replaced flow had counted, so the exported counters only grow.
type policyCollector struct {
	a       *Agent
	denied  *prometheus.Desc
	allowed *prometheus.Desc
	rules   *prometheus.Desc
	pods    *prometheus.Desc

	mu    sync.Mutex
	count map[string]*monotonic // by series
}

// monotonic turns a counter that may restart into one that only grows.
type monotonic struct {
	base, last uint64
	labels     []string
	desc       *prometheus.Desc
}

func (m *monotonic) observe(v uint64) uint64 {
	if v < m.last {
		m.base += m.last
	}
	m.last = v
	return m.base + v
}

func newPolicyCollector(a *Agent) *policyCollector {
	return &policyCollector{a: a, count: map[string]*monotonic{},
		denied: prometheus.NewDesc("ovsnet_policy_denied_packets_total",
			"Packets that NetworkPolicy isolation dropped, by local pod, direction and the policies isolating it.",
			[]string{"namespace", "pod", "direction", "policies"}, nil),
		allowed: prometheus.NewDesc("ovsnet_policy_allowed_packets_total",
			"Packets of new connections that a NetworkPolicy rule allowed (established traffic is not counted), by rule.",
			[]string{"policy", "direction", "rule"}, nil),
		rules: prometheus.NewDesc("ovsnet_policy_rules",
			"Compiled NetworkPolicy rules that apply to this node's pods.", nil, nil),
		pods: prometheus.NewDesc("ovsnet_policy_isolated_pods",
			"Local pods that some NetworkPolicy isolates.", nil, nil),
	}
}

func (p *policyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.denied
	ch <- p.allowed
	ch <- p.rules
	ch <- p.pods
}

func (p *policyCollector) Collect(ch chan<- prometheus.Metric) {
	c := p.a.policyController()
	if c == nil {
		return
	}
	rules, isolated := c.Summary()
	ch <- prometheus.MustNewConstMetric(p.rules, prometheus.GaugeValue, float64(rules))
	ch <- prometheus.MustNewConstMetric(p.pods, prometheus.GaugeValue, float64(isolated))
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	flows, err := p.a.dumpPolicyFlows(ctx)
	if err == nil {
		p.update(c, flows)
	}
	// On a failed dump the last values are exported again, so a scrape
	// during an OpenFlow reconnect does not make counters vanish.
	for _, m := range p.count {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.base+m.last), m.labels...)
	}
}

// update folds one dump into the counters; p.mu is held.
func (p *policyCollector) update(c *policy.Controller, flows []of.FlowStats) {
	owners := p.a.flows.CookieOwners()
	sums := map[string]uint64{}
	seen := map[string]*monotonic{}
	add := func(desc *prometheus.Desc, v uint64, labels ...string) {
		k := desc.String() + "\x00" + strings.Join(labels, "\x00")
		if _, ok := seen[k]; !ok {
			m := p.count[k]
			if m == nil {
				m = &monotonic{labels: labels, desc: desc}
				p.count[k] = m
			}
			seen[k] = m
		}
		sums[k] += v
	}
	store := p.a.pods.Store()
	for i := range flows {
		f := &flows[i]
		o, ok := owners[f.Cookie]
		if !ok {
			continue
		}
		if k, ok := policy.ParseIsolationOwner(o); ok {
			at, ok := store.Get(k)
			if !ok {
				continue
			}
			dir := pipeline.Ingress
			if f.Table == pipeline.TableEgressDefault {
				dir = pipeline.Egress
			}
			iso := c.Isolation(at.Pod.Namespace, at.Pod.Name)
			add(p.denied, f.PacketCount, at.Pod.Namespace, at.Pod.Name, dir.String(), strings.Join(iso.Policies, ","))
			continue
		}
		if r, ok := c.Rule(o); ok {
			add(p.allowed, f.PacketCount, r.Policy, r.Direction.String(), r.ID)
		}
	}
	for k, m := range seen {
		m.observe(sums[k])
	}
	// Series whose flows are gone (a pod deleted, a policy removed) stop
	// being exported.
	for k := range p.count {
		if _, ok := seen[k]; !ok {
			delete(p.count, k)
		}
	}
}

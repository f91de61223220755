package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/k8s"
	"github.com/ovsnet/ovsnet/internal/policy"
)

// newPolicy builds the NetworkPolicy controller; a.mu is held and the pod
// service exists.
func (a *Agent) newPolicy() *policy.Controller {
	cidrs, _ := a.cfg.serviceCIDRs()
	return policy.New(policy.Config{
		Source: a.policySrc, Store: a.pods.Store(), Flows: a.flows, Network: a.network,
		NodeIPs: func() []netip.Addr {
			if ip := a.nodeAddress(); ip.IsValid() {
				return []netip.Addr{ip}
			}
			return nil
		},
		ServiceCIDRs: cidrs,
		OnProblems:   a.policyEvent,
		OnPass:       func(d time.Duration) { a.metrics.policyPass.Observe(d.Seconds()) },
		Logger:       a.log.With("component", "policy"),
	})
}

// policyController is the NetworkPolicy controller (nil when off).
func (a *Agent) policyController() *policy.Controller {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.policy
}

// waitPolicy holds a new pod's ADD until its policy flows are in.
func (a *Agent) waitPolicy(ctx context.Context, at attachments.Attachment) error {
	if c := a.policyController(); c != nil {
		return c.WaitPod(ctx, at)
	}
	return nil
}

// policyEvent records a Warning Event on a NetworkPolicy that cannot be
// realised in full.
func (a *Agent) policyEvent(name string, problems []string) {
	src, ok := a.policySrc.(*k8s.PolicySource)
	if !ok || len(problems) == 0 {
		return
	}
	ns, n, _ := strings.Cut(name, "/")
	if obj, ok := src.NetworkPolicy(ns, n); ok {
		a.cluster.PolicyEvent(obj, "PolicyNotRealised", "ovsnet: "+strings.Join(problems, "; "))
	}
}

// policyBeforeResync waits, bounded, for the controller's first complete
// pass, so that a resync after an agent restart does not replace the old
// policy flows with none. When the cluster's state cannot be had in time
// the resync goes on, and the log says that pods are not isolated yet.
func (a *Agent) policyBeforeResync(ctx context.Context) {
	c := a.policyController()
	if c == nil || c.Passes() > 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitPass(wctx); err != nil && ctx.Err() == nil {
		a.log.Warn("NetworkPolicy state not known yet (informers not synced): flows are installed without policy until it is", "err", err)
	}
}

// PolicyPass waits until the NetworkPolicy controller has applied a pass
// that began after the call, and the datapath's flow cache has caught up
// with it: what the source said then decides every packet sent afterwards.
//
// The second half matters because ovs-vswitchd revalidates its cached
// datapath flows asynchronously after a flow table change (within one
// revalidation cycle, milliseconds): until then a packet can still take a
// cached path that a new policy denies. Pod ADDs do not wait for it (a new
// pod's address has no cached allow path; docs/networkpolicy.md), but a
// caller asking "is this policy in force" does.
func (a *Agent) PolicyPass(ctx context.Context) error {
	c := a.policyController()
	if c == nil {
		return nil
	}
	if err := c.WaitPass(ctx); err != nil {
		return err
	}
	return a.settleDatapath(ctx)
}

// settleDatapath returns once every cached datapath flow has been
// revalidated against the current OpenFlow tables. One revalidator/wait
// answers at the end of the cycle running when it is asked, which may have
// begun before the last flow change; the second answers at the end of a
// cycle that began after it.
func (a *Agent) settleDatapath(ctx context.Context) error {
	for range 2 {
		if _, err := a.vswitchd.Call(ctx, "revalidator/wait"); err != nil {
			return fmt.Errorf("wait for ovs-vswitchd to revalidate its datapath flows: %w", err)
		}
	}
	return nil
}

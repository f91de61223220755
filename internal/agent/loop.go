package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/gateway"
	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ovs/bridgegate"
	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

func (a *Agent) reportGate(stage bridgegate.Stage, reason string) {
	switch stage {
	case bridgegate.OVSDBUnreachable:
		a.status.Set(health.OVSDBUnreachable, reason)
	case bridgegate.BridgeNotApplied:
		a.status.Set(health.BridgeNotApplied, reason)
	case bridgegate.FeaturesUnknown:
		a.status.Set(health.FeaturesUnknown, reason)
	case bridgegate.FeaturesMissing:
		a.status.Set(health.FeaturesMissing, reason)
	}
}

// loop is the start-up state machine. Each round passes the bridge gate,
// joins an OpenFlow session on the very datapath the gate saw, brings the
// gateway and every flow in, and declares the agent ready; then it waits for
// OVS to change under it (session lost, ovs-vswitchd gone, OVSDB
// reconnected) and starts over. An OpenFlow reconnect is treated as an
// ovs-vswitchd restart until the gate has proven otherwise.
func (a *Agent) loop(ctx context.Context) {
	if a.pods == nil && a.cluster != nil {
		cidr, err := a.cluster.PodCIDR(ctx, func(why string) { a.status.Set(health.PodCIDRUnknown, why) })
		if err != nil {
			return
		}
		if err := a.setupPodNetwork(cidr); err != nil {
			// Only a broken IPAM state file gets here: the operator must act.
			a.status.Set(health.PodCIDRUnknown, err.Error())
			a.log.Error("cannot set up the pod network", "pod_cidr", cidr, "err", err)
			<-ctx.Done()
			return
		}
		a.log.Info("pod CIDR from the Node object", "node", a.cfg.NodeName, "pod_cidr", cidr)
	}
	restored := false
	// retry paces rounds that failed after the gate (a session that would
	// not come up, a gateway or flow install that failed) so a persistent
	// fault is reported and retried, not spun on; success resets it.
	retry := backoff{next: 10 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		res, err := a.gate.Pass(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Missing features: nothing changes until ovs-vswitchd does.
			a.waitVswitchdChange(ctx, "", nil)
			continue
		}
		a.mu.Lock()
		a.bridge = res
		a.mu.Unlock()

		sess, err := a.joinSession(ctx, res)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("OpenFlow session not usable, passing the bridge gate again", "err", err)
			}
			retry.wait(ctx)
			continue
		}
		if !restored && a.pods != nil {
			if err := a.pods.Restore(ctx); err != nil {
				a.log.Error("restoring pod attachments was incomplete", "err", err)
			}
			restored = true
			a.podsStarted.Store(true)
			// Only now may CNI verbs other than ADD touch state: a GC
			// before the restore would release addresses in use.
			a.handler.set(a.pods)
			a.bg.Add(1)
			go func() { defer a.bg.Done(); a.runPods(ctx) }()
		}
		if err := a.programSession(ctx, sess); err != nil {
			if ctx.Err() == nil {
				a.status.Set(health.OpenFlowNotReady, err.Error())
				a.log.Warn("programming the bridge failed, starting over", "err", err)
				a.flows.SessionLost()
			}
			retry.wait(ctx)
			continue
		}
		retry.reset()
		a.status.Set(health.Ready, "")
		reason := a.waitVswitchdChange(ctx, res.ControlSocket, sess)
		a.flows.SessionLost()
		if ctx.Err() == nil {
			a.status.Set(health.BridgeNotApplied, reason)
		}
	}
}

// podsRunning reports whether the pod service (and its reconciler) runs.
func (a *Agent) podsRunning() bool { return a.podsStarted.Load() }

// runPods runs the flow reconciler, the sandbox watcher and, in
// Kubernetes mode, the garbage collection of pods that are gone.
func (a *Agent) runPods(ctx context.Context) {
	if c := a.policyController(); c != nil {
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("NetworkPolicy controller stopped", "err", err)
			}
		}()
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := a.cross.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("cross-node reconciler stopped", "err", err)
		}
	}()
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := a.pods.WatchSandboxes(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("sandbox watcher stopped; vanished sandboxes are collected by CNI GC only", "err", err)
		}
	}()
	if a.cluster != nil {
		a.bg.Add(1)
		go func() { defer a.bg.Done(); a.collectGonePods(ctx) }()
	}
	if err := a.pods.Run(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("pod reconciler stopped", "err", err)
	}
}

// collectGonePods removes attachments of pods that are gone from this node.
// Once, after the pod informer has synced (never before: an unsynced cache
// is not evidence of absence), it removes attachments that existed before
// the sync and whose pod is not in the cache; an attachment made later may
// belong to a pod the cache has not caught up with yet. Then, on every pod
// deletion, it removes exactly the deleted pod's attachments.
func (a *Agent) collectGonePods(ctx context.Context) {
	type podKey struct{ ns, name, uid string }
	var mu sync.Mutex
	var deleted []podKey
	wake := make(chan struct{}, 1)
	a.cluster.OnPodDelete(func(ns, name string, uid types.UID) {
		mu.Lock()
		deleted = append(deleted, podKey{ns, name, string(uid)})
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if !a.cluster.WaitPodsSynced(ctx) {
		return
	}
	synced := time.Now()
	err := a.pods.CollectGarbage(ctx, func(p attachments.Attachment) bool {
		if p.Pod.Name == "" || p.Created.After(synced) {
			return true // not a Kubernetes pod, or newer than what the cache can know
		}
		return a.cluster.PodExists(p.Pod.Namespace, p.Pod.Name, p.Pod.UID)
	}, "pod no longer exists on this node")
	if err != nil {
		a.log.Warn("garbage collection of gone pods incomplete", "err", err)
	}
	for {
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
		mu.Lock()
		gone := deleted
		deleted = nil
		mu.Unlock()
		err := a.pods.CollectGarbage(ctx, func(p attachments.Attachment) bool {
			for _, g := range gone {
				if p.Pod.Namespace == g.ns && p.Pod.Name == g.name && (p.Pod.UID == "" || p.Pod.UID == g.uid) {
					return false
				}
			}
			return true
		}, "pod deleted")
		if err != nil {
			a.log.Warn("garbage collection of deleted pods incomplete", "err", err)
		}
	}
}

// joinSession waits for the OpenFlow session and checks that it talks to the
// datapath the gate saw: FEATURES' datapath id must equal OVSDB's.
func (a *Agent) joinSession(ctx context.Context, res *bridgegate.Result) (*ofconn.Session, error) {
	a.status.Set(health.OpenFlowNotReady, "waiting for the OpenFlow connection to "+a.cfg.Bridge+".mgmt")
	// The bridge exists now, so its management socket does: connect at
	// once rather than after a backoff that grew while OVS was down.
	a.of.Retry()
	// An old session may not have noticed a restart yet: the datapath id
	// check below catches it.
	sess, err := a.of.WaitSession(ctx)
	if err != nil {
		if last := a.of.LastError(); last != nil {
			return nil, fmt.Errorf("%w (last: %v)", err, last)
		}
		return nil, err
	}
	want, err := strconv.ParseUint(res.DatapathID, 16, 64)
	if err != nil {
		return nil, fmt.Errorf("OVSDB datapath_id %q is not hex: %w", res.DatapathID, err)
	}
	if sess.DatapathID != want {
		// The session belongs to another incarnation of the bridge. Wait
		// for it to end (the conn reconnects on its own) before retrying.
		a.status.Set(health.OpenFlowNotReady, fmt.Sprintf("OpenFlow datapath id %016x differs from OVSDB's %s; waiting for a new session", sess.DatapathID, res.DatapathID))
		// Either the session is the stale one, and it ends by itself, or
		// OVSDB's datapath_id is about to change: wait for whichever comes,
		// then pass the gate again.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			_ = a.db.Wait(wctx, "datapath_id change", func() (bool, error) {
				br, ok, err := a.db.Bridge(a.cfg.Bridge)
				return !ok || br.DatapathID == nil || *br.DatapathID != res.DatapathID, err
			})
			cancel()
		}()
		select {
		case <-sess.Done():
		case <-wctx.Done():
		}
		return nil, errors.New("datapath id mismatch between OpenFlow and OVSDB")
	}
	return sess, nil
}

// programSession installs every desired flow through sess under a new
// cookie round, deleting what else is there, lets ovs-vswitchd process
// packets (flow-restore-wait) and brings the gateway's host side up. The
// gateway's flows need only its port, and pod traffic nothing of the host
// side, so the resync does not wait for the device and NAT configuration.
func (a *Agent) programSession(ctx context.Context, sess *ofconn.Session) error {
	if err := a.flows.Set(ctx, pipeline.OwnerBase, pipeline.BaseFlows()); err != nil && !errors.Is(err, pipeline.ErrNoSession) {
		return err
	}
	var gwCfg gateway.Config
	if a.pods != nil {
		if err := a.checkOffloads(); err != nil {
			return err
		}
		a.status.Set(health.OpenFlowNotReady, "setting up gateway "+a.cfg.GatewayName)
		gwCfg = a.gatewayConfig()
		gw, err := gateway.EnsurePort(ctx, gwCfg)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		a.mu.Lock()
		a.gw = &gw
		a.mu.Unlock()
		flows := pipeline.GatewayFlows(a.network, pipeline.Endpoint{OFPort: gw.OFPort, IP: gw.IP, MAC: gw.MAC})
		if err := a.flows.Set(ctx, pipeline.OwnerGateway, flows); err != nil && !errors.Is(err, pipeline.ErrNoSession) {
			return err
		}
		// The peers' flows use this session's tunnel port number.
		a.status.Set(health.OpenFlowNotReady, "computing the flows to other nodes")
		if err := a.cross.SyncFlows(ctx); err != nil {
			return fmt.Errorf("cross-node datapath: %w", err)
		}
	}
	if a.podsRunning() {
		// The pod flows the resync installs are computed from this
		// session's port table, not the last one's: ports may have been
		// renumbered by an ovs-vswitchd restart.
		a.status.Set(health.OpenFlowNotReady, "computing pod flows")
		if err := a.pods.Sync(ctx); err != nil {
			return fmt.Errorf("compute pod flows: %w", err)
		}
	}
	a.policyBeforeResync(ctx)
	a.status.Set(health.OpenFlowNotReady, "installing flows")
	start := time.Now()
	if err := a.flows.Resync(ctx, sess); err != nil {
		return err
	}
	a.metrics.resync.Observe(time.Since(start).Seconds())
	if err := a.releaseFlowRestoreWait(ctx, sess); err != nil {
		return err
	}
	if a.pods != nil {
		if err := gateway.ConfigureHost(ctx, gwCfg); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		// Routes via the gateway need its device up and addressed.
		a.cross.Kick()
	}
	return nil
}

// waitVswitchdChange blocks until the OVS the agent relies on changes: the
// OpenFlow session ends, the ovs-vswitchd behind sock exits (its control
// socket closes), or the OVSDB connection drops (ovsdb-server restarted:
// datapath ids are rewritten). It returns why.
func (a *Agent) waitVswitchdChange(ctx context.Context, sock string, sess *ofconn.Session) string {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	why := make(chan string, 3)
	go func() {
		if sock == "" {
			s, err := a.vswitchd.SocketPath()
			if err != nil {
				why <- "ovs-vswitchd not running: " + err.Error()
				return
			}
			sock = s
		}
		err := a.vswitchd.WaitClosed(ctx, sock)
		if ctx.Err() == nil {
			why <- fmt.Sprintf("ovs-vswitchd exited or restarted (%v)", err)
		}
	}()
	go func() {
		seq := a.db.ConnectionSeq()
		_ = a.db.Wait(ctx, "OVSDB reconnect", func() (bool, error) {
			ok, _ := a.db.Connected()
			return !ok || a.db.ConnectionSeq() != seq, nil
		})
		if ctx.Err() == nil {
			why <- "connection to ovsdb-server lost"
		}
	}()
	var done <-chan struct{}
	if sess != nil {
		done = sess.Done()
	}
	select {
	case w := <-why:
		a.log.Warn("OVS changed under the agent, passing the bridge gate again", "reason", w)
		return w
	case <-done:
		w := fmt.Sprintf("OpenFlow session ended (%v)", sess.Err())
		a.log.Warn("OVS changed under the agent, passing the bridge gate again", "reason", w)
		return w
	case <-ctx.Done():
		return ""
	}
}

// backoff paces retries of a failing round; it is never used to wait for a
// condition.
type backoff struct {
	next, max time.Duration
	cur       time.Duration
}

func (b *backoff) wait(ctx context.Context) {
	if b.cur == 0 {
		b.cur = b.next
	}
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	b.cur = min(b.cur*2, b.max)
}

func (b *backoff) reset() { b.cur = 0 }

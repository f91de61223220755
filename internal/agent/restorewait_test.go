package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
	"github.com/ovsnet/ovsnet/internal/testenv"
)

// switchWatch is the test's own view of OVS, independent of the agent: an
// OVSDB client and a controller connection of its own on the bridge's
// management socket (OVS accepts several).
type switchWatch struct {
	db *ovsdb.Client
	of *ofconn.Conn
}

func watchSwitch(t *testing.T, o *ovstest.OVS) *switchWatch {
	t.Helper()
	db, err := ovsdb.New(ovsdb.Config{Endpoint: o.DBEndpoint(), Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ofconn.New(ofconn.Config{Bridge: "br-int", RunDir: o.Dir(), Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = db.Run(ctx); done <- struct{}{} }()
	go func() { _ = conn.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &switchWatch{db: db, of: conn}
}

func (w *switchWatch) waitFlowRestoreWait(t *testing.T, ctx context.Context, want bool) {
	t.Helper()
	err := w.db.Wait(ctx, fmt.Sprintf("flow-restore-wait %v", want), func() (bool, error) {
		on, err := w.db.FlowRestoreWait()
		if err == ovsdb.ErrNotConnected {
			return false, nil
		}
		return on == want, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flowsAtClear waits for the key to go away and returns what the switch
// has right then, dumped through the test's own session to the ovs-vswitchd
// through a session newer than after (one with the current ovs-vswitchd).
// A dump can only come after the removal, never before it: if the agent
// cleared the key before its bundle, the dump misses flows unless the
// bundle lands in the moment between the two; it never sees flows the
// switch did not have at the removal or after it.
func (w *switchWatch) flowsAtClear(ctx context.Context, after uint64) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		defer close(out)
		err := w.db.Wait(ctx, "flow-restore-wait removed", func() (bool, error) {
			on, err := w.db.FlowRestoreWait()
			if err == ovsdb.ErrNotConnected {
				return false, nil
			}
			return !on, err
		})
		if err != nil {
			return
		}
		flows, err := w.dump(ctx, after)
		if err == nil {
			out <- flows
		}
	}()
	return out
}

// dump returns the bridge's flows as sorted text, through a session newer
// than after.
func (w *switchWatch) dump(ctx context.Context, after uint64) ([]string, error) {
	for {
		sess, err := w.of.WaitSession(ctx)
		if err != nil {
			return nil, err
		}
		if sess.Seq <= after {
			// The killed process's session, not yet seen to end: it ends
			// by itself, and a new one follows.
			select {
			case <-sess.Done():
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		stats, err := sess.DumpFlows(ctx, of.NewFlowStatsRequest(of.TableAll, of.Match{}))
		if err != nil {
			select {
			case <-sess.Done():
				continue
			default:
				return nil, err
			}
		}
		var flows []string
		for _, f := range stats {
			flows = append(flows, fmt.Sprintf("table=%d prio=%d cookie=%#x %v %v", f.Table, f.Priority, f.Cookie, f.Match, f.Instructions))
		}
		slices.Sort(flows)
		return flows, nil
	}
}

func restoreWaitAgent(t *testing.T, o *ovstest.OVS) (*runningAgent, agent.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := agent.Defaults()
	cfg.OVSDB, cfg.OVSRunDir, cfg.DatapathType, cfg.HealthAddr = o.DBEndpoint(), o.Dir(), "netdev", "127.0.0.1:0"
	cfg.PodCIDR, cfg.StateDir, cfg.CNISocket, cfg.HostNetns = "10.244.8.0/24", dir+"/state", dir+"/cni.sock", o.NetnsPath()
	a, err := agent.New(cfg, logger())
	if err != nil {
		t.Fatal(err)
	}
	return runAgent(t, a), cfg
}

// An OVS whose flow-restore-wait was left at true (a start script set it
// and no agent ran since) forwards nothing. An agent that starts against
// it installs its pipeline, and only then removes the key.
func TestAgentClearsStuckFlowRestoreWait(t *testing.T) {
	testenv.RequireCommands(t, "nft")
	o := ovstest.Start(t, ovstest.Options{FlowRestoreWait: true})
	// The bridge exists from an earlier run, so the test's controller
	// connection is up before the agent starts.
	o.Vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
		"fail_mode=secure", "protocols=OpenFlow13")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := watchSwitch(t, o)
	w.waitFlowRestoreWait(t, ctx, true)
	pid := o.VswitchdPID()
	if _, err := w.of.WaitSession(ctx); err != nil {
		t.Fatal(err)
	}
	atClear := w.flowsAtClear(ctx, 0)

	ra, _ := restoreWaitAgent(t, o)
	ra.waitReadyFor(t, ctx, pid)
	if got := o.Vsctl("--if-exists", "get", "open_vswitch", ".", "other_config:flow-restore-wait"); got != "" {
		t.Fatalf("flow-restore-wait is %s after the agent is ready, want it removed", got)
	}
	flows, ok := <-atClear
	if !ok {
		t.Fatal("no flow dump when flow-restore-wait was removed")
	}
	ready, err := w.dump(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Base and gateway flows: far more than the nothing a fail_mode=secure
	// bridge starts with.
	if len(ready) < 5 {
		t.Fatalf("only %d flows once ready:\n%s", len(ready), strings.Join(ready, "\n"))
	}
	if !slices.Equal(flows, ready) {
		t.Fatalf("when flow-restore-wait was removed the switch had %d flows, once ready %d:\nat removal:\n%s\nready:\n%s",
			len(flows), len(ready), strings.Join(flows, "\n"), strings.Join(ready, "\n"))
	}
}

// The DaemonSet's start script sets flow-restore-wait before every start
// of ovs-vswitchd. After a SIGKILL and a restart against the kept conf.db
// the agent resyncs, the switch has every flow (the pods' too) when the key
// goes away, and the pods reach each other again.
func TestFlowRestoreWaitAcrossVswitchdRestart(t *testing.T) {
	testenv.RequireCommands(t, "ip", "ping", "nft")
	o := ovstest.Start(t, ovstest.Options{FlowRestoreWait: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ra, cfg := restoreWaitAgent(t, o)
	ra.waitReadyFor(t, ctx, o.VswitchdPID())
	bin, err := cnitest.SharedPluginDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := cnitest.NewRuntime(bin, t.TempDir(), cfg.CNISocket, "")
	if err != nil {
		t.Fatal(err)
	}
	var pods []*testPod
	for i := range 2 {
		n, err := cnitest.NewNetns(ctx, "ovsnet-frw-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Delete() })
		p := &testPod{Pod: cnitest.Pod{Name: fmt.Sprintf("frw-%d", i), Namespace: "default",
			ContainerID: fmt.Sprintf("frw%03d%s", i, strings.Repeat("0", 24)), Netns: n.Path}, ns: n}
		res, err := rt.Add(ctx, p.Pod)
		if err != nil {
			t.Fatalf("ADD %s: %v", p.Name, err)
		}
		p.ip = res.IPs[0].Address.IP.String()
		pods = append(pods, p)
	}
	if err := pods[0].ping(t, ctx, pods[1].ip); err != nil {
		t.Fatal(err)
	}
	w := watchSwitch(t, o)
	w.waitFlowRestoreWait(t, ctx, false)

	for run := range 3 {
		before, err := w.of.WaitSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		o.KillVswitchd()
		// What start-ovs.sh does before it starts ovs-vswitchd. The
		// agent cannot clear the key before the new process runs (it
		// clears after a resync through it), so the test sees it set.
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		o.Must(o.Sandbox.SetFlowRestoreWait(sctx))
		scancel()
		w.waitFlowRestoreWait(t, ctx, true)
		o.StartVswitchd(ovssandbox.Foreground)
		atClear := w.flowsAtClear(ctx, before.Seq)
		ra.waitReadyFor(t, ctx, o.VswitchdPID())
		flows, ok := <-atClear
		if !ok {
			t.Fatalf("run %d: no flow dump when flow-restore-wait was removed", run)
		}
		ready, err := w.dump(ctx, before.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(flows, ready) {
			t.Fatalf("run %d: when flow-restore-wait was removed the switch had %d flows, once ready %d:\nat removal:\n%s\nready:\n%s",
				run, len(flows), len(ready), strings.Join(flows, "\n"), strings.Join(ready, "\n"))
		}
		for _, p := range pods {
			if !containsPodFlow(ready, p.ip) {
				t.Fatalf("run %d: no flow for pod %s (%s) once ready:\n%s", run, p.Name, p.ip, strings.Join(ready, "\n"))
			}
		}
		if got := o.Vsctl("--if-exists", "get", "open_vswitch", ".", "other_config:flow-restore-wait"); got != "" {
			t.Fatalf("run %d: flow-restore-wait is %s after the agent is ready", run, got)
		}
		for _, pair := range [][2]*testPod{{pods[0], pods[1]}, {pods[1], pods[0]}} {
			if err := pair[0].ping(t, ctx, pair[1].ip); err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
		}
	}
}

func containsPodFlow(flows []string, ip string) bool {
	for _, f := range flows {
		if strings.Contains(f, ip) {
			return true
		}
	}
	return false
}

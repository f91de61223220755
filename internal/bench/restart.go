//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

// RestartConfig configures the ovs-vswitchd restart benchmark.
type RestartConfig struct {
	// Restarts per variant.
	Restarts int
	// Interval between probes (10 ms: what `ping -i 0.01` does).
	Interval time.Duration
	// FlowRestoreWait lists the variants: false runs ovs-vswitchd as
	// before, true sets other_config:flow-restore-wait=true before each
	// start, as the DaemonSet's start-ovs.sh does.
	FlowRestoreWait []bool
	// PluginDir holds the built plugin binary ("ovsnet").
	PluginDir string
	// Down is how long ovs-vswitchd stays dead before the restart (0: as
	// soon as it has exited, as a supervisor restarting it does).
	Down time.Duration
	// WithDB also kills and restarts ovsdb-server, as a restart of the
	// whole OVS container (start-ovs.sh runs both) does.
	WithDB bool
	// Timeline prints every restart's agent log records on the bench's
	// clock.
	Timeline bool
	Out      io.Writer
	Log      *slog.Logger
}

// resumeTarget: pod traffic is back this soon after the floor.
const resumeTarget = 50 * time.Millisecond

// milestones are the agent log records that mark the steps of a resync
// after an ovs-vswitchd restart, in order.
var milestones = []struct{ msg, name string }{
	{"OVS changed under the agent, passing the bridge gate again", "agent: vswitchd change seen"},
	{"bridge transaction committed", "gate: EnsureBridge committed"},
	{"bridge configuration applied", "gate: cur_cfg reached, datapath_id set"},
	{"bridge ready", "gate: dp-features answered"},
	{"OpenFlow session up", "OpenFlow session up"},
	{"gateway port allocated", "gateway port allocated"},
	{"flows resynced", "Resync bundle committed"},
	{"flow-restore-wait removal committed", "flow-restore-wait removal committed"},
	{"flow-restore-wait cleared", "flow-restore-wait removal read by ovs-vswitchd"},
	{"gateway ready", "gateway host side configured"},
	{"agent ready", "agent ready"},
}

type restartSamples struct {
	floor, gap, gapLessDown, resume, overFloor, down, agentOverFloor Sample
	lost, late                                                       []int
	stage                                                            map[string]Sample
	rearms                                                           int
}

// Restart measures how long pod traffic stops when ovs-vswitchd is killed
// (SIGKILL) and restarted in the foreground against its kept conf.db, as a
// crash or a rollout of the OVS container does. Two pods made through the
// real plugin exchange a numbered UDP probe every Interval; per restart it
// reports the floor (ovs-vswitchd start -> first dp-features answer, from a
// separate poller on the new control socket, in the same run), the traffic
// gap (last echo before the kill -> first echo after), the gap less the
// time ovs-vswitchd was down (kill -> restart), and the probes lost.
func Restart(ctx context.Context, cfg RestartConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if len(cfg.FlowRestoreWait) == 0 {
		cfg.FlowRestoreWait = []bool{false, true}
	}
	results := map[bool]*restartSamples{}
	for _, frw := range cfg.FlowRestoreWait {
		s, err := restartVariant(ctx, cfg, frw)
		if err != nil {
			return fmt.Errorf("flow-restore-wait %s: %w", onOff(frw), err)
		}
		results[frw] = s
		what := "ovs-vswitchd SIGKILL + foreground restart"
		if cfg.WithDB {
			what += ", ovsdb-server restarted too"
		}
		if cfg.Down > 0 {
			what += fmt.Sprintf(", down %v", cfg.Down)
		}
		title := fmt.Sprintf("%s, kept conf.db, flow-restore-wait %s (%d restarts, probe every %v)",
			what, onOff(frw), cfg.Restarts, cfg.Interval)
		rows := []Row{
			{"floor: start -> first dp-features answer", s.floor},
			{"traffic gap: last echo before kill -> first after", s.gap},
			{"  ovs-vswitchd down: kill -> restart", s.down},
			{"  gap - down", s.gapLessDown},
			{"  start -> first echo", s.resume},
			{"  first echo - floor (per restart)", s.overFloor},
			{"  agent's flows in, forwarding - floor (per restart)", s.agentOverFloor},
		}
		for _, m := range milestones {
			if st, ok := s.stage[m.name]; ok {
				rows = append(rows, Row{"  agent (from start): " + m.name, st})
			}
		}
		WriteTable(cfg.Out, title, rows)
		fmt.Fprintf(cfg.Out, "probes lost per restart: %s; echoes held and delivered late: %d; bridge gate re-arms: %d\n",
			intsSummary(s.lost), sum(s.late), s.rearms)
		within := countWithin(s.overFloor, resumeTarget)
		fmt.Fprintf(cfg.Out, "traffic back within %v of the floor: %d of %d restarts (worst %s); agent done within it: %d of %d (worst %s)\n",
			resumeTarget, within, len(s.overFloor), ms(s.overFloor.Percentile(100)),
			countWithin(s.agentOverFloor, resumeTarget), len(s.agentOverFloor), ms(s.agentOverFloor.Percentile(100)))
	}
	return nil
}

func countWithin(s Sample, d time.Duration) int {
	n := 0
	for _, x := range s {
		if x <= d {
			n++
		}
	}
	return n
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func sum(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}

func intsSummary(v []int) string {
	if len(v) == 0 {
		return "none"
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return fmt.Sprintf("min %d, max %d, total %d", lo, hi, sum(v))
}

func restartVariant(ctx context.Context, cfg RestartConfig, frw bool) (*restartSamples, error) {
	rec := &recorder{}
	log := slog.New(rec.handler(cfg.Log.Handler()))
	sb, err := ovssandbox.New(ctx, ovssandbox.Config{})
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	if err := sb.StartDB(ctx); err != nil {
		return nil, err
	}
	var opts []ovssandbox.VswitchdOption
	if frw {
		// The agent meets the key on its first start, as after a node
		// reboot: it must clear it itself.
		opts = append(opts, ovssandbox.WithFlowRestoreWait())
	}
	if err := sb.StartVswitchd(ctx, ovssandbox.Detached, opts...); err != nil {
		return nil, err
	}
	dir := sb.Dir()
	acfg := agent.Defaults()
	acfg.OVSDB, acfg.OVSRunDir, acfg.DatapathType, acfg.HealthAddr = sb.DBEndpoint(), dir, "netdev", "127.0.0.1:0"
	acfg.PodCIDR, acfg.StateDir, acfg.CNISocket, acfg.HostNetns = "10.252.0.0/24", dir+"/state", dir+"/cni.sock", sb.NetnsPath()
	ag, err := agent.New(acfg, log)
	if err != nil {
		return nil, err
	}
	actx, stop := context.WithCancel(ctx)
	ba := &benchAgent{a: ag, cancel: stop, exited: make(chan error, 1)}
	go func() { ba.exited <- ag.Run(actx) }()
	defer ba.stop()
	if _, err := ba.readyFor(ctx, sb.VswitchdPID()); err != nil {
		return nil, err
	}
	if err := checkFlowRestoreWaitCleared(ctx, sb); err != nil {
		return nil, fmt.Errorf("after the agent's first start: %w", err)
	}

	rt, err := cnitest.NewRuntime(cfg.PluginDir, dir+"/cni-cache", acfg.CNISocket, "1.1.0")
	if err != nil {
		return nil, err
	}
	nss, cleanup, err := newNetnses(ctx, "ovsnet-rst-", 2)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var ips []string
	for i, n := range nss {
		res, err := rt.Add(ctx, cnitest.Pod{Name: fmt.Sprintf("restart-%d", i), Namespace: "bench",
			ContainerID: fmt.Sprintf("restart-%d-%d", i, time.Now().UnixNano()), Netns: n.Path})
		if err != nil {
			return nil, fmt.Errorf("ADD: %w", err)
		}
		ips = append(ips, res.IPs[0].Address.IP.String())
	}
	pr, err := newProber(nss[0].Path, nss[1].Path, ips[1], cfg.Interval)
	if err != nil {
		return nil, err
	}
	pctx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { pr.run(pctx); close(probeDone) }()
	defer func() { stopProbe(); <-probeDone }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = pr.waitEchoes(wctx, time.Now(), 10)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("no traffic between the pods before the first restart: %w", err)
	}

	s := &restartSamples{stage: map[string]Sample{}}
	for i := range cfg.Restarts {
		if err := restartOnce(ctx, cfg, sb, ba, pr, rec, frw, i, s); err != nil {
			return nil, fmt.Errorf("restart %d: %w\n%s", i, err, sb.Logs())
		}
	}
	return s, nil
}

func restartOnce(ctx context.Context, cfg RestartConfig, sb *ovssandbox.Sandbox, ba *benchAgent, pr *prober,
	rec *recorder, frw bool, i int, s *restartSamples) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	kill := time.Now()
	if err := sb.KillVswitchd(ctx); err != nil {
		return err
	}
	if cfg.WithDB {
		// start-ovs.sh ends when either daemon does; its restart brings
		// ovsdb-server back first.
		if err := sb.StopDB(ctx); err != nil {
			return err
		}
	}
	if cfg.Down > 0 {
		// Only shapes the scenario: nothing measured waits on it.
		t := time.NewTimer(cfg.Down)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if cfg.WithDB {
		if err := sb.StartDB(ctx); err != nil {
			return err
		}
	}
	if frw {
		// What start-ovs.sh does before it starts ovs-vswitchd.
		if err := sb.SetFlowRestoreWait(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := sb.StartVswitchd(ctx, ovssandbox.Foreground); err != nil {
		return err
	}
	pid := sb.VswitchdPID()
	floorC := make(chan time.Time, 1)
	go func() {
		at, _ := floorPoller(ctx, sb.Dir(), pid)
		floorC <- at
	}()
	if _, err := ba.readyFor(ctx, pid); err != nil {
		return err
	}
	floor := <-floorC
	if floor.IsZero() {
		return fmt.Errorf("floor poller got no dp-features answer")
	}
	if err := pr.waitEchoes(ctx, kill, 1); err != nil {
		return fmt.Errorf("agent ready but no traffic: %w", err)
	}
	if frw {
		if err := checkFlowRestoreWaitCleared(ctx, sb); err != nil {
			return err
		}
	}
	// Settle: twenty more echoes, so every probe of the outage has had
	// time to come back if it was held anywhere.
	if err := pr.waitEchoes(ctx, time.Now(), 20); err != nil {
		return err
	}
	o, err := pr.outage(kill)
	if err != nil {
		return err
	}
	s.floor = append(s.floor, floor.Sub(start))
	s.down = append(s.down, start.Sub(kill))
	s.gap = append(s.gap, o.firstAfter.Sub(o.lastBefore))
	s.gapLessDown = append(s.gapLessDown, o.firstAfter.Sub(o.lastBefore)-start.Sub(kill))
	s.resume = append(s.resume, o.firstAfter.Sub(start))
	s.overFloor = append(s.overFloor, o.firstAfter.Sub(floor))
	s.lost = append(s.lost, o.lost)
	s.late = append(s.late, o.late)
	evs := rec.since(kill)
	for _, m := range milestones {
		if at, ok := first(evs, m.msg); ok {
			s.stage[m.name] = append(s.stage[m.name], at.Sub(start))
		}
	}
	// The agent's own part: its flows are in and ovs-vswitchd forwards
	// (the flow-restore-wait removal read, when the key was set).
	done, ok := first(evs, "flows resynced")
	if frw {
		done, ok = first(evs, "flow-restore-wait cleared")
	}
	if !ok {
		return fmt.Errorf("no record of the agent's resync after the restart")
	}
	s.agentOverFloor = append(s.agentOverFloor, done.Sub(floor))
	rearms := 0
	for _, e := range evs {
		if e.msg == "bridge gate re-armed" {
			rearms++
		}
	}
	s.rearms += rearms
	fmt.Fprintf(cfg.Out, "restart %2d (flow-restore-wait %s): floor %s, gap %s, gap-down %s, first echo-floor %s, agent done-floor %s, lost %d, late %d, gate re-arms %d, longest send gap %s\n",
		i, onOff(frw), ms(floor.Sub(start)), ms(o.firstAfter.Sub(o.lastBefore)), ms(o.firstAfter.Sub(o.lastBefore)-start.Sub(kill)),
		ms(o.firstAfter.Sub(floor)), ms(done.Sub(floor)), o.lost, o.late, rearms, ms(o.maxSendGap))
	if cfg.Timeline {
		writeTimeline(cfg.Out, kill, start, floor, o, evs)
	}
	return nil
}

// writeTimeline prints the restart's events on one clock, from the start of
// the new ovs-vswitchd.
func writeTimeline(w io.Writer, kill, start, floor time.Time, o outage, evs []event) {
	type line struct {
		at   time.Time
		text string
	}
	lines := []line{
		{o.lastBefore, "bench: last echo before the kill"},
		{kill, "bench: SIGKILL ovs-vswitchd"},
		{start, "bench: ovs-vswitchd started (foreground)"},
		{floor, "bench: floor poller's first dp-features answer"},
		{o.firstAfter, "bench: first echo after the restart"},
	}
	for _, e := range evs {
		if e.at.After(o.firstAfter.Add(50 * time.Millisecond)) {
			break
		}
		text := e.component + ": " + e.msg
		if a := strings.TrimSpace(e.attrs); a != "" {
			text += "  [" + shorten(a, 160) + "]"
		}
		lines = append(lines, line{e.at, text})
	}
	// Stable by time: the bench's marks go before agent records of the
	// same instant.
	for i := 1; i < len(lines); i++ {
		for j := i; j > 0 && lines[j].at.Before(lines[j-1].at); j-- {
			lines[j], lines[j-1] = lines[j-1], lines[j]
		}
	}
	for _, l := range lines {
		fmt.Fprintf(w, "    %+10.2f ms  %s\n", float64(l.at.Sub(start))/float64(time.Millisecond), l.text)
	}
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// checkFlowRestoreWaitCleared fails if other_config:flow-restore-wait is
// still true.
func checkFlowRestoreWaitCleared(ctx context.Context, sb *ovssandbox.Sandbox) error {
	out, err := sb.Vsctl(ctx, "--if-exists", "get", "Open_vSwitch", ".", "other_config:flow-restore-wait")
	if err != nil {
		return err
	}
	if v := strings.Trim(strings.TrimSpace(out), `"`); v == "true" {
		return fmt.Errorf("other_config:flow-restore-wait is still %q after the agent became ready", v)
	}
	return nil
}

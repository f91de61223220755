//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

// GateConfig configures the bridge-readiness benchmark.
type GateConfig struct {
	// Runs is the number of timed ovs-vswitchd starts per variant.
	Runs int
	// Orders is the number of randomized start orders checked for failures.
	Orders int
	Out    io.Writer
	Log    *slog.Logger
}

// Gate measures the time from an ovs-vswitchd start to the agent being
// ready, beside the floor: the first instant a tight poller gets a
// successful dpif/show-dp-features reply from that process. Then it runs
// randomized start orders of ovsdb-server, ovs-vswitchd and the agent and
// counts the runs where the agent did not become ready or exited.
func Gate(ctx context.Context, cfg GateConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var fresh, restart gateSamples
	for i := 0; i < cfg.Runs; i++ {
		if err := gateRun(ctx, cfg, true, &fresh); err != nil {
			return fmt.Errorf("fresh run %d: %w", i, err)
		}
	}
	if err := gateRestarts(ctx, cfg, &restart); err != nil {
		return err
	}
	WriteTable(cfg.Out, "ovs-vswitchd start (foreground, new conf.db) -> ready", fresh.rows())
	WriteTable(cfg.Out, "ovs-vswitchd restart (foreground, kept conf.db) -> ready", restart.rows())

	failures := 0
	for i := 0; i < cfg.Orders; i++ {
		if err := randomOrder(ctx, cfg, uint64(i)); err != nil {
			failures++
			fmt.Fprintf(cfg.Out, "start order run %d failed: %v\n", i, err)
		}
	}
	fmt.Fprintf(cfg.Out, "\nrandomized start orders: %d runs, %d failures\n", cfg.Orders, failures)
	if failures > 0 {
		return fmt.Errorf("%d of %d start orders failed", failures, cfg.Orders)
	}
	return nil
}

type gateSamples struct {
	floor, agent, overhead Sample
}

func (g *gateSamples) rows() []Row {
	return []Row{
		{"floor: first dp-features success", g.floor},
		{"ovsnet agent ready", g.agent},
		{"agent - floor (same run)", g.overhead},
	}
}

type benchAgent struct {
	a      *agent.Agent
	cancel context.CancelFunc
	exited chan error
}

func startBenchAgent(ctx context.Context, sb *ovssandbox.Sandbox, log *slog.Logger) (*benchAgent, error) {
	c := agent.Defaults()
	c.OVSDB, c.OVSRunDir, c.DatapathType, c.HealthAddr = sb.DBEndpoint(), sb.Dir(), "netdev", "127.0.0.1:0"
	a, err := agent.New(c, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ba := &benchAgent{a: a, cancel: cancel, exited: make(chan error, 1)}
	go func() { ba.exited <- a.Run(ctx) }()
	return ba, nil
}

func (b *benchAgent) stop() error {
	b.cancel()
	return <-b.exited
}

// readyFor waits until the agent is ready for the ovs-vswitchd with pid and
// returns when it became so.
func (b *benchAgent) readyFor(ctx context.Context, pid int) (time.Time, error) {
	want := "ovs-vswitchd." + strconv.Itoa(pid) + ".ctl"
	var at time.Time
	err := b.a.Status().WaitFor(ctx, func(st health.Status) bool {
		br := b.a.Bridge()
		if st.State == health.Ready && br != nil && strings.HasSuffix(br.ControlSocket, want) {
			at = st.Since
			return true
		}
		return false
	})
	select {
	case err := <-b.exited:
		return at, fmt.Errorf("agent exited: %w", err)
	default:
	}
	return at, err
}

// floorPoller asks the ovs-vswitchd with pid for its datapath features as
// fast as it answers, and reports the first success.
func floorPoller(ctx context.Context, dir string, pid int) (time.Time, error) {
	c := unixctl.New(unixctl.Config{Socket: fmt.Sprintf("%s/ovs-vswitchd.%d.ctl", dir, pid), Logger: slog.New(slog.DiscardHandler)})
	for {
		if _, err := c.DatapathFeatures(ctx, "br-int"); err == nil {
			return time.Now(), nil
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
	}
}

// newSandbox starts a sandboxed ovsdb-server and, if asked, a detached
// ovs-vswitchd.
func newSandbox(ctx context.Context, vswitchd bool) (*ovssandbox.Sandbox, error) {
	sb, err := ovssandbox.New(ctx, ovssandbox.Config{})
	if err != nil {
		return nil, err
	}
	err = sb.StartDB(ctx)
	if err == nil && vswitchd {
		err = sb.StartVswitchd(ctx, ovssandbox.Detached)
	}
	if err != nil {
		sb.Close()
		return nil, err
	}
	return sb, nil
}

// measure starts ovs-vswitchd in the foreground and times the floor and the
// agent against that start.
func measure(ctx context.Context, sb *ovssandbox.Sandbox, ba *benchAgent, s *gateSamples) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := sb.StartVswitchd(ctx, ovssandbox.Foreground); err != nil {
		return err
	}
	pid := sb.VswitchdPID()
	floorC := make(chan time.Time, 1)
	go func() {
		at, _ := floorPoller(ctx, sb.Dir(), pid)
		floorC <- at
	}()
	ready, err := ba.readyFor(ctx, pid)
	floor := <-floorC
	if err != nil {
		return err
	}
	if floor.IsZero() {
		return fmt.Errorf("floor poller got no reply")
	}
	s.floor = append(s.floor, floor.Sub(t0))
	s.agent = append(s.agent, ready.Sub(t0))
	s.overhead = append(s.overhead, ready.Sub(floor))
	return nil
}

func gateRun(ctx context.Context, cfg GateConfig, _ bool, s *gateSamples) error {
	sb, err := newSandbox(ctx, false)
	if err != nil {
		return err
	}
	defer sb.Close()
	ba, err := startBenchAgent(ctx, sb, cfg.Log)
	if err != nil {
		return err
	}
	defer ba.stop()
	// The agent is waiting (bridge written, not applied) when the daemon
	// starts, as on a node where the OVS container comes up second.
	if err := ba.a.Status().WaitFor(ctx, func(st health.Status) bool { return st.State == health.BridgeNotApplied }); err != nil {
		return err
	}
	return measure(ctx, sb, ba, s)
}

func gateRestarts(ctx context.Context, cfg GateConfig, s *gateSamples) error {
	sb, err := newSandbox(ctx, false)
	if err != nil {
		return err
	}
	defer sb.Close()
	ba, err := startBenchAgent(ctx, sb, cfg.Log)
	if err != nil {
		return err
	}
	defer ba.stop()
	if err := sb.StartVswitchd(ctx, ovssandbox.Detached); err != nil {
		return err
	}
	if _, err := ba.readyFor(ctx, sb.VswitchdPID()); err != nil {
		return err
	}
	for i := 0; i < cfg.Runs; i++ {
		if err := sb.KillVswitchd(ctx); err != nil {
			return err
		}
		if err := measure(ctx, sb, ba, s); err != nil {
			return fmt.Errorf("restart run %d: %w", i, err)
		}
	}
	return nil
}

// randomOrder starts the three parts in a random order, ovs-vswitchd in a
// random mode, with random gaps, then kills and restarts ovs-vswitchd, and
// requires the agent to be ready for the final process without exiting.
func randomOrder(ctx context.Context, cfg GateConfig, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 42))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sb, err := ovssandbox.New(ctx, ovssandbox.Config{})
	if err != nil {
		return err
	}
	defer sb.Close()
	steps := []string{"db", "vswitchd", "agent"}
	r.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
	var ba *benchAgent
	dbUp := false
	for _, step := range steps {
		switch step {
		case "db":
			err = sb.StartDB(ctx)
			dbUp = true
		case "vswitchd":
			mode := ovssandbox.Mode(r.IntN(2))
			if !dbUp {
				mode = ovssandbox.Foreground // --detach would block until the DB exists
			}
			err = sb.StartVswitchd(ctx, mode)
		case "agent":
			ba, err = startBenchAgent(ctx, sb, cfg.Log)
		}
		if err != nil {
			return err
		}
		pause(ctx, r)
	}
	defer ba.stop()
	if _, err := ba.readyFor(ctx, sb.VswitchdPID()); err != nil {
		return fmt.Errorf("order %v: %w", steps, err)
	}
	if err := sb.KillVswitchd(ctx); err != nil {
		return err
	}
	pause(ctx, r)
	if err := sb.StartVswitchd(ctx, ovssandbox.Mode(r.IntN(2))); err != nil {
		return err
	}
	if _, err := ba.readyFor(ctx, sb.VswitchdPID()); err != nil {
		return fmt.Errorf("order %v, after restart: %w", steps, err)
	}
	return nil
}

// pause spreads the start of the next part over 0-40 ms to vary the
// interleaving; nothing waits on it for correctness.
func pause(ctx context.Context, r *rand.Rand) {
	t := time.NewTimer(time.Duration(r.IntN(40)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

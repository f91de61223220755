// Package agent wires ovsnet's node agent together and runs its start-up
// state machine: OVSDB reachable -> bridge applied by a live ovs-vswitchd ->
// datapath features known -> ready. It never exits on a transient
// condition; it reports where it waits, and falls back to an earlier state
// when OVS goes away under it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ovs/bridgegate"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl"
)

// Config is the agent's configuration; see cmd/ovsnet-agent for the flags.
type Config struct {
	// OVSDB is the ovsdb-server endpoint (unix:/path or tcp:host:port).
	OVSDB string
	// OVSRunDir holds ovs-vswitchd's pidfile, control socket and the
	// bridges' OpenFlow management sockets.
	OVSRunDir string
	// Bridge is the integration bridge the agent owns.
	Bridge string
	// DatapathType is "system" or "netdev".
	DatapathType string
	// HealthAddr is where /healthz, /readyz and /metrics are served.
	HealthAddr string
}

// Defaults are the documented flag defaults.
func Defaults() Config {
	return Config{
		OVSDB:        ovsdb.DefaultEndpoint,
		OVSRunDir:    unixctl.DefaultRunDir,
		Bridge:       "br-int",
		DatapathType: "system",
		HealthAddr:   "127.0.0.1:9364",
	}
}

// Validate reports the first configuration error, worded for the operator.
func (c Config) Validate() error {
	if c.Bridge == "" || len(c.Bridge) > 15 {
		return fmt.Errorf("--bridge %q: want a name of 1 to 15 characters (it becomes a network device name)", c.Bridge)
	}
	if c.DatapathType != "system" && c.DatapathType != "netdev" {
		return fmt.Errorf("--datapath-type %q: want system (kernel datapath) or netdev (userspace datapath)", c.DatapathType)
	}
	if c.OVSRunDir == "" {
		return errors.New("--ovs-rundir is empty: give the directory holding ovs-vswitchd.pid")
	}
	if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
		return fmt.Errorf("--health-addr %q: want host:port: %w", c.HealthAddr, err)
	}
	return nil
}

// Agent is one node agent. Create it with New, run it with Run.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	status   *health.Tracker
	db       *ovsdb.Client
	vswitchd *unixctl.Client
	gate     *bridgegate.Gate

	// healthAddr is the bound health address, known once Run has started.
	healthAddr chan net.Addr

	mu     sync.Mutex
	bridge *bridgegate.Result // last gate result; nil until the first pass
}

// New validates cfg and builds the agent's parts; it starts nothing.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &Agent{
		cfg:        cfg,
		log:        log,
		registry:   reg,
		status:     health.NewTracker(log, reg),
		healthAddr: make(chan net.Addr, 1),
	}
	db, err := ovsdb.New(ovsdb.Config{Endpoint: cfg.OVSDB, Logger: log.With("component", "ovsdb")})
	if err != nil {
		return nil, fmt.Errorf("--ovsdb: %w", err)
	}
	a.db = db
	a.vswitchd = unixctl.New(unixctl.Config{RunDir: cfg.OVSRunDir, Logger: log.With("component", "unixctl")})
	a.gate, err = bridgegate.New(bridgegate.Config{
		Bridge: ovsdb.BridgeSpec{
			Name:         cfg.Bridge,
			DatapathType: cfg.DatapathType,
			ExternalIDs:  map[string]string{"ovsnet.io/owner": "ovsnet-agent"},
		},
		DB:       db,
		Datapath: a.vswitchd,
		Reporter: a.reportGate,
		Logger:   log.With("component", "bridgegate"),
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Status is the agent's readiness tracker.
func (a *Agent) Status() *health.Tracker { return a.status }

// HealthAddr returns the bound health address once Run has bound it.
func (a *Agent) HealthAddr(ctx context.Context) (net.Addr, error) {
	select {
	case addr := <-a.healthAddr:
		a.healthAddr <- addr
		return addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Bridge returns what the last pass of the bridge gate learned (nil before
// the first pass).
func (a *Agent) Bridge() *bridgegate.Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bridge
}

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

// Run runs the agent until ctx ends. It returns an error only for what an
// operator must fix before a restart can help (the health port is taken);
// everything OVS does is waited out.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, served, err := health.Serve(ctx, a.cfg.HealthAddr, health.Handler(a.status, a.registry), a.log)
	if err != nil {
		return err
	}
	a.healthAddr <- addr

	dbDone := make(chan struct{})
	go func() {
		defer close(dbDone)
		_ = a.db.Run(ctx)
	}()
	defer func() { <-dbDone }()

	a.log.Info("ovsnet agent starting", "bridge", a.cfg.Bridge, "datapath_type", a.cfg.DatapathType,
		"ovsdb", a.cfg.OVSDB, "ovs_rundir", a.cfg.OVSRunDir)
	loopErr := make(chan error, 1)
	go func() { loopErr <- a.loop(ctx) }()
	select {
	case err := <-served:
		cancel()
		<-loopErr
		if err != nil {
			return fmt.Errorf("health server: %w", err)
		}
		return nil
	case err := <-loopErr:
		cancel()
		return err
	}
}

// loop passes the bridge gate, stays ready until OVS goes away under it,
// and starts over.
func (a *Agent) loop(ctx context.Context) error {
	for ctx.Err() == nil {
		res, err := a.gate.Pass(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Missing features: nothing changes until ovs-vswitchd does.
			a.waitVswitchdChange(ctx, "")
			continue
		}
		a.mu.Lock()
		a.bridge = res
		a.mu.Unlock()
		a.status.Set(health.Ready, "")
		reason := a.waitVswitchdChange(ctx, res.ControlSocket)
		if ctx.Err() == nil {
			a.status.Set(health.BridgeNotApplied, reason)
		}
	}
	return nil
}

// waitVswitchdChange blocks until the OVS the agent relies on changes: the
// ovs-vswitchd behind sock exits (its control socket closes) or the OVSDB
// connection drops (ovsdb-server restarted: datapath ids are rewritten). It
// returns why.
func (a *Agent) waitVswitchdChange(ctx context.Context, sock string) string {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	why := make(chan string, 2)
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
	select {
	case w := <-why:
		a.log.Warn("OVS changed under the agent, passing the bridge gate again", "reason", w)
		return w
	case <-ctx.Done():
		return ""
	}
}

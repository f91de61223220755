// Package bridgegate is the first of ovsnet's two sync points with Open
// vSwitch: it decides when the bridge is ready to be used.
//
// Ready means all of:
//  1. our own transaction created or updated the bridge and incremented
//     Open_vSwitch.next_cfg to N;
//  2. Open_vSwitch.cur_cfg >= N: a live ovs-vswitchd applied that very
//     transaction (a kept conf.db cannot fake this, unlike datapath_id);
//  3. the bridge's datapath_id is set: its ofproto and datapath exist;
//  4. ovs-vswitchd answers dpif/show-dp-features for the bridge, and the
//     datapath has every required feature.
//
// Conditions 2 and 3 are waited on as OVSDB cache conditions, woken by
// monitor updates. A transient failure of step 4 ("not a valid command", "no
// such bridge", a refused or stalled control socket: ovs-vswitchd restarting
// under us) re-arms the whole gate from step 1 after a short pacing delay,
// cut short when a new ovs-vswitchd process starts; it never ends the wait.
// Only the caller's context or missing required features end it.
package bridgegate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/sockwatch"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl"
)

// Datapath is the part of the ovs-vswitchd control client the gate uses.
type Datapath interface {
	DatapathFeatures(ctx context.Context, bridge string) (*unixctl.Features, error)
	SocketPath() (string, error)
}

// Stage is where the gate is waiting.
type Stage int

const (
	// OVSDBUnreachable: no live connection to ovsdb-server.
	OVSDBUnreachable Stage = iota
	// BridgeNotApplied: waiting for a live ovs-vswitchd to apply the bridge.
	BridgeNotApplied
	// FeaturesUnknown: waiting for ovs-vswitchd to answer the datapath
	// features query.
	FeaturesUnknown
	// FeaturesMissing: the datapath lacks required features (permanent).
	FeaturesMissing
)

// Reporter receives the gate's progress with a human-readable reason, for
// readiness reporting.
type Reporter func(stage Stage, reason string)

// Config configures a Gate.
type Config struct {
	Bridge   ovsdb.BridgeSpec
	DB       *ovsdb.Client
	Datapath Datapath
	// Required features; default unixctl.RequiredFeatures().
	Required []unixctl.Feature
	// CallTimeout bounds one dp-features call, so a stopped ovs-vswitchd
	// re-arms the gate instead of holding it. Default 5 s.
	CallTimeout time.Duration
	Reporter    Reporter
	Logger      *slog.Logger
}

// Gate waits for the bridge to be ready. One Gate serves one bridge; Pass may
// be called again whenever ovs-vswitchd may have restarted.
type Gate struct {
	cfg Config
	log *slog.Logger
	db  *ovsdb.Client
}

// Result describes a bridge that passed the gate.
type Result struct {
	// Seq is the configuration sequence number ovs-vswitchd acknowledged.
	Seq int
	// DatapathID is the bridge's datapath id (16 hex digits) as in OVSDB.
	DatapathID string
	// Features are the datapath's features.
	Features *unixctl.Features
	// ControlSocket is the ovs-vswitchd control socket that answered; it
	// names the process (by pid) that the result holds for.
	ControlSocket string
}

// New checks cfg and returns a gate.
func New(cfg Config) (*Gate, error) {
	if cfg.DB == nil || cfg.Datapath == nil {
		return nil, errors.New("bridge gate: DB and Datapath are required")
	}
	if cfg.Required == nil {
		cfg.Required = unixctl.RequiredFeatures()
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, log: log.With("bridge", cfg.Bridge.Name), db: cfg.DB}, nil
}

func (g *Gate) report(s Stage, reason string) {
	if g.cfg.Reporter != nil {
		g.cfg.Reporter(s, reason)
	}
}

// Pass blocks until the bridge is ready and returns what was learned. It
// fails only when ctx ends or with a *unixctl.MissingFeaturesError, which
// is permanent for this ovs-vswitchd.
func (g *Gate) Pass(ctx context.Context) (*Result, error) {
	pace := newPacer(time.Millisecond, 2*time.Second)
	restarts := g.watchRestarts()
	defer restarts.Close()
	for attempt := 1; ; attempt++ {
		// A new process from here on wakes the pacing below.
		select {
		case <-restarts.C():
		default:
		}
		res, err := g.try(ctx)
		if err == nil {
			return res, nil
		}
		var missing *unixctl.MissingFeaturesError
		if errors.As(err, &missing) || ctx.Err() != nil {
			return nil, err
		}
		g.log.Debug("bridge gate re-armed", "attempt", attempt, "err", err)
		woke, ok := pace.wait(ctx, restarts.C())
		if !ok {
			return nil, fmt.Errorf("bridge %s not ready: %w (last: %v)", g.cfg.Bridge.Name, ctx.Err(), err)
		}
		if woke {
			pace.reset()
		}
	}
}

// watchRestarts watches for ovs-vswitchd's pidfile being rewritten, which a
// new process does at its start, when the Datapath can say where it is
// (nil otherwise). A failure that re-armed the gate belongs to the old
// process: the new one is tried at once, not after a pacing delay that grew
// while the old one failed.
func (g *Gate) watchRestarts() *sockwatch.Watcher {
	pf, ok := g.cfg.Datapath.(interface{ PidfilePath() (string, bool) })
	if !ok {
		return nil
	}
	path, ok := pf.PidfilePath()
	if !ok {
		return nil
	}
	w, err := sockwatch.New(path)
	if err != nil {
		g.log.Debug("not watching for ovs-vswitchd restarts; re-arms are paced alone", "err", err)
		return nil
	}
	return w
}

// try runs the gate once; any error but a missing feature or a dead ctx is
// transient.
func (g *Gate) try(ctx context.Context) (*Result, error) {
	name := g.cfg.Bridge.Name
	if ok, why := g.db.Connected(); !ok {
		g.report(OVSDBUnreachable, fmt.Sprintf("no connection to ovsdb-server: %v", why))
		if err := g.db.WaitConnected(ctx); err != nil {
			return nil, err
		}
	}

	seq, err := g.db.EnsureBridge(ctx, g.cfg.Bridge)
	if err != nil {
		if errors.Is(err, ovsdb.ErrNotConnected) {
			g.report(OVSDBUnreachable, err.Error())
		} else {
			g.report(BridgeNotApplied, err.Error())
		}
		return nil, err
	}
	g.log.Debug("bridge transaction committed", "cfg_seq", seq)

	var why string
	err = g.db.Wait(ctx, "bridge "+name+" applied by ovs-vswitchd", func() (bool, error) {
		ok, w, err := g.db.BridgeApplied(name, seq)
		if err != nil {
			return false, err
		}
		if !ok && w != why {
			why = w
			g.report(BridgeNotApplied, w)
		}
		return ok, nil
	})
	if err != nil {
		return nil, err
	}
	br, _, err := g.db.Bridge(name)
	if err != nil {
		return nil, err
	}
	dpid := ""
	if br.DatapathID != nil {
		dpid = *br.DatapathID
	}
	g.log.Debug("bridge configuration applied", "cfg_seq", seq, "datapath_id", dpid)

	g.report(FeaturesUnknown, "querying datapath features of bridge "+name)
	sock, err := g.cfg.Datapath.SocketPath()
	if err != nil {
		g.report(FeaturesUnknown, err.Error())
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
	feats, err := g.cfg.Datapath.DatapathFeatures(cctx, name)
	cancel()
	if err != nil {
		// Every failure here re-arms, a malformed reply too: the daemon
		// that sent it may be replaced, and the reason stays visible.
		g.report(FeaturesUnknown, err.Error())
		return nil, err
	}
	if err := feats.Require(g.cfg.Required...); err != nil {
		g.report(FeaturesMissing, err.Error())
		return nil, err
	}
	g.log.Info("bridge ready", "cfg_seq", seq, "datapath_id", dpid, "control_socket", sock)
	return &Result{Seq: seq, DatapathID: dpid, Features: feats, ControlSocket: sock}, nil
}

// pacer spaces out re-arms of the gate so a persistent fault (a wrong
// --ovs-rundir, say) does not spin; it is pacing, never synchronisation.
type pacer struct {
	first, next, max time.Duration
}

func newPacer(first, max time.Duration) *pacer { return &pacer{first: first, next: first, max: max} }

// wait waits out the current delay, cut short by wake; it reports whether
// wake cut it short, and false when ctx ended.
func (p *pacer) wait(ctx context.Context, wake <-chan struct{}) (woke, ok bool) {
	t := time.NewTimer(p.next)
	defer t.Stop()
	p.next = min(p.next*2, p.max)
	select {
	case <-t.C:
		return false, true
	case <-wake:
		return true, true
	case <-ctx.Done():
		return false, false
	}
}

func (p *pacer) reset() { p.next = p.first }

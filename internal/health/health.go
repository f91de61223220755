// Package health tracks the agent's readiness as a state with a reason and
// serves it: /healthz (the process is alive and its loops make progress),
// /readyz (200 once ready, else 503 with the reason) and /metrics.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// State is a stage of the agent's start-up, in order.
type State int

const (
	// Starting: nothing has been tried yet.
	Starting State = iota
	// PodCIDRUnknown: in Kubernetes mode, the Node has no pod CIDR yet.
	PodCIDRUnknown
	// OVSDBUnreachable: no live connection to ovsdb-server.
	OVSDBUnreachable
	// BridgeNotApplied: the bridge transaction is written, but no live
	// ovs-vswitchd has applied it yet.
	BridgeNotApplied
	// FeaturesUnknown: the bridge is applied, its datapath features are not
	// known yet.
	FeaturesUnknown
	// FeaturesMissing: the datapath lacks a required feature: permanent
	// until OVS changes.
	FeaturesMissing
	// OpenFlowNotReady: the OpenFlow channel is down or flows are not
	// installed yet.
	OpenFlowNotReady
	// Ready: the agent can serve pods.
	Ready
)

var stateNames = [...]string{"starting", "pod-cidr-unknown", "ovsdb-unreachable", "bridge-not-applied", "features-unknown", "features-missing", "openflow-not-ready", "ready"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Status is the current state, why, and since when.
type Status struct {
	State  State
	Reason string
	Since  time.Time
}

// Tracker holds the current status and lets waiters wake on changes.
type Tracker struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	st      Status
	changed chan struct{}
	checks  []namedCheck

	stateGauge  *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// NewTracker starts in Starting. reg (may be nil) receives the
// ovsnet_agent_state and ovsnet_agent_state_transitions_total metrics.
func NewTracker(log *slog.Logger, reg prometheus.Registerer) *Tracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracker{
		log:     log,
		now:     time.Now,
		changed: make(chan struct{}),
		stateGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ovsnet_agent_state",
			Help: "1 for the agent's current start-up state, 0 for the others.",
		}, []string{"state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ovsnet_agent_state_transitions_total",
			Help: "State changes of the agent, by the state entered.",
		}, []string{"state"}),
	}
	t.st = Status{State: Starting, Reason: "agent starting", Since: t.now()}
	for i := range stateNames {
		t.stateGauge.WithLabelValues(stateNames[i]).Set(0)
	}
	t.stateGauge.WithLabelValues(Starting.String()).Set(1)
	if reg != nil {
		reg.MustRegister(t.stateGauge, t.transitions)
	}
	return t
}

// Set records a state and reason; repeated identical calls are no-ops, so
// callers can report on every loop iteration.
func (t *Tracker) Set(s State, reason string) {
	t.mu.Lock()
	if t.st.State == s && t.st.Reason == reason {
		t.mu.Unlock()
		return
	}
	prev := t.st
	t.st = Status{State: s, Reason: reason, Since: t.now()}
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()

	if prev.State != s {
		t.stateGauge.WithLabelValues(prev.State.String()).Set(0)
		t.stateGauge.WithLabelValues(s.String()).Set(1)
		t.transitions.WithLabelValues(s.String()).Inc()
	}
	switch {
	case s == Ready && prev.State != Ready:
		t.log.Info("agent ready", "after", t.st.Since.Sub(prev.Since).Round(time.Microsecond).String())
	case s == FeaturesMissing:
		t.log.Error("agent not ready", "state", s.String(), "reason", reason)
	case prev.State != s:
		t.log.Info("agent not ready", "state", s.String(), "reason", reason)
	}
}

// Status returns the current status.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

// Ready reports whether the agent is ready; if not, err carries the reason.
func (t *Tracker) Ready() error {
	st := t.Status()
	if st.State == Ready {
		return nil
	}
	return fmt.Errorf("%s: %s", st.State, st.Reason)
}

// LivenessCheck returns nil while the part it watches makes progress.
type LivenessCheck func() error

// AddLiveness registers a check that /healthz runs: a loop of the agent
// that has stopped making progress (wedged, not merely waiting) fails it,
// and the kubelet's liveness probe restarts the agent.
func (t *Tracker) AddLiveness(name string, check LivenessCheck) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checks = append(t.checks, namedCheck{name, check})
}

// Live runs the liveness checks and returns what failed, "name: reason".
func (t *Tracker) Live() []string {
	t.mu.Lock()
	checks := slices.Clone(t.checks)
	t.mu.Unlock()
	var out []string
	for _, c := range checks {
		if err := c.check(); err != nil {
			out = append(out, c.name+": "+err.Error())
		}
	}
	return out
}

type namedCheck struct {
	name  string
	check LivenessCheck
}

// WaitReady blocks until the state is Ready or ctx ends.
func (t *Tracker) WaitReady(ctx context.Context) error {
	return t.WaitFor(ctx, func(st Status) bool { return st.State == Ready })
}

// WaitFor blocks until cond holds for the current status or ctx ends.
func (t *Tracker) WaitFor(ctx context.Context, cond func(Status) bool) error {
	for {
		t.mu.Lock()
		st, ch := t.st, t.changed
		t.mu.Unlock()
		if cond(st) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("agent status %s (%s): %w", st.State, st.Reason, ctx.Err())
		}
	}
}

// Handler serves /healthz, /readyz and /metrics.
func Handler(t *Tracker, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if problems := t.Live(); len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, p := range problems {
				fmt.Fprintf(w, "unhealthy: %s\n", p)
			}
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := t.Status()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if st.State != Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s: %s (since %s)\n", st.State, st.Reason, st.Since.UTC().Format(time.RFC3339Nano))
			return
		}
		fmt.Fprintf(w, "ready (since %s)\n", st.Since.UTC().Format(time.RFC3339Nano))
	})
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

// Serve listens on addr and serves h until ctx ends. The listener is opened
// before Serve returns its first error, so a taken port fails start-up.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on health address %s: %w (is another agent running? choose another --health-addr)", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving health and metrics", "addr", ln.Addr().String())
	return ln.Addr(), done, nil
}

// Package crossnode makes this node's pods reach the other nodes' pods, in
// one of three traffic modes:
//
//   - noencap: routed. Each peer's pod CIDRs are routed on the host via the
//     peer's node address; the pipeline needs no flow of its own for them
//     (its default sends them to the host through the gateway). The
//     underlay must carry pod addresses between nodes (one L2 segment, or
//     routes on the routers).
//   - geneve, vxlan: encapsulated. One flow-based tunnel port on the
//     integration bridge; per peer, a flow sends its pod CIDRs into the
//     tunnel with the peer's node address as tunnel destination. The node
//     itself reaches remote pods through the gateway and the tunnel (a host
//     route "via the peer's gateway, on-link", answered in the switch with
//     a virtual MAC).
//
// In every mode pod source addresses are kept between nodes: the cluster's
// pod CIDRs are exempt from the masquerade.
//
// The reconciler is level-triggered: from the peer set (package nodes) it
// computes the tunnel port, the flows of each peer (owner "peer/<name>", so
// one peer's change touches only its own flows), the host routes (marked
// with protocol RouteProtocol, so stale ones are found and removed) and the
// masquerade exemptions, and brings the node in line, on every change of
// the set and whenever the agent asks (a new OpenFlow session).
package crossnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ovsnet/ovsnet/internal/nodes"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Mode is a traffic mode (the agent's --traffic-mode).
type Mode string

// The traffic modes.
const (
	NoEncap Mode = "noencap"
	Geneve  Mode = "geneve"
	VXLAN   Mode = "vxlan"
)

// ParseMode reads a --traffic-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case NoEncap, Geneve, VXLAN:
		return m, nil
	}
	return "", fmt.Errorf("traffic mode %q: want noencap, geneve or vxlan", s)
}

// Encap reports whether the mode encapsulates.
func (m Mode) Encap() bool { return m == Geneve || m == VXLAN }

// Overhead is what the mode adds to every packet on the underlay (IPv4
// outer header): Geneve without options and VXLAN both take 50 bytes.
func (m Mode) Overhead() int {
	if m.Encap() {
		return 50
	}
	return 0
}

// DefaultTunnelName is the tunnel port's name.
const DefaultTunnelName = "ovsnet-tun0"

// RouteProtocol marks the host routes ovsnet owns (the routing protocol
// field of a route, `ip route show proto 79`).
const RouteProtocol = 79

// Route is a host route to a peer's pod CIDR.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
	// Dev, if set, is the output device; OnLink says the next hop is
	// reachable on it without a covering subnet (the peer's gateway
	// address, answered by the switch).
	Dev    string
	OnLink bool
}

// Host changes what lives in the node's network namespace.
type Host interface {
	// SyncRoutes makes the routes of protocol RouteProtocol in the main
	// table exactly routes.
	SyncRoutes(ctx context.Context, routes []Route) error
	// SetExempt makes prefixes (beside the node's own pod CIDR and the
	// cluster CIDR) exempt from the masquerade.
	SetExempt(ctx context.Context, prefixes []netip.Prefix) error
}

// DB is the part of the OVSDB client the reconciler uses.
type DB interface {
	Interface(name string) (vswitch.Interface, bool, error)
	AddPort(ctx context.Context, bridge string, spec ovsdb.PortSpec) (ovsdb.AddedPort, error)
	DeletePorts(ctx context.Context, bridge string, names ...string) error
}

// Config wires the reconciler.
type Config struct {
	Mode       Mode
	Bridge     string
	TunnelName string
	Network    pipeline.Network
	// NodeIP is this node's underlay address: peers must not claim it.
	NodeIP      netip.Addr
	GatewayName string
	Source      nodes.Source
	DB          DB
	Ports       *ports.Table
	Flows       *pipeline.Manager
	Host        Host
	Logger      *slog.Logger
	// PrepareUnderlay, if set, runs before the tunnel port in encapsulated
	// modes (the userspace datapath's uplink bridge, EnsureUplinkBridge).
	PrepareUnderlay func(ctx context.Context) error
	// OnApplied, if set, is told after every pass that brought the node
	// in line, with the peers it applied (metrics, tests, benchmarks).
	OnApplied func(peers []nodes.Peer)
}

// Reconciler keeps the node's cross-node datapath equal to the peer set.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex // one pass at a time
	applied map[string]nodes.Peer
	tunnel  uint32
	kick    chan struct{}

	stMu    sync.Mutex
	status  Status
	changed chan struct{}
}

// Status is what the reconciler last did.
type Status struct {
	Mode    Mode
	Peers   []nodes.Peer
	Skipped map[string]string // peer -> why it was not applied
	Err     error
	At      time.Time
	Synced  bool
}

// New returns a reconciler; Run starts it.
func New(cfg Config) *Reconciler {
	if cfg.TunnelName == "" {
		cfg.TunnelName = DefaultTunnelName
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{cfg: cfg, log: log, applied: map[string]nodes.Peer{}, kick: make(chan struct{}, 1),
		changed: make(chan struct{}), status: Status{Mode: cfg.Mode}}
}

// Status returns what the last pass did.
func (r *Reconciler) Status() Status {
	r.stMu.Lock()
	defer r.stMu.Unlock()
	st := r.status
	st.Peers = slices.Clone(st.Peers)
	return st
}

// WaitStatus blocks until cond holds for the status or ctx ends.
func (r *Reconciler) WaitStatus(ctx context.Context, cond func(Status) bool) error {
	for {
		r.stMu.Lock()
		st, ch := r.status, r.changed
		r.stMu.Unlock()
		if cond(st) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *Reconciler) setStatus(st Status) {
	r.stMu.Lock()
	r.status = st
	close(r.changed)
	r.changed = make(chan struct{})
	r.stMu.Unlock()
}

// Kick asks for a pass (the OVS under the agent changed).
func (r *Reconciler) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run runs the peer source and, from the first Kick on (the agent kicks
// once the gateway device is up: routes go through it), a pass on every
// change of the set and on every Kick, until ctx ends. A failed pass is
// retried, paced (100 ms doubling to 5 s), and on the next change.
func (r *Reconciler) Run(ctx context.Context) error {
	srcDone := make(chan error, 1)
	go func() { srcDone <- r.cfg.Source.Run(ctx) }()
	select {
	case <-r.kick:
	case <-ctx.Done():
		<-srcDone
		return nil
	}
	pace := 100 * time.Millisecond
	for {
		ch := r.cfg.Source.Changed()
		var retry <-chan time.Time
		if err := r.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Warn("bringing the cross-node datapath in line failed; retrying", "retry_in", pace, "err", err)
			retry = time.After(pace)
			pace = min(pace*2, 5*time.Second)
		} else {
			pace = 100 * time.Millisecond
		}
		select {
		case <-ch:
		case <-r.kick:
		case <-retry:
		case err := <-srcDone:
			if ctx.Err() == nil && err != nil {
				r.log.Error("peer source stopped; the peer set no longer changes", "err", err)
			}
			srcDone = nil
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	if srcDone != nil {
		<-srcDone
	}
	return nil
}

// Sync runs one full pass now (tunnel, flows, masquerade exemptions,
// routes) and returns when it is done. Without a complete peer set nothing
// is changed.
func (r *Reconciler) Sync(ctx context.Context) error { return r.pass(ctx, true) }

// SyncFlows brings the tunnel port and the flows in line, not the host. The
// agent calls it after an OpenFlow session starts and before the flows are
// installed, so the peers' flows use this session's tunnel port number;
// the host side follows in the next full pass (Kick).
func (r *Reconciler) SyncFlows(ctx context.Context) error { return r.pass(ctx, false) }

func (r *Reconciler) pass(ctx context.Context, host bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	peers, synced := r.cfg.Source.Peers()
	if !synced {
		return nil
	}
	valid, skipped := r.filter(peers)
	err := r.apply(ctx, valid, host)
	if !host {
		return err
	}
	st := Status{Mode: r.cfg.Mode, Peers: valid, Skipped: skipped, Err: err, At: time.Now(), Synced: err == nil}
	r.setStatus(st)
	if err == nil && r.cfg.OnApplied != nil {
		r.cfg.OnApplied(valid)
	}
	return err
}

// filter drops the peers that cannot be applied, saying why: a peer
// without a usable address or pod CIDR, one that clashes with this node or
// with a peer before it (by name order).
func (r *Reconciler) filter(peers []nodes.Peer) ([]nodes.Peer, map[string]string) {
	var valid []nodes.Peer
	skipped := map[string]string{}
	for _, p := range peers {
		if err := nodes.Validate(append(slices.Clone(valid), p), r.cfg.Network.PodCIDR, r.cfg.NodeIP); err != nil {
			skipped[p.Name] = err.Error()
			if prev, ok := r.status.Skipped[p.Name]; !ok || prev != err.Error() {
				r.log.Error("peer not reachable from this node's pods: its record is unusable", "peer", p.Name, "err", err)
			}
			continue
		}
		valid = append(valid, p)
	}
	return valid, skipped
}

func (r *Reconciler) apply(ctx context.Context, peers []nodes.Peer, host bool) error {
	changes := map[pipeline.Owner][]pipeline.Flow{}
	if r.cfg.Mode.Encap() {
		if r.cfg.PrepareUnderlay != nil && len(peers) > 0 {
			if err := r.cfg.PrepareUnderlay(ctx); err != nil {
				return fmt.Errorf("underlay for %s tunnels: %w", r.cfg.Mode, err)
			}
		}
		port, err := r.ensureTunnel(ctx)
		if err != nil {
			return err
		}
		r.tunnel = port
		changes[pipeline.OwnerTunnel] = pipeline.TunnelFlows(r.cfg.Network, port)
		for _, p := range peers {
			changes[pipeline.PeerOwner(p.Name)] = pipeline.PeerFlows(r.cfg.Network, port,
				pipeline.Peer{NodeIP: p.NodeIP, PodCIDRs: p.PodCIDRs})
		}
	} else {
		if err := r.removeTunnel(ctx); err != nil {
			return err
		}
		changes[pipeline.OwnerTunnel] = nil
	}
	want := map[string]nodes.Peer{}
	for _, p := range peers {
		want[p.Name] = p
	}
	for name := range r.applied {
		if _, ok := want[name]; !ok || !r.cfg.Mode.Encap() {
			if _, set := changes[pipeline.PeerOwner(name)]; !set {
				changes[pipeline.PeerOwner(name)] = nil
			}
		}
	}
	if err := r.cfg.Flows.Apply(ctx, changes); err != nil && !errors.Is(err, pipeline.ErrNoSession) {
		return fmt.Errorf("peer flows: %w", err)
	}
	if !host {
		return nil
	}
	var routes []Route
	var cidrs []netip.Prefix
	for _, p := range peers {
		for _, c := range p.PodCIDRs {
			cidrs = append(cidrs, c)
			if r.cfg.Mode.Encap() {
				routes = append(routes, Route{Dst: c, Via: pipeline.PeerGateway(c), Dev: r.cfg.GatewayName, OnLink: true})
			} else {
				routes = append(routes, Route{Dst: c, Via: p.NodeIP})
			}
		}
	}
	// Exempt first, route second: a route to a peer must never carry
	// masqueraded pod traffic.
	if err := r.cfg.Host.SetExempt(ctx, cidrs); err != nil {
		return err
	}
	if err := r.cfg.Host.SyncRoutes(ctx, routes); err != nil {
		return fmt.Errorf("routes to the peers' pod CIDRs: %w", err)
	}
	r.applied = want
	return nil
}

// ensureTunnel creates the tunnel port (replacing one of another type) and
// returns its OpenFlow number once OVS has allocated it.
func (r *Reconciler) ensureTunnel(ctx context.Context) (uint32, error) {
	typ := string(r.cfg.Mode)
	name := r.cfg.TunnelName
	iface, exists, err := r.cfg.DB.Interface(name)
	if err != nil {
		return 0, fmt.Errorf("tunnel port %s: %w", name, err)
	}
	var ref ports.Ref
	switch {
	case exists && iface.Type == typ && iface.Options["remote_ip"] == "flow":
		ref = ports.Existing(name, iface.UUID)
	default:
		if exists {
			// Another mode's tunnel (the traffic mode changed).
			if err := r.cfg.DB.DeletePorts(ctx, r.cfg.Bridge, name); err != nil {
				return 0, fmt.Errorf("replace tunnel port %s of type %s: %w", name, iface.Type, err)
			}
		}
		ref = r.cfg.Ports.Expect(name)
		added, err := r.cfg.DB.AddPort(ctx, r.cfg.Bridge, ovsdb.PortSpec{Name: name, Type: typ,
			Options:     map[string]string{"remote_ip": "flow"},
			ExternalIDs: map[string]string{"ovsnet.io/role": "tunnel"}})
		if err != nil {
			return 0, fmt.Errorf("create %s tunnel port %s: %w", typ, name, err)
		}
		ref.InterfaceUUID = added.InterfaceUUID
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rdy, err := r.cfg.Ports.WaitPort(wctx, ref, ports.Allocated)
	if err != nil {
		return 0, fmt.Errorf("tunnel port %s: %w", name, err)
	}
	return rdy.OFPort, nil
}

func (r *Reconciler) removeTunnel(ctx context.Context) error {
	if _, exists, err := r.cfg.DB.Interface(r.cfg.TunnelName); err != nil || !exists {
		return err
	}
	if err := r.cfg.DB.DeletePorts(ctx, r.cfg.Bridge, r.cfg.TunnelName); err != nil {
		return fmt.Errorf("remove tunnel port %s (traffic mode %s): %w", r.cfg.TunnelName, r.cfg.Mode, err)
	}
	return nil
}

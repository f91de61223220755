// Package agent wires ovsnet's node agent together and runs its start-up
// state machine (loop.go): OVSDB reachable -> bridge applied by a live
// ovs-vswitchd -> datapath features known -> OpenFlow session on the same
// datapath -> gateway and flows in -> ready. It never exits on a transient
// condition; it reports where it waits, and falls back to an earlier state
// when OVS goes away under it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/crossnode"
	"github.com/ovsnet/ovsnet/internal/gateway"
	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/k8s"
	"github.com/ovsnet/ovsnet/internal/keyqueue"
	"github.com/ovsnet/ovsnet/internal/ovs/bridgegate"
	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/podnet"
	"github.com/ovsnet/ovsnet/internal/pods"
	"github.com/ovsnet/ovsnet/internal/policy"
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
	// HealthAddr is where /healthz, /readyz, /metrics and the operator API
	// are served.
	HealthAddr string

	// PodCIDR is the node's pod subnet; its first address is the gateway.
	// Empty: pods cannot be attached (the bridge is still managed).
	PodCIDR string
	// NodeIP, if set, is the SNAT source for pod traffic leaving the node;
	// otherwise the outgoing interface's address is used (masquerade).
	NodeIP string
	// StateDir holds the IPAM state.
	StateDir string
	// CNISocket is where the CNI plugin reaches the agent.
	CNISocket string
	// AsyncInterfaces: ADD declares the port and returns; flows follow when
	// the interface appears.
	AsyncInterfaces bool
	// MTU of pod interfaces and the gateway; 0 derives it from the
	// uplink's MTU minus the traffic mode's overhead.
	MTU int
	// TrafficMode is how pods reach other nodes: noencap, geneve or vxlan.
	TrafficMode string
	// ClusterCIDR, if set, is exempt from the masquerade (beside every
	// node's pod CIDR, which always is).
	ClusterCIDR string
	// PeersFile lists the other nodes in standalone mode.
	PeersFile string
	// Uplink is the interface holding the node's address (default: found
	// by the node address).
	Uplink string
	// UplinkBridge is the OVS bridge that takes the node's address for
	// tunnels on the userspace datapath.
	UplinkBridge string
	// GatewayName is the gateway's OVS internal port.
	GatewayName string

	// Kubeconfig selects Kubernetes mode with a kubeconfig file; Kubernetes
	// mode is also on when the agent runs in a pod (in-cluster config).
	Kubeconfig string
	// NodeName is this node's Kubernetes name (default: $NODE_NAME).
	NodeName string
	// Standalone forces standalone mode even inside a cluster.
	Standalone bool

	// HostNetns, for tests, is the namespace where ovs-vswitchd runs when it
	// is not the agent's own. Not a flag.
	HostNetns string
	// PlumbHook, for tests of the asynchronous mode. Not a flag.
	PlumbHook func(context.Context, attachments.Attachment)
	// PolicySource, for tests, enforces NetworkPolicy from a source of
	// the test's in standalone mode. Not a flag.
	PolicySource policy.Source

	// NetworkPolicy enforces Kubernetes NetworkPolicy (Kubernetes mode).
	NetworkPolicy bool
	// ServiceCIDRs are the cluster's Service address ranges (comma
	// separated): a pod's packet to one is checked against egress policy
	// after the host's NAT, not before.
	ServiceCIDRs string
}

// Defaults are the documented flag defaults.
func Defaults() Config {
	return Config{
		OVSDB:         ovsdb.DefaultEndpoint,
		OVSRunDir:     "/run/openvswitch",
		Bridge:        "br-int",
		DatapathType:  "system",
		HealthAddr:    "127.0.0.1:9364",
		StateDir:      ipam.DefaultStateDir,
		CNISocket:     cniapi.DefaultSocket,
		TrafficMode:   string(crossnode.Geneve),
		NetworkPolicy: true,
		ServiceCIDRs:  "10.96.0.0/12",
		UplinkBridge:  "br-phy",
		GatewayName:   gateway.DefaultName,
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
	if c.kubernetes() && c.NodeName == "" {
		return errors.New("kubernetes mode needs the node name: set --node-name or NODE_NAME")
	}
	if c.servesPods() {
		if c.CNISocket == "" {
			return errors.New("--cni-socket is empty: give the socket path the CNI plugin dials")
		}
		if c.StateDir == "" {
			return errors.New("--state-dir is empty: give a directory for the IPAM state")
		}
	}
	if c.PodCIDR != "" {
		p, err := netip.ParsePrefix(c.PodCIDR)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 || p.Masked() != p {
			return fmt.Errorf("--pod-cidr %q: want an IPv4 subnet of /30 or larger with host bits zero, e.g. 10.244.0.0/24", c.PodCIDR)
		}
	}
	if c.NodeIP != "" {
		if a, err := netip.ParseAddr(c.NodeIP); err != nil || !a.Is4() {
			return fmt.Errorf("--node-ip %q: want an IPv4 address", c.NodeIP)
		}
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65000) {
		return fmt.Errorf("--mtu %d: want 576 to 65000, or 0 to derive it from the uplink", c.MTU)
	}
	if _, err := crossnode.ParseMode(c.TrafficMode); err != nil {
		return fmt.Errorf("--traffic-mode: %w", err)
	}
	if c.ClusterCIDR != "" {
		if p, err := netip.ParsePrefix(c.ClusterCIDR); err != nil || !p.Addr().Is4() || p.Masked() != p {
			return fmt.Errorf("--cluster-cidr %q: want an IPv4 subnet with host bits zero, e.g. 10.244.0.0/16", c.ClusterCIDR)
		}
	}
	if c.PeersFile != "" && c.kubernetes() {
		return errors.New("--peers-file is for standalone mode; in Kubernetes mode the peers are the Node objects")
	}
	if _, err := c.serviceCIDRs(); err != nil {
		return err
	}
	if c.UplinkBridge == "" || len(c.UplinkBridge) > 15 {
		return fmt.Errorf("--uplink-bridge %q: want a name of 1 to 15 characters", c.UplinkBridge)
	}
	return nil
}

func (c Config) serviceCIDRs() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(c.ServiceCIDRs, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("--service-cidr %q: want IPv4 subnets, comma separated, e.g. 10.96.0.0/12", c.ServiceCIDRs)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c Config) mode() crossnode.Mode { m, _ := crossnode.ParseMode(c.TrafficMode); return m }

// Agent is one node agent. Create it with New, run it with Run.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	status   *health.Tracker
	db       *ovsdb.Client
	vswitchd *unixctl.Client
	// nft is the agent's nftables handle (gateway NAT and filter).
	nft     *gateway.NFT
	gate    *bridgegate.Gate
	of      *ofconn.Conn
	ports   *ports.Table
	flows   *pipeline.Manager
	network pipeline.Network // zero without a pod CIDR
	ipam    *ipam.Allocator
	pods    *pods.Service
	cluster *k8s.Cluster // nil in standalone mode
	metrics *metrics
	// queue lines up everything done to one container: the runtime's CNI
	// requests and the agent's own garbage collection and plumbing.
	queue *keyqueue.Queue
	// podsStarted is set once the pod service runs (after the restore).
	podsStarted atomic.Bool

	// handler serves CNI from the start, answering "not ready" until the
	// pod network exists (in Kubernetes mode it waits for the Node's CIDR).
	handler *lazyHandler

	// healthAddr is the bound health address, known once Run has started.
	healthAddr chan net.Addr

	// bg tracks the loop's background tasks; Run waits for them.
	bg sync.WaitGroup

	mu     sync.Mutex
	bridge *bridgegate.Result // last gate result; nil until the first pass
	gw     *gateway.Gateway
	// mtu is the pod and gateway MTU in use (set with the pod network).
	mtu int
	// cross reaches the other nodes (nil until the pod network exists).
	cross *crossnode.Reconciler
	// policySrc and policy enforce NetworkPolicy (nil when off).
	policySrc policy.Source
	policy    *policy.Controller
	// tso: ovs-vswitchd runs with other_config:userspace-tso-enable.
	tso atomic.Bool
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
		flows:      pipeline.NewManager(log.With("component", "pipeline")),
		handler:    &lazyHandler{},
		queue:      keyqueue.New(),
	}
	db, err := ovsdb.New(ovsdb.Config{Endpoint: cfg.OVSDB, Logger: log.With("component", "ovsdb")})
	if err != nil {
		return nil, fmt.Errorf("--ovsdb: %w", err)
	}
	a.db = db
	a.ports = ports.New(db)
	a.nft = gateway.NewNFT()
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
	a.of, err = ofconn.New(ofconn.Config{Bridge: cfg.Bridge, RunDir: cfg.OVSRunDir, Ports: a.ports,
		Logger: log.With("component", "openflow")})
	if err != nil {
		return nil, err
	}
	if cfg.kubernetes() {
		a.cluster, err = k8s.New(k8s.Config{Kubeconfig: cfg.Kubeconfig, NodeName: cfg.NodeName,
			Logger: log.With("component", "kubernetes")})
		if err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.PolicySource != nil:
		a.policySrc = cfg.PolicySource
	case a.cluster != nil && cfg.NetworkPolicy:
		a.policySrc = a.cluster.NewPolicySource()
	}
	if cfg.PodCIDR != "" {
		if err := a.setupPodNetwork(netip.MustParsePrefix(cfg.PodCIDR)); err != nil {
			return nil, err
		}
	}
	a.metrics = newMetrics(a, reg)
	// Liveness: a wedged loop, not a slow or absent OVS (readiness says
	// that), fails /healthz. The bounds are far above the loops' own
	// heartbeats (OpenFlow keepalive 2 s + 4 s, reconciler 5 s).
	a.status.AddLiveness("openflow-reader", func() error { return a.of.Alive(livenessBound) })
	a.status.AddLiveness("pod-reconciler", func() error {
		if p := a.podService(); p != nil {
			return p.Alive(livenessBound)
		}
		return nil
	})
	return a, nil
}

// livenessBound is how long a loop may make no progress before /healthz
// reports the agent unhealthy.
const livenessBound = 60 * time.Second

// kubernetes reports whether the agent runs in Kubernetes mode.
func (c Config) kubernetes() bool {
	return !c.Standalone && (c.Kubeconfig != "" || k8s.InCluster())
}

// servesPods reports whether the agent will attach pods: it has a pod CIDR
// now, or will learn it from its Node.
func (c Config) servesPods() bool { return c.PodCIDR != "" || c.kubernetes() }

func (a *Agent) setupPodNetwork(cidr netip.Prefix) error {
	alloc, err := ipam.New(ipam.Config{CIDR: cidr, StateDir: a.cfg.StateDir, Log: a.log.With("component", "ipam")})
	if err != nil {
		return fmt.Errorf("IPAM: %w", err)
	}
	mtu, err := a.podMTU()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ipam = alloc
	a.mtu = mtu
	a.network = pipeline.Network{PodCIDR: cidr, GatewayIP: alloc.Gateway(), GatewayMAC: podnet.MACFromIP(alloc.Gateway())}
	a.cross = a.newCrossnode()
	a.pods = pods.New(pods.Config{
		Bridge:  a.cfg.Bridge,
		Network: a.network,
		MTU:     mtu,
		// The userspace datapath does not complete the partial checksums
		// a veth hands over, unless ovs-vswitchd runs with
		// userspace-tso-enable (then pods keep their offloads).
		TxChecksumOffloadOff: func() bool { return a.cfg.DatapathType == "netdev" && !a.tso.Load() },
		QuietHostEnds:        a.cfg.DatapathType == "netdev",
		BeforeReady:          a.waitPolicy,
		AsyncInterfaces:      a.cfg.AsyncInterfaces,
		HostNetns:            a.cfg.HostNetns,
		IPAM:                 alloc,
		Plumber:              podnet.New(a.log.With("component", "podnet"), podnet.WithHostNetns(a.cfg.HostNetns)),
		DB:                   a.db,
		Ports:                a.ports,
		Flows:                a.flows,
		Queue:                a.queue,
		Ready:                a.status.Ready,
		Logger:               a.log.With("component", "pods"),
		PlumbHook:            a.cfg.PlumbHook,
		OnAddFailure:         a.podEvent,
		ObservePhase: func(phase string, d time.Duration) {
			a.metrics.addPhase.WithLabelValues(phase).Observe(d.Seconds())
		},
	})
	if a.policySrc != nil {
		a.policy = a.newPolicy()
	}
	return nil
}

// podEvent records a Kubernetes Event on a pod whose network setup failed.
func (a *Agent) podEvent(pod cniapi.PodRef, err error) {
	if a.cluster != nil {
		a.cluster.PodEvent(pod.Namespace, pod.Name, pod.UID, "NetworkSetupFailed", "ovsnet: "+err.Error())
	}
}

// Status is the agent's readiness tracker.
func (a *Agent) Status() *health.Tracker { return a.status }

// Pods is the pod attachment service (nil until the pod CIDR is known).
func (a *Agent) Pods() *pods.Service { return a.podService() }

func (a *Agent) podService() *pods.Service {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pods
}

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

// Run runs the agent until ctx ends. It returns an error only for what an
// operator must fix before a restart can help (a taken health port or CNI
// socket); everything OVS does is waited out.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, served, err := health.Serve(ctx, a.cfg.HealthAddr, a.httpHandler(), a.log)
	if err != nil {
		return err
	}
	a.healthAddr <- addr

	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.bg.Wait()
	defer cancel()
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("agent part stopped", "part", name, "err", err)
			}
		}()
	}
	run("ovsdb", a.db.Run)
	run("openflow", a.of.Run)

	if a.cluster != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.cluster.Run(ctx) }()
	}
	if r, ok := a.policySrc.(interface{ Run(context.Context) error }); ok && a.cfg.PolicySource == nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(ctx) }()
	}
	fatal := make(chan error, 2)
	if a.cfg.servesPods() {
		srv := cniserver.New(cniserver.Config{SocketPath: a.cfg.CNISocket, Queue: a.queue}, a.handler, a.log.With("component", "cniserver"))
		ln, err := cniserver.Listen(a.cfg.CNISocket)
		if err != nil {
			return fmt.Errorf("CNI socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
				fatal <- fmt.Errorf("CNI server: %w", err)
			}
		}()
	}

	a.log.Info("ovsnet agent starting", "bridge", a.cfg.Bridge, "datapath_type", a.cfg.DatapathType,
		"ovsdb", a.cfg.OVSDB, "ovs_rundir", a.cfg.OVSRunDir, "pod_cidr", a.cfg.PodCIDR,
		"async_interfaces", a.cfg.AsyncInterfaces)
	loopDone := make(chan struct{})
	go func() { a.loop(ctx); close(loopDone) }()
	select {
	case err := <-served:
		cancel()
		<-loopDone
		if err != nil {
			return fmt.Errorf("health server: %w", err)
		}
		return nil
	case err := <-fatal:
		cancel()
		<-loopDone
		return err
	case <-loopDone:
		return nil
	}
}

// FlowRound is the cookie round of the installed flows.
func (a *Agent) FlowRound() uint16 { return a.flows.Round() }

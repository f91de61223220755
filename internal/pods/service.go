// Package pods attaches pods to the OVS bridge: it serves the CNI verbs
// (IPAM, pod plumbing, the OVS port and its flows), keeps its state where it
// survives the agent (OVSDB external_ids, the IPAM file), and reconciles pod
// flows from two facts: the pod is declared, and its port is ready.
//
// Who writes what:
//   - The attachment store (package attachments) is the record of every
//     attachment; everything here changes it through its methods.
//   - Every change to one attachment (the runtime's ADD, DEL and CHECK, CNI
//     GC, garbage collection of deleted pods and vanished sandboxes,
//     background plumbing, re-creation of a lost OVS port) runs in that
//     container's turn of the agent's keyed queue, so none of them
//     interleave; different containers proceed in parallel.
//   - The reconciler (reconcile.go) is the only writer of pod flows. It is
//     level-triggered over the store and the port table, and reports per
//     attachment generation whether the flows are in; ADD waits for "in",
//     DEL for "out", before they go on.
package pods

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/keyqueue"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// External-id keys ovsnet writes on the Port and Interface rows of a pod.
// They are the durable record of the attachment.
const (
	KeyContainerID  = "ovsnet.io/container-id"
	KeyIfName       = "ovsnet.io/ifname"
	KeyNetns        = "ovsnet.io/netns"
	KeyNetwork      = "ovsnet.io/network"
	KeyPodNamespace = "ovsnet.io/pod-namespace"
	KeyPodName      = "ovsnet.io/pod-name"
	KeyPodUID       = "ovsnet.io/pod-uid"
	KeyIP           = "ovsnet.io/ip"
	KeyMAC          = "ovsnet.io/mac"
	KeyCreated      = "ovsnet.io/created"
)

// IPAM is the part of the address allocator the service uses
// (*ipam.Allocator).
type IPAM interface {
	Allocate(owner ipam.Owner, meta ipam.Meta) (ipam.Allocation, error)
	Release(owner ipam.Owner) (netip.Addr, error)
	Lookup(owner ipam.Owner) (ipam.Allocation, bool)
	Reserve(ip netip.Addr, owner ipam.Owner, meta ipam.Meta) error
	Retain(keep func(ipam.Owner) bool) ([]ipam.Allocation, error)
	Allocations() []ipam.Allocation
	Exhausted() error
}

// DB is the part of the OVSDB client the service uses (*ovsdb.Client).
type DB interface {
	Interface(name string) (vswitch.Interface, bool, error)
	Interfaces(keep func(*vswitch.Interface) bool) ([]vswitch.Interface, error)
	AddPort(ctx context.Context, bridge string, spec ovsdb.PortSpec) (ovsdb.AddedPort, error)
	DeletePorts(ctx context.Context, bridge string, names ...string) error
	Connected() (bool, error)
	ConnectionSeq() uint64
	Changed() <-chan struct{}
	OnInterfaceChange(func(name string))
}

// Config wires the service to the agent's parts.
type Config struct {
	Bridge  string
	Network pipeline.Network
	MTU     int
	// TxChecksumOffloadOff, asked at each ADD, says whether to turn TX
	// checksum offload off on the pod end: the userspace datapath needs it
	// (TCP between pods fails otherwise) unless it runs with
	// userspace-tso-enable. Nil: keep the offloads.
	TxChecksumOffloadOff func() bool
	// QuietHostEnds is set for the userspace datapath (see
	// podnet.Config.QuietHostEnd).
	QuietHostEnds bool
	// BeforeReady, if set, runs before ADD answers, after the pod's own
	// flows are in: NetworkPolicy installs the pod's policy flows there, so
	// that a new pod is never briefly open to what its policies deny.
	BeforeReady func(ctx context.Context, a attachments.Attachment) error
	// AsyncInterfaces: ADD declares the port and returns; the interface is
	// created afterwards and flows follow when OVS reports the port (the
	// model of platforms where the runtime creates the NIC after ADD).
	AsyncInterfaces bool
	// HostNetns is where host veth ends go (empty: the agent's namespace).
	HostNetns string

	IPAM    IPAM
	Plumber podnet.Plumber
	DB      DB
	Ports   *ports.Table
	Flows   *pipeline.Manager
	// Queue is the per-container line shared with the CNI server (which
	// calls Add, Del and Check in the container's turn). Default: a new
	// one, for a service driven without the server.
	Queue *keyqueue.Queue
	// Ready returns nil when the agent can attach pods, else why not.
	Ready  func() error
	Logger *slog.Logger
	// ObservePhase receives the duration of each ADD phase (metrics); it
	// must not block.
	ObservePhase func(phase string, d time.Duration)
	// OnAddFailure is told when ADD fails for a pod (for a Kubernetes
	// Event); it must not block.
	OnAddFailure func(pod cniapi.PodRef, err error)
	// PlumbHook, for tests of the asynchronous mode, runs before the
	// background plumbing of an interface and may hold it back.
	PlumbHook func(ctx context.Context, a attachments.Attachment)
	// RetryMin and RetryMax pace the reconciler's retries of an owner whose
	// flows failed (defaults 20 ms and 10 s).
	RetryMin, RetryMax time.Duration
	// Heartbeat is how often the idle reconciler reports that it is alive
	// (default 5 s); see Alive.
	Heartbeat time.Duration
}

// Service implements cniserver.Handler.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *attachments.Store
	queue *keyqueue.Queue

	// syncReq asks the reconciler for a full pass; it closes the channel
	// it is sent once the pass is done.
	syncReq chan chan struct{}
	// alive is the reconciler's last heartbeat (unix nanoseconds).
	alive atomic.Int64
	// newAttachment tells the sandbox watcher to look at new directories.
	newAttachment chan struct{}
	// restorerKick asks the port restorer for a full pass.
	restorerKick chan struct{}

	bg sync.WaitGroup // background plumbing and garbage collection
}

// New returns a service; call Restore before serving and Run for the
// reconciler.
func New(cfg Config) *Service {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MTU == 0 {
		cfg.MTU = podnet.DefaultMTU
	}
	if cfg.Queue == nil {
		cfg.Queue = keyqueue.New()
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 20 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = 10 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	s := &Service{cfg: cfg, log: log, store: attachments.New(), queue: cfg.Queue,
		syncReq: make(chan chan struct{}), newAttachment: make(chan struct{}, 1), restorerKick: make(chan struct{}, 1)}
	return s
}

// Store is the attachment store.
func (s *Service) Store() *attachments.Store { return s.store }

// Attachments returns a snapshot of every attachment, for the CLI.
func (s *Service) Attachments() []attachments.Attachment { return s.store.List() }

// WaitAttachments blocks until cond holds for the current attachments,
// re-checking whenever one changes, or ctx ends.
func (s *Service) WaitAttachments(ctx context.Context, cond func([]attachments.Attachment) bool) error {
	return s.store.WaitAll(ctx, cond)
}

// Run runs the flow reconciler and the OVS port restorer until ctx ends,
// then waits for background work.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.restorePorts(ctx) }()
	s.reconcileLoop(ctx)
	wg.Wait()
	s.bg.Wait()
	return nil
}

// Wait blocks until background plumbing has finished (shutdown, tests).
func (s *Service) Wait() { s.bg.Wait() }

// Alive returns nil while the reconciler makes progress: it beats at least
// every Config.Heartbeat when idle and after every pass. A beat older than
// bound means the loop is wedged (a pass that does not end), which the
// agent's /healthz reports so that the kubelet restarts it.
func (s *Service) Alive(bound time.Duration) error {
	beat := s.alive.Load()
	if beat == 0 {
		return nil // not started
	}
	last := time.Unix(0, beat)
	if age := time.Since(last); age > bound {
		return fmt.Errorf("pod flow reconciler has not made progress for %s (bound %s)", age.Round(time.Millisecond), bound)
	}
	return nil
}

// Sync runs a full reconciler pass and returns when it is done: the flow
// manager's desired state then reflects every attachment against the
// current port table. The agent calls it after an OpenFlow session starts
// and before it installs the flows, so that a port renumbered by an
// ovs-vswitchd restart never gets its predecessor's flows back.
func (s *Service) Sync(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case s.syncReq <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) podnetConfig(a attachments.Attachment) podnet.Config {
	return podnet.Config{
		NetnsPath: a.Netns, IfName: a.IfName, HostIfName: a.HostIfName, MAC: a.MAC, MTU: s.cfg.MTU,
		Address: a.IP, Gateway: s.cfg.Network.GatewayIP,
		DisableTxChecksumOffload: s.cfg.TxChecksumOffloadOff != nil && s.cfg.TxChecksumOffloadOff(),
		QuietHostEnd:             s.cfg.QuietHostEnds,
		HostNetns:                s.cfg.HostNetns,
	}
}

func netipPrefix(al ipam.Allocation, n pipeline.Network) netip.Prefix {
	return netip.PrefixFrom(al.IP, n.PodCIDR.Bits())
}

func keyOf(containerID, ifName string) attachments.Key {
	return attachments.Key{ContainerID: containerID, IfName: ifName}
}

func ownerOf(k attachments.Key) pipeline.Owner { return pipeline.PodOwner(k.ContainerID, k.IfName) }

func ipamOwner(k attachments.Key) ipam.Owner {
	return ipam.Owner{ContainerID: k.ContainerID, IfName: k.IfName}
}

// inTurn runs fn in the container's turn of the shared queue.
func (s *Service) inTurn(ctx context.Context, containerID string, fn func() error) error {
	return s.queue.Do(ctx, containerID, fn)
}

// WaitReady blocks until the attachment's port is live and its flows are
// installed, or ctx ends.
func (s *Service) WaitReady(ctx context.Context, containerID, ifName string) error {
	k := keyOf(containerID, ifName)
	_, err := s.store.Wait(ctx, k, func(a attachments.Attachment, ok bool) (bool, error) {
		if !ok {
			return false, fmt.Errorf("no attachment of container %s interface %s", containerID, ifName)
		}
		if _, live, _ := s.cfg.Ports.Check(a.Port, ports.Live); !live {
			return false, nil
		}
		return a.FlowsIn(), nil
	})
	if err != nil {
		return fmt.Errorf("attachment %s not ready: %w", k, err)
	}
	return nil
}

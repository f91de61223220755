// Package pods attaches pods to the OVS bridge: it serves the CNI verbs
// (IPAM, pod plumbing, the OVS port and its flows), keeps its state where it
// survives the agent (OVSDB external_ids, the IPAM file), and reconciles pod
// flows from two facts: the pod is declared, and its port is ready.
package pods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
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
	KeyPodNamespace = "ovsnet.io/pod-namespace"
	KeyPodName      = "ovsnet.io/pod-name"
	KeyPodUID       = "ovsnet.io/pod-uid"
	KeyIP           = "ovsnet.io/ip"
	KeyMAC          = "ovsnet.io/mac"
	KeyCreated      = "ovsnet.io/created"
)

// Config wires the service to the agent's parts.
type Config struct {
	Bridge  string
	Network pipeline.Network
	MTU     int
	// DisableTxChecksumOffload is set for the userspace datapath, where TCP
	// between pods fails with checksum offload on.
	DisableTxChecksumOffload bool
	// AsyncInterfaces: ADD declares the port and returns; the interface is
	// created afterwards and flows follow when OVS reports the port (the
	// model of platforms where the runtime creates the NIC after ADD).
	AsyncInterfaces bool
	// HostNetns is where host veth ends go (empty: the agent's namespace).
	HostNetns string

	IPAM    *ipam.Allocator
	Plumber podnet.Plumber
	DB      *ovsdb.Client
	Ports   *ports.Table
	Flows   *pipeline.Manager
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
	PlumbHook func(ctx context.Context, a *Attachment)
}

// Service implements cniserver.Handler.
type Service struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	byKey map[key]*Attachment
	byIf  map[string]*Attachment // by host interface name
	kick  chan struct{}
	queue map[string]struct{} // host ifnames to reconcile
	// newAttachment tells the sandbox watcher to look at new directories.
	newAttachment chan struct{}
	// changed is closed and replaced whenever an attachment comes or goes.
	changed chan struct{}

	bg sync.WaitGroup // background plumbing (async mode)
}

type key struct{ containerID, ifName string }

var _ cniserver.Handler = (*Service)(nil)

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
	return &Service{cfg: cfg, log: log, byKey: map[key]*Attachment{}, byIf: map[string]*Attachment{},
		kick: make(chan struct{}, 1), queue: map[string]struct{}{}, newAttachment: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Attachments returns a snapshot of every attachment, for the CLI.
func (s *Service) Attachments() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(s.byKey))
	for _, a := range s.byKey {
		out = append(out, a.snapshot())
	}
	return out
}

func (s *Service) lookup(containerID, ifName string) *Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[key{containerID, ifName}]
}

func (s *Service) register(a *Attachment) {
	s.mu.Lock()
	s.byKey[key{a.ContainerID, a.IfName}] = a
	s.byIf[a.HostIfName] = a
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.enqueue(a.HostIfName)
	select {
	case s.newAttachment <- struct{}{}:
	default:
	}
}

func (s *Service) unregister(a *Attachment) {
	s.mu.Lock()
	if s.byKey[key{a.ContainerID, a.IfName}] == a {
		delete(s.byKey, key{a.ContainerID, a.IfName})
	}
	if s.byIf[a.HostIfName] == a {
		delete(s.byIf, a.HostIfName)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Status implements the CNI STATUS verb.
func (s *Service) Status(context.Context) error {
	if err := s.cfg.Ready(); err != nil {
		return cniserver.NotReady(err.Error())
	}
	return nil
}

// Add implements CNI ADD.
func (s *Service) Add(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
	if err := s.cfg.Ready(); err != nil {
		return nil, cniserver.NotReady(err.Error())
	}
	if a := s.lookup(req.ContainerID, req.IfName); a != nil {
		if a.Netns != req.Netns {
			return nil, types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("container %s interface %s is already attached in netns %s", req.ContainerID, req.IfName, a.Netns),
				"delete the attachment (CNI DEL) before adding it in another namespace")
		}
		// A repeated ADD (a runtime retry) gets the same answer once ready.
		return s.finishAdd(ctx, a)
	}
	a, err := s.declare(ctx, req)
	if err == nil {
		var res *current.Result
		res, err = s.finishAdd(ctx, a)
		if err == nil {
			return res, nil
		}
	}
	if s.cfg.OnAddFailure != nil && req.Pod.Name != "" {
		s.cfg.OnAddFailure(req.Pod, err)
	}
	return nil, err
}

// declare allocates the address, plumbs the interface (unless asynchronous)
// and adds the port with its external ids. On failure it undoes what it did.
func (s *Service) declare(ctx context.Context, req *cniapi.Request) (a *Attachment, err error) {
	owner := ipam.Owner{ContainerID: req.ContainerID, IfName: req.IfName}
	a = &Attachment{
		ContainerID: req.ContainerID, IfName: req.IfName, Netns: req.Netns, Pod: req.Pod,
		HostIfName: podnet.HostIfName(req.ContainerID, req.IfName),
		Created:    time.Now(), Async: s.cfg.AsyncInterfaces, observe: s.cfg.ObservePhase,
	}
	defer func() {
		if err != nil {
			s.rollback(a)
		}
	}()

	t := a.phase("ipam")
	alloc, err := s.cfg.IPAM.Allocate(owner, ipam.Meta{PodNamespace: req.Pod.Namespace, PodName: req.Pod.Name})
	t.end()
	if err != nil {
		code := uint(types.ErrInternal)
		if errors.Is(err, ipam.ErrExhausted) {
			code = types.ErrTryAgainLater
		}
		return a, types.NewError(code, "allocate pod address: "+err.Error(), "")
	}
	a.allocated = true
	a.IP = netip.PrefixFrom(alloc.IP, s.cfg.Network.PodCIDR.Bits())
	a.MAC = podnet.MACFromIP(alloc.IP)

	if !a.Async {
		t = a.phase("plumbing")
		res, err := s.cfg.Plumber.Setup(ctx, s.podnetConfig(a))
		t.end()
		if err != nil {
			return a, types.NewError(types.ErrInternal, "set up pod interface: "+err.Error(), "")
		}
		a.setPlumbed(res.HostMAC)
	}

	t = a.phase("ovsdb")
	a.ref = s.cfg.Ports.Expect(a.HostIfName)
	if iface, ok, _ := s.cfg.DB.Interface(a.HostIfName); ok {
		// A port left by an earlier attempt of this very container (a crash
		// between the port and the reply) is reused; anything else in the
		// way is removed, since the name derives from this attachment.
		if iface.ExternalIDs[KeyContainerID] == a.ContainerID && iface.ExternalIDs[KeyIP] == a.IP.String() {
			a.ref = ports.Existing(a.HostIfName, iface.UUID)
		} else if err := s.cfg.DB.DeletePorts(ctx, s.cfg.Bridge, a.HostIfName); err != nil {
			return a, types.NewError(types.ErrInternal, "remove stale port "+a.HostIfName+": "+err.Error(), "")
		}
	}
	if a.ref.InterfaceUUID == "" {
		added, err := s.cfg.DB.AddPort(ctx, s.cfg.Bridge, ovsdb.PortSpec{Name: a.HostIfName, ExternalIDs: a.externalIDs()})
		if err != nil {
			t.end()
			return a, types.NewError(types.ErrInternal, "add OVS port: "+err.Error(), "")
		}
		a.ref.InterfaceUUID = added.InterfaceUUID
	}
	t.end()
	a.ported = true
	s.register(a)

	if a.Async {
		s.plumbLater(a)
	}
	return a, nil
}

// finishAdd waits, bounded only by the request's deadline, until the port
// is live and the reconciler has installed its flows (or, asynchronously,
// returns at once), then answers.
func (s *Service) finishAdd(ctx context.Context, a *Attachment) (*current.Result, error) {
	if !a.Async {
		t := a.phase("port-ready")
		_, err := s.cfg.Ports.WaitPort(ctx, a.ref, ports.Live)
		t.end()
		if err != nil {
			return nil, types.NewError(types.ErrTryAgainLater, "pod port not ready: "+err.Error(),
				"OVS has not reported the port live before the runtime's deadline; the runtime retries")
		}
		t = a.phase("flows")
		err = s.cfg.Flows.WaitInstalled(ctx, a.owner())
		t.end()
		if err != nil {
			return nil, types.NewError(types.ErrTryAgainLater, "pod flows not installed: "+err.Error(), "")
		}
		a.markReady()
	}
	return s.result(a), nil
}

// plumbLater creates the interface after ADD has returned; OVS then picks up
// the declared port and the reconciler installs the flows.
func (s *Service) plumbLater(a *Attachment) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if s.cfg.PlumbHook != nil {
			s.cfg.PlumbHook(ctx, a)
		}
		res, err := s.cfg.Plumber.Setup(ctx, s.podnetConfig(a))
		if err != nil {
			s.log.Error("asynchronous pod interface setup failed", "container", a.ContainerID, "ifname", a.IfName, "err", err)
			a.setAsyncErr(err)
			return
		}
		a.setPlumbed(res.HostMAC)
	}()
}

func (s *Service) podnetConfig(a *Attachment) podnet.Config {
	return podnet.Config{
		NetnsPath: a.Netns, IfName: a.IfName, HostIfName: a.HostIfName, MAC: a.MAC, MTU: s.cfg.MTU,
		Address: a.IP, Gateway: s.cfg.Network.GatewayIP, DisableTxChecksumOffload: s.cfg.DisableTxChecksumOffload,
		HostNetns: s.cfg.HostNetns,
	}
}

func (s *Service) result(a *Attachment) *current.Result {
	hostMAC := ""
	if a.hostMAC() != nil {
		hostMAC = a.hostMAC().String()
	}
	idx := 1
	return &current.Result{
		CNIVersion: cniapi.CurrentCNIVersion,
		Interfaces: []*current.Interface{
			{Name: a.HostIfName, Mac: hostMAC},
			{Name: a.IfName, Mac: a.MAC.String(), Sandbox: a.Netns},
		},
		IPs: []*current.IPConfig{{
			Address:   net.IPNet{IP: a.IP.Addr().AsSlice(), Mask: net.CIDRMask(a.IP.Bits(), a.IP.Addr().BitLen())},
			Gateway:   s.cfg.Network.GatewayIP.AsSlice(),
			Interface: &idx,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: s.cfg.Network.GatewayIP.AsSlice()}},
	}
}

// Del implements CNI DEL: it removes whatever exists and succeeds when
// nothing does.
func (s *Service) Del(ctx context.Context, req *cniapi.Request) error {
	a := s.lookup(req.ContainerID, req.IfName)
	if a == nil {
		// Unknown to this agent (already deleted, or never added here):
		// clean up by the deterministic names anyway.
		a = &Attachment{ContainerID: req.ContainerID, IfName: req.IfName, Netns: req.Netns,
			HostIfName: podnet.HostIfName(req.ContainerID, req.IfName), allocated: true, ported: true, plumbed: true}
	} else if req.Netns != "" {
		a.Netns = req.Netns
	}
	if err := s.teardown(ctx, a); err != nil {
		return types.NewError(types.ErrInternal, err.Error(), "the runtime retries DEL")
	}
	return nil
}

// rollback undoes a failed ADD with a fresh context: the request's may be
// the reason it failed.
func (s *Service) rollback(a *Attachment) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.teardown(ctx, a); err != nil {
		s.log.Warn("rolling back a failed ADD left something behind; DEL or GC will retry", "container", a.ContainerID, "err", err)
	}
}

func (s *Service) teardown(ctx context.Context, a *Attachment) error {
	s.unregister(a)
	var errs []error
	if err := s.cfg.Flows.Remove(ctx, a.owner()); err != nil && !errors.Is(err, pipeline.ErrNoSession) {
		errs = append(errs, err)
	}
	if a.ported {
		if err := s.cfg.DB.DeletePorts(ctx, s.cfg.Bridge, a.HostIfName); err != nil {
			errs = append(errs, fmt.Errorf("delete OVS port %s: %w", a.HostIfName, err))
		}
	}
	if a.plumbed || a.Async {
		if err := s.cfg.Plumber.Teardown(ctx, a.Netns, a.IfName, a.HostIfName); err != nil {
			errs = append(errs, fmt.Errorf("delete pod interface: %w", err))
		}
	}
	if a.allocated {
		if _, err := s.cfg.IPAM.Release(ipam.Owner{ContainerID: a.ContainerID, IfName: a.IfName}); err != nil {
			errs = append(errs, fmt.Errorf("release address: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Check implements CNI CHECK.
func (s *Service) Check(ctx context.Context, req *cniapi.Request) error {
	a := s.lookup(req.ContainerID, req.IfName)
	if a == nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("no attachment of container %s interface %s", req.ContainerID, req.IfName), "")
	}
	if req.PrevResult != nil {
		found := false
		for _, ip := range req.PrevResult.IPs {
			if p, ok := netip.AddrFromSlice(ip.Address.IP); ok && p.Unmap() == a.IP.Addr() {
				found = true
			}
		}
		if !found {
			return types.NewError(types.ErrInternal, fmt.Sprintf("prevResult does not hold the pod's address %s", a.IP), "")
		}
	}
	if err := a.asyncErr(); err != nil {
		return types.NewError(types.ErrInternal, "pod interface setup failed: "+err.Error(), "")
	}
	if _, ok, why := s.cfg.Ports.Check(a.ref, ports.Live); !ok {
		return types.NewError(types.ErrTryAgainLater, "pod port not ready yet: "+why, "")
	}
	if !s.cfg.Flows.Installed(a.owner()) {
		return types.NewError(types.ErrTryAgainLater, "pod flows not installed yet", "")
	}
	if err := s.cfg.Plumber.Check(ctx, s.podnetConfig(a)); err != nil {
		return types.NewError(types.ErrInternal, err.Error(), "")
	}
	return nil
}

// GC implements CNI GC: attachments not in the valid list are removed.
func (s *Service) GC(ctx context.Context, req *cniapi.GCRequest) error {
	valid := map[key]bool{}
	for _, v := range req.ValidAttachments {
		valid[key{v.ContainerID, v.IfName}] = true
	}
	var errs []error
	for _, a := range s.Attachments() {
		if valid[key{a.ContainerID, a.IfName}] {
			continue
		}
		if err := s.Del(ctx, &cniapi.Request{ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns}); err != nil {
			errs = append(errs, err)
		}
	}
	// Addresses without an attachment (a crash before the port existed).
	if _, err := s.cfg.IPAM.Retain(func(o ipam.Owner) bool {
		return valid[key{o.ContainerID, o.IfName}] || s.lookup(o.ContainerID, o.IfName) != nil
	}); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, "garbage collection: "+err.Error(), "")
	}
	return nil
}

// WaitAttachments blocks until cond holds for the current attachments,
// re-checking whenever one comes or goes, or ctx ends.
func (s *Service) WaitAttachments(ctx context.Context, cond func([]Info) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s.Attachments()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Wait blocks until background plumbing has finished (shutdown, tests).
func (s *Service) Wait() { s.bg.Wait() }

// WaitReady blocks until the attachment's port is live and its flows are
// installed, or ctx ends.
func (s *Service) WaitReady(ctx context.Context, containerID, ifName string) error {
	a := s.lookup(containerID, ifName)
	if a == nil {
		return fmt.Errorf("no attachment of container %s interface %s", containerID, ifName)
	}
	if _, err := s.cfg.Ports.WaitPort(ctx, a.ref, ports.Live); err != nil {
		return err
	}
	return s.cfg.Flows.WaitInstalled(ctx, a.owner())
}

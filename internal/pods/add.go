package pods

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// Status implements the CNI STATUS verb: not available (code 50) while the
// agent cannot attach pods, including when the pod CIDR is exhausted.
func (s *Service) Status(context.Context) error {
	if err := s.cfg.Ready(); err != nil {
		return cniserver.NotReady(err.Error())
	}
	if err := s.cfg.IPAM.Exhausted(); err != nil {
		return cniserver.WithCode(types.ErrPluginNotAvailable, err,
			"no new pod can get an address on this node until pods are deleted")
	}
	return nil
}

// Add implements CNI ADD. The CNI server calls it in the container's turn.
func (s *Service) Add(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
	if err := s.cfg.Ready(); err != nil {
		return nil, cniserver.NotReady(err.Error())
	}
	res, err := s.add(ctx, req)
	if err != nil && s.cfg.OnAddFailure != nil && req.Pod.Name != "" {
		s.cfg.OnAddFailure(req.Pod, err)
	}
	return res, err
}

func (s *Service) add(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
	k := keyOf(req.ContainerID, req.IfName)
	if a, ok := s.store.Get(k); ok {
		if a.State == attachments.Deleting {
			// A DEL that did not finish (its deadline passed): finish it
			// before attaching again.
			if err := s.teardown(ctx, a, req.Netns); err != nil {
				return nil, cniserver.WithCode(types.ErrTryAgainLater,
					fmt.Errorf("finish the earlier deletion of container %s interface %s: %w", req.ContainerID, req.IfName, err), "")
			}
		} else {
			if a.Netns != req.Netns {
				return nil, types.NewError(types.ErrInvalidNetworkConfig,
					fmt.Sprintf("container %s interface %s is already attached in netns %s", req.ContainerID, req.IfName, a.Netns),
					"delete the attachment (CNI DEL) before adding it in another namespace")
			}
			// A repeated ADD (a runtime retry) gets the same answer once ready.
			return s.finishAdd(ctx, a)
		}
	}
	a, err := s.declare(ctx, req)
	if err != nil {
		return nil, err
	}
	// A declared attachment that is not ready in time stays: the runtime's
	// retry of ADD waits for it again, its DEL removes it.
	return s.finishAdd(ctx, a)
}

// phase times one step of ADD into the attachment's timeline.
func (s *Service) phase(a attachments.Attachment, name string, start time.Time) {
	d := time.Since(start)
	_, _ = s.store.Annotate(a.Key, a.Incarnation, func(e *attachments.Attachment) {
		e.Timeline = append(e.Timeline, attachments.Phase{Name: name, Duration: d})
	})
	if s.cfg.ObservePhase != nil {
		s.cfg.ObservePhase(name, d)
	}
}

// declare reserves the attachment, allocates its address, plumbs the
// interface (unless asynchronous) and adds the OVS port with its external
// ids. On failure it undoes what it did.
func (s *Service) declare(ctx context.Context, req *cniapi.Request) (a attachments.Attachment, err error) {
	k := keyOf(req.ContainerID, req.IfName)
	// The entry exists before the address does: a GC that runs meanwhile
	// sees it and leaves the address alone.
	a, err = s.store.Reserve(attachments.Attachment{
		Key: k, Network: req.Network, Netns: req.Netns, Pod: req.Pod,
		HostIfName: podnet.HostIfName(req.ContainerID, req.IfName),
		Created:    time.Now(), Async: s.cfg.AsyncInterfaces,
	})
	if err != nil {
		return a, cniserver.WithCode(types.ErrInternal, fmt.Errorf("reserve attachment: %w", err),
			"another attachment uses the same host interface name; delete it first")
	}
	defer func() {
		if err != nil {
			s.rollback(a)
		}
	}()

	start := time.Now()
	alloc, err := s.cfg.IPAM.Allocate(ipamOwner(k), ipam.Meta{PodNamespace: req.Pod.Namespace, PodName: req.Pod.Name,
		PodUID: req.Pod.UID, Netns: req.Netns, Network: req.Network})
	s.phase(a, "ipam", start)
	if err != nil {
		code := uint(types.ErrInternal)
		if errors.Is(err, ipam.ErrExhausted) {
			code = types.ErrTryAgainLater
		}
		return a, cniserver.WithCode(code, fmt.Errorf("allocate pod address: %w", err), "")
	}
	if a, err = s.store.Update(k, a.Incarnation, func(e *attachments.Attachment) {
		e.IP = netipPrefix(alloc, s.cfg.Network)
		e.MAC = podnet.MACFromIP(alloc.IP)
	}); err != nil {
		return a, err
	}

	if !a.Async {
		start = time.Now()
		res, err := s.cfg.Plumber.Setup(ctx, s.podnetConfig(a))
		s.phase(a, "plumbing", start)
		if err != nil {
			return a, cniserver.WithCode(types.ErrInternal, fmt.Errorf("set up pod interface: %w", err), "")
		}
		if a, err = s.store.Annotate(k, a.Incarnation, func(e *attachments.Attachment) { e.HostMAC = res.HostMAC }); err != nil {
			return a, err
		}
	}

	start = time.Now()
	ref, err := s.addPort(ctx, a)
	s.phase(a, "ovsdb", start)
	if err != nil {
		return a, cniserver.WithCode(types.ErrInternal, err, "")
	}
	if a, err = s.store.Update(k, a.Incarnation, func(e *attachments.Attachment) {
		e.Port, e.State = ref, attachments.Plumbed
	}); err != nil {
		return a, err
	}
	select {
	case s.newAttachment <- struct{}{}:
	default:
	}
	if a.Async {
		s.plumbLater(a)
	}
	return a, nil
}

// addPort adds the attachment's OVS port, or adopts one an earlier attempt
// of this very attachment left (a crash between the port and the reply).
func (s *Service) addPort(ctx context.Context, a attachments.Attachment) (ports.Ref, error) {
	ref := s.cfg.Ports.Expect(a.HostIfName)
	if iface, ok, _ := s.cfg.DB.Interface(a.HostIfName); ok {
		if iface.ExternalIDs[KeyContainerID] == a.ContainerID && iface.ExternalIDs[KeyIP] == a.IP.String() {
			return ports.Existing(a.HostIfName, iface.UUID), nil
		}
		// Anything else in the way goes: the name derives from this
		// attachment.
		if err := s.cfg.DB.DeletePorts(ctx, s.cfg.Bridge, a.HostIfName); err != nil {
			return ref, fmt.Errorf("remove stale OVS port %s: %w", a.HostIfName, err)
		}
	}
	added, err := s.cfg.DB.AddPort(ctx, s.cfg.Bridge, ovsdb.PortSpec{Name: a.HostIfName, ExternalIDs: externalIDs(a)})
	if err != nil {
		return ref, fmt.Errorf("add OVS port %s: %w", a.HostIfName, err)
	}
	ref.InterfaceUUID = added.InterfaceUUID
	return ref, nil
}

func externalIDs(a attachments.Attachment) map[string]string {
	ids := map[string]string{
		KeyContainerID: a.ContainerID,
		KeyIfName:      a.IfName,
		KeyNetns:       a.Netns,
		KeyIP:          a.IP.String(),
		KeyMAC:         a.MAC.String(),
		KeyCreated:     strconv.FormatInt(a.Created.Unix(), 10),
	}
	if a.Network != "" {
		ids[KeyNetwork] = a.Network
	}
	if a.Pod.Namespace != "" {
		ids[KeyPodNamespace] = a.Pod.Namespace
		ids[KeyPodName] = a.Pod.Name
	}
	if a.Pod.UID != "" {
		ids[KeyPodUID] = a.Pod.UID
	}
	return ids
}

// finishAdd waits, bounded only by the request's deadline, until the port
// is live and the reconciler has installed the flows of the attachment's
// current generation (or, asynchronously, returns at once), then answers.
func (s *Service) finishAdd(ctx context.Context, a attachments.Attachment) (*current.Result, error) {
	if a.Async {
		if err := s.beforeReady(ctx, a); err != nil {
			return nil, err
		}
		return s.result(a), nil
	}
	start := time.Now()
	_, err := s.cfg.Ports.WaitPort(ctx, a.Port, ports.Live)
	s.phase(a, "port-ready", start)
	if err != nil {
		return nil, cniserver.WithCode(types.ErrTryAgainLater, fmt.Errorf("pod port not ready: %w", err),
			"OVS has not reported the port live before the runtime's deadline; the runtime retries")
	}
	start = time.Now()
	a, err = s.store.Wait(ctx, a.Key, func(cur attachments.Attachment, ok bool) (bool, error) {
		if !ok || cur.Incarnation != a.Incarnation || cur.State == attachments.Deleting {
			return false, fmt.Errorf("attachment %s was deleted while ADD waited for its flows", a.Key)
		}
		if cur.Conflict != "" {
			return false, errors.New(cur.Conflict)
		}
		if cur.Flows.Gen == cur.Gen && cur.Flows.Err != nil {
			var rej pipeline.Rejections
			if errors.As(cur.Flows.Err, &rej) {
				return false, fmt.Errorf("OVS rejected the pod's flows: %w", cur.Flows.Err)
			}
		}
		return cur.FlowsIn(), nil
	})
	s.phase(a, "flows", start)
	if err != nil {
		why := err
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			why = fmt.Errorf("%w (%s)", err, flowsPending(a))
			return nil, cniserver.WithCode(types.ErrTryAgainLater, fmt.Errorf("pod flows not installed: %w", why), "")
		}
		return nil, cniserver.WithCode(types.ErrInternal, fmt.Errorf("pod flows not installed: %w", why), "")
	}
	if err := s.beforeReady(ctx, a); err != nil {
		return nil, err
	}
	a, _ = s.store.Annotate(a.Key, a.Incarnation, func(e *attachments.Attachment) {
		e.State = attachments.Ready
		if e.ReadyAt.IsZero() {
			e.ReadyAt = time.Now()
		}
	})
	return s.result(a), nil
}

// beforeReady runs Config.BeforeReady, timed as the "policy" phase.
func (s *Service) beforeReady(ctx context.Context, a attachments.Attachment) error {
	if s.cfg.BeforeReady == nil {
		return nil
	}
	start := time.Now()
	err := s.cfg.BeforeReady(ctx, a)
	s.phase(a, "policy", start)
	if err != nil {
		return cniserver.WithCode(types.ErrTryAgainLater, err, "")
	}
	return nil
}

// flowsPending says why an attachment's flows are not in.
func flowsPending(a attachments.Attachment) string {
	switch {
	case a.Flows.Gen != a.Gen:
		return "the reconciler has not reported on this attachment yet"
	case a.Flows.Err != nil:
		return fmt.Sprintf("last attempt failed (%d so far): %v", a.Flows.Attempts, a.Flows.Err)
	default:
		return "the port is not live on a connected switch"
	}
}

// plumbLater creates the interface after ADD has returned, in the
// container's turn; OVS then picks up the declared port and the reconciler
// installs the flows.
func (s *Service) plumbLater(a attachments.Attachment) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if s.cfg.PlumbHook != nil {
			s.cfg.PlumbHook(ctx, a)
		}
		err := s.inTurn(ctx, a.ContainerID, func() error {
			cur, ok := s.store.Get(a.Key)
			if !ok || cur.Incarnation != a.Incarnation || cur.State == attachments.Deleting {
				return nil // deleted before its interface was made
			}
			res, err := s.cfg.Plumber.Setup(ctx, s.podnetConfig(cur))
			_, _ = s.store.Annotate(a.Key, a.Incarnation, func(e *attachments.Attachment) {
				e.PlumbErr = err
				if err == nil {
					e.HostMAC = res.HostMAC
				}
			})
			return err
		})
		if err != nil {
			s.log.Error("asynchronous pod interface setup failed", "container", a.ContainerID, "ifname", a.IfName, "err", err)
		}
	}()
}

func (s *Service) result(a attachments.Attachment) *current.Result {
	hostMAC := ""
	if a.HostMAC != nil {
		hostMAC = a.HostMAC.String()
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

package pods

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// Del implements CNI DEL: it removes whatever exists and succeeds when
// nothing does. The CNI server calls it in the container's turn.
func (s *Service) Del(ctx context.Context, req *cniapi.Request) error {
	k := keyOf(req.ContainerID, req.IfName)
	a, ok := s.store.Get(k)
	if !ok {
		return s.cleanupUnknown(ctx, req)
	}
	return s.teardown(ctx, a, req.Netns)
}

// teardown deletes an attachment in its container's turn: it marks it
// Deleting, waits until the reconciler has taken its flows off the switch
// (the OVS port, and with it the OpenFlow port number, must outlive them, or
// the next pod on that number could send as this one), then removes the
// port, the interface and the address, and finally the entry. When a step
// fails the entry stays Deleting, a tombstone that the next DEL (or ADD)
// resumes from.
func (s *Service) teardown(ctx context.Context, a attachments.Attachment, netns string) error {
	k, inc := a.Key, a.Incarnation
	var err error
	if a.State != attachments.Deleting {
		a, err = s.store.Update(k, inc, func(e *attachments.Attachment) {
			e.State = attachments.Deleting
			if netns != "" {
				e.Netns = netns
			}
		})
	} else if netns != "" && netns != a.Netns {
		a, err = s.store.Annotate(k, inc, func(e *attachments.Attachment) { e.Netns = netns })
	}
	if errors.Is(err, attachments.ErrGone) {
		return nil
	}
	if err != nil {
		return err
	}
	a, err = s.store.Wait(ctx, k, func(cur attachments.Attachment, ok bool) (bool, error) {
		return !ok || cur.Incarnation != inc || cur.FlowsOut(), nil
	})
	if err != nil {
		return cniserver.WithCode(types.ErrTryAgainLater,
			fmt.Errorf("flows of container %s interface %s not removed from the switch yet: %w (%s)", k.ContainerID, k.IfName, err, flowsPending(a)),
			"the agent keeps retrying; the runtime's retry of DEL completes once they are gone")
	}
	if a.Incarnation != inc {
		return nil // removed by someone else meanwhile
	}
	var errs []error
	if err := s.cfg.DB.DeletePorts(ctx, s.cfg.Bridge, a.HostIfName); err != nil {
		errs = append(errs, fmt.Errorf("delete OVS port %s: %w", a.HostIfName, err))
	}
	if err := s.cfg.Plumber.Teardown(ctx, a.Netns, a.IfName, a.HostIfName); err != nil {
		errs = append(errs, fmt.Errorf("delete pod interface: %w", err))
	}
	// The address goes last, and only when nothing that uses it is left:
	// as long as the tombstone stands its address is not handed out again.
	if len(errs) == 0 {
		if _, err := s.cfg.IPAM.Release(ipamOwner(k)); err != nil {
			errs = append(errs, fmt.Errorf("release address: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cniserver.WithCode(types.ErrInternal, err, "the runtime retries DEL")
	}
	s.store.Remove(k, inc)
	return nil
}

// rollback undoes a failed ADD with a fresh context: the request's may be
// the reason it failed. It runs in the container's turn (ADD's).
func (s *Service) rollback(a attachments.Attachment) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.teardown(ctx, a, ""); err != nil {
		s.log.Warn("rolling back a failed ADD left something behind; DEL or GC will retry", "container", a.ContainerID, "err", err)
	}
}

// cleanupUnknown serves DEL of an attachment this agent has no record of
// (already deleted, or never added here): it removes what could be left by
// the deterministic names, and only what is provably ovsnet's: an OVS port
// recording this container, a veth pair whose host end is this attachment's,
// the address IPAM holds for this owner.
func (s *Service) cleanupUnknown(ctx context.Context, req *cniapi.Request) error {
	k := keyOf(req.ContainerID, req.IfName)
	host := podnet.HostIfName(req.ContainerID, req.IfName)
	var errs []error
	if iface, ok, _ := s.cfg.DB.Interface(host); ok {
		if id := iface.ExternalIDs[KeyContainerID]; id == "" || id == req.ContainerID {
			if err := s.cfg.DB.DeletePorts(ctx, s.cfg.Bridge, host); err != nil {
				errs = append(errs, fmt.Errorf("delete OVS port %s: %w", host, err))
			}
		}
	}
	if err := s.cfg.Plumber.Teardown(ctx, req.Netns, req.IfName, host); err != nil {
		errs = append(errs, fmt.Errorf("delete pod interface: %w", err))
	}
	if len(errs) == 0 {
		if _, err := s.cfg.IPAM.Release(ipamOwner(k)); err != nil {
			errs = append(errs, fmt.Errorf("release address: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cniserver.WithCode(types.ErrInternal, err, "the runtime retries DEL")
	}
	return nil
}

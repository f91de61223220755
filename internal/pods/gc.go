package pods

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/ipam"
)

// GC implements CNI GC: attachments of req's network that existed before
// the request and that req.ValidAttachments does not name are deleted, each
// in its container's turn; then addresses that no attachment holds and no
// valid attachment names are released.
//
// An attachment still being added (Pending) is never collected: the
// runtime's list may predate its ADD. An attachment recorded without a
// network name (made before ovsnet recorded it) is judged by any network's
// GC, as it was then.
func (s *Service) GC(ctx context.Context, req *cniapi.GCRequest) error {
	valid := map[attachments.Key]bool{}
	for _, v := range req.ValidAttachments {
		valid[keyOf(v.ContainerID, v.IfName)] = true
	}
	err := s.collect(ctx, func(a attachments.Attachment) bool {
		return valid[a.Key] || (a.Network != "" && req.Network != "" && a.Network != req.Network)
	}, "not in the runtime's valid attachments (CNI GC)")
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	// Addresses without an attachment (a crash between the allocation and
	// the port). A Pending attachment is in the store before its address is
	// allocated, so an ADD running now keeps its own.
	if released, err := s.cfg.IPAM.Retain(func(o ipam.Owner) bool {
		k := keyOf(o.ContainerID, o.IfName)
		return valid[k] || s.store.Has(k)
	}); err != nil {
		errs = append(errs, err)
	} else {
		for _, al := range released {
			s.log.Info("CNI GC released an address without attachment", "ip", al.IP, "container", al.Owner.ContainerID)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cniserver.WithCode(types.ErrInternal, fmt.Errorf("garbage collection: %w", err), "the runtime retries GC")
	}
	return nil
}

// CollectGarbage deletes every attachment for which keep returns false, the
// way CNI DEL would, each in its container's turn. The agent calls it with
// "the pod still exists" once its view of the node's pods is complete, and
// never before (an empty view is not evidence that pods are gone), and for
// sandboxes whose network namespace vanished.
func (s *Service) CollectGarbage(ctx context.Context, keep func(attachments.Attachment) bool, why string) error {
	return s.collect(ctx, keep, why)
}

// collect deletes the attachments keep rejects. keep is asked twice: on a
// snapshot, and again in the container's turn on the entry as it is then, of
// the same incarnation; an attachment re-added meanwhile is not the one that
// was judged.
func (s *Service) collect(ctx context.Context, keep func(attachments.Attachment) bool, why string) error {
	var errs []error
	for _, a := range s.store.List() {
		if a.State == attachments.Pending || keep(a) {
			continue
		}
		err := s.inTurn(ctx, a.ContainerID, func() error {
			cur, ok := s.store.Get(a.Key)
			if !ok || cur.Incarnation != a.Incarnation || cur.State == attachments.Pending || keep(cur) {
				return nil
			}
			s.log.Info("garbage-collecting pod attachment", "reason", why, "container", cur.ContainerID,
				"ifname", cur.IfName, "pod", cur.Pod.String(), "ip", cur.IP.String(), "port", cur.HostIfName)
			return s.teardown(ctx, cur, "")
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s interface %s: %w", a.ContainerID, a.IfName, err))
		}
	}
	return errors.Join(errs...)
}

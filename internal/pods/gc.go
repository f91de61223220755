package pods

import (
	"context"
	"errors"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// CollectGarbage removes every attachment for which keep returns false, the
// way CNI DEL would. The agent calls it with "the pod still exists" once its
// view of the node's pods is complete, and never before: an empty view is
// not evidence that pods are gone.
func (s *Service) CollectGarbage(ctx context.Context, keep func(Info) bool, why string) error {
	var errs []error
	for _, a := range s.Attachments() {
		if keep(a) {
			continue
		}
		s.log.Info("garbage-collecting pod attachment", "reason", why, "container", a.ContainerID,
			"pod", a.Pod.String(), "ip", a.IP.String(), "port", a.HostIfName)
		if err := s.Del(ctx, &cniapi.Request{ContainerID: a.ContainerID, IfName: a.IfName, Netns: a.Netns}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

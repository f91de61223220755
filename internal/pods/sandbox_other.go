//go:build !linux

package pods

import "context"

// WatchSandboxes needs inotify; elsewhere sandboxes are collected by CNI GC
// and by the pod informer only.
func (s *Service) WatchSandboxes(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

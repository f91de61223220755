package pods

import (
	"context"
	"errors"

	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Pod flows are a function of two facts: the pod is declared (an attachment
// exists) and its port is ready (live, on a fresh OpenFlow view). The
// reconciler installs a pod's flows when both hold and removes them when
// either goes. It is woken per port, coalesced, by the port table (either
// side changed) and by the service (an attachment came or went); it reads
// state, never trusts the wake-up itself.

func (s *Service) enqueue(names ...string) {
	s.mu.Lock()
	for _, n := range names {
		s.queue[n] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) takeQueue() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.queue))
	for n := range s.queue {
		out = append(out, n)
	}
	clear(s.queue)
	return out
}

// Run reconciles pod flows until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	sub := s.cfg.Ports.Subscribe()
	// Everything known so far, once.
	s.mu.Lock()
	for n := range s.byIf {
		s.queue[n] = struct{}{}
	}
	s.mu.Unlock()
	for {
		for _, n := range append(sub.Take(), s.takeQueue()...) {
			s.reconcile(ctx, n)
		}
		select {
		case <-sub.C():
		case <-s.kick:
		case <-ctx.Done():
			s.Wait()
			return nil
		}
	}
}

func (s *Service) reconcile(ctx context.Context, hostIf string) {
	s.mu.Lock()
	a := s.byIf[hostIf]
	s.mu.Unlock()
	if a == nil {
		// Not a pod port (gateway, foreign), or the pod is gone: DEL removed
		// its flows itself.
		return
	}
	if _, _, fresh := s.cfg.Ports.Port(hostIf); !fresh {
		// The OpenFlow view is stale (reconnecting): not knowing is not
		// "gone"; keep the flows until the dump says otherwise.
		return
	}
	r, live, why := s.cfg.Ports.Check(a.ref, ports.Live)
	var err error
	if live {
		err = s.cfg.Flows.Set(ctx, a.owner(), pipeline.PodFlows(pipeline.Endpoint{OFPort: r.OFPort, IP: a.IP.Addr(), MAC: a.MAC}))
	} else {
		s.log.Debug("pod port not ready", "port", hostIf, "why", why)
		err = s.cfg.Flows.Remove(ctx, a.owner())
	}
	if err != nil && !errors.Is(err, pipeline.ErrNoSession) && ctx.Err() == nil {
		s.log.Warn("reconciling pod flows failed; retried on the next change or resync", "port", hostIf, "err", err)
	}
}

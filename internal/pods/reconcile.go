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
		s.reconcile(ctx, append(sub.Take(), s.takeQueue()...))
		select {
		case <-sub.C():
		case <-s.kick:
		case <-ctx.Done():
			s.Wait()
			return nil
		}
	}
}

// reconcile brings the flows of the named ports' pods in line with their
// state, in one bundle for the whole batch.
func (s *Service) reconcile(ctx context.Context, hostIfs []string) {
	changes := map[pipeline.Owner][]pipeline.Flow{}
	for _, hostIf := range hostIfs {
		s.mu.Lock()
		a := s.byIf[hostIf]
		s.mu.Unlock()
		if a == nil {
			// Not a pod port (gateway, foreign), or the pod is gone: DEL
			// removed its flows itself.
			continue
		}
		if _, _, fresh := s.cfg.Ports.Port(hostIf); !fresh {
			// The OpenFlow view is stale (reconnecting): not knowing is not
			// "gone"; keep the flows until the dump says otherwise.
			continue
		}
		r, live, why := s.cfg.Ports.Check(a.ref, ports.Live)
		if live {
			changes[a.owner()] = pipeline.PodFlows(pipeline.Endpoint{OFPort: r.OFPort, IP: a.IP.Addr(), MAC: a.MAC})
		} else {
			s.log.Debug("pod port not ready", "port", hostIf, "why", why)
			changes[a.owner()] = nil
		}
	}
	if len(changes) == 0 {
		return
	}
	err := s.cfg.Flows.Apply(ctx, changes)
	if err != nil && !errors.Is(err, pipeline.ErrNoSession) && ctx.Err() == nil {
		s.log.Warn("reconciling pod flows failed; retried on the next change or resync", "pods", len(changes), "err", err)
	}
}

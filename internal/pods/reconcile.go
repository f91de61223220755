package pods

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// The reconciler is the only writer of pod flows. A pod's flows are a
// function of its attachment (state, address, port) and of its port's
// readiness: installed when the attachment is Plumbed or Ready and its port
// is live on a connected switch, removed when it is Deleting, has an address
// conflict or its port is not live. It is woken, coalesced, by the store (an
// attachment changed), by the port table (a port changed on either side), by
// the flow manager (a session started or ended) and by its own retry timer;
// it reads state, never trusts the wake-up itself.
//
// For each attachment it reports to the store, per generation, whether the
// flows are on the switch. A report is about the generation read at the
// start of the pass; if the attachment changed meanwhile, the store has
// marked it dirty again and the next pass reports on the new generation, so
// a DEL that lands between the read and the apply can at worst see the old
// flows installed once more and removed by the next pass — it waits for the
// removal, and the OVS port (with its OpenFlow number) outlives the flows.

// retry is the backoff state of an attachment whose flows failed.
type retry struct {
	n   int
	due time.Time
}

func (s *Service) reconcileLoop(ctx context.Context) {
	sub := s.cfg.Ports.Subscribe()
	retries := map[attachments.Key]*retry{}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	session := s.cfg.Flows.SessionChanged()
	s.store.MarkAllDirty()
	var ack []chan struct{}
	for {
		s.alive.Store(time.Now().UnixNano())
		keys := s.store.TakeDirty()
		for _, name := range sub.Take() {
			if a, ok := s.store.ByHostIf(name); ok {
				keys = append(keys, a.Key)
			}
		}
		now := time.Now()
		for k, r := range retries {
			if !r.due.After(now) {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			s.reconcile(ctx, dedupe(keys), retries)
		}
		for _, ch := range ack {
			close(ch)
		}
		ack = ack[:0]
		s.alive.Store(time.Now().UnixNano())
		var retryC <-chan time.Time
		if next := nextDue(retries); !next.IsZero() {
			retryC = time.After(time.Until(next))
		}
		select {
		case <-sub.C():
		case <-s.store.Dirty():
		case <-retryC:
		case <-session:
			session = s.cfg.Flows.SessionChanged()
			s.store.MarkAllDirty()
		case ch := <-s.syncReq:
			s.store.MarkAllDirty()
			ack = append(ack, ch)
		case <-beat.C:
		case <-ctx.Done():
			return
		}
	}
}

func nextDue(retries map[attachments.Key]*retry) time.Time {
	var next time.Time
	for _, r := range retries {
		if next.IsZero() || r.due.Before(next) {
			next = r.due
		}
	}
	return next
}

func dedupe(keys []attachments.Key) []attachments.Key {
	slices.SortFunc(keys, func(a, b attachments.Key) int {
		if a.ContainerID != b.ContainerID {
			if a.ContainerID < b.ContainerID {
				return -1
			}
			return 1
		}
		switch {
		case a.IfName < b.IfName:
			return -1
		case a.IfName > b.IfName:
			return 1
		}
		return 0
	})
	return slices.Compact(keys)
}

type desired struct {
	key      attachments.Key
	inc, gen uint64
	in       bool
}

// reconcile brings the flows of the given attachments in line with their
// state, in one bundle for the whole batch.
func (s *Service) reconcile(ctx context.Context, keys []attachments.Key, retries map[attachments.Key]*retry) {
	changes := map[pipeline.Owner][]pipeline.Flow{}
	items := map[pipeline.Owner]desired{}
	for _, k := range keys {
		a, ok := s.store.Get(k)
		if !ok {
			// Removed: DEL removed the entry only after its flows.
			delete(retries, k)
			continue
		}
		owner := ownerOf(k)
		d := desired{key: k, inc: a.Incarnation, gen: a.Gen}
		switch {
		case a.State == attachments.Deleting || a.Conflict != "":
			if !s.cfg.Flows.Known(owner) {
				// Nothing of it is or may be on the switch.
				s.store.ReportFlows(k, d.inc, d.gen, false, nil)
				delete(retries, k)
				continue
			}
			changes[owner] = nil
		case a.State == attachments.Pending || a.Port.Name == "":
			continue // no port declared yet
		default:
			if _, _, fresh := s.cfg.Ports.Port(a.HostIfName); !fresh {
				// The OpenFlow view is stale (reconnecting): not knowing
				// is not "gone"; keep the flows until the dump says.
				continue
			}
			if r, live, _ := s.cfg.Ports.Check(a.Port, ports.Live); live {
				changes[owner] = pipeline.PodFlows(pipeline.Endpoint{OFPort: r.OFPort, IP: a.IP.Addr(), MAC: a.MAC})
				d.in = true
			} else if !s.cfg.Flows.Known(owner) {
				s.store.ReportFlows(k, d.inc, d.gen, false, nil)
				delete(retries, k)
				continue
			} else {
				changes[owner] = nil
			}
		}
		items[owner] = d
	}
	if len(changes) == 0 {
		return
	}
	err := s.cfg.Flows.Apply(ctx, changes)
	if ctx.Err() != nil {
		return
	}
	var failed pipeline.OwnerErrors
	switch {
	case err == nil:
	case errors.As(err, &failed):
	case errors.Is(err, pipeline.ErrNoSession):
		// Recorded; the next session's Resync installs it and wakes this
		// loop. Report why the flows are not in for waiters' messages.
		for _, d := range items {
			s.store.ReportFlows(d.key, d.inc, d.gen, false, pipeline.ErrNoSession)
		}
		return
	default:
		failed = pipeline.OwnerErrors{}
		for owner := range items {
			failed[owner] = err
		}
	}
	for owner, d := range items {
		if ferr, bad := failed[owner]; bad {
			s.store.ReportFlows(d.key, d.inc, d.gen, d.in, ferr)
			r := retries[d.key]
			if r == nil {
				r = &retry{}
				retries[d.key] = r
			}
			delay := min(s.cfg.RetryMin<<min(r.n, 20), s.cfg.RetryMax)
			r.n++
			r.due = time.Now().Add(delay)
			s.log.Warn("pod flows failed; retrying", "container", d.key.ContainerID, "ifname", d.key.IfName,
				"attempt", r.n, "retry_in", delay, "err", ferr)
			continue
		}
		delete(retries, d.key)
		s.store.ReportFlows(d.key, d.inc, d.gen, d.in, nil)
	}
}

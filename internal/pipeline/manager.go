package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Switch is the OpenFlow session flows are programmed through.
type Switch interface {
	// Bundle applies msgs atomically, or not at all.
	Bundle(ctx context.Context, msgs []of.Message) error
	// DumpFlows returns the flows the request selects.
	DumpFlows(ctx context.Context, req *of.FlowStatsRequest) ([]of.FlowStats, error)
}

// ErrNoSession means no OpenFlow session is up: the desired flows are
// recorded and will be installed by the next Resync.
var ErrNoSession = errors.New("no OpenFlow session: flows will be installed on reconnect")

// Owner names whoever a set of flows belongs to.
type Owner string

// Owners of the pipeline's own and the gateway's flows.
const (
	OwnerBase    Owner = "base"
	OwnerGateway Owner = "gateway"
)

// PodOwner is the owner of a pod interface's flows.
func PodOwner(containerID, ifName string) Owner { return Owner("pod/" + containerID + "/" + ifName) }

// Cookies: the top 16 bits are the round, the low 32 bits the owner. A new
// round starts with every Resync (a new session, an agent restart): all
// desired flows are added with the new round, then every flow of another
// round is deleted, in one atomic bundle, so traffic never sees a gap and
// nothing stale survives.
const (
	roundShift        = 48
	roundMask  uint64 = 0xffff << roundShift
	ownerMask  uint64 = 0xffffffff
)

func cookie(round uint16, id uint32) uint64 { return uint64(round)<<roundShift | uint64(id) }

// Manager keeps the switch's flows equal to the desired flows of each owner.
// Flow programming is serialised; callers run in parallel otherwise.
type Manager struct {
	log *slog.Logger

	mu      sync.Mutex
	sw      Switch // nil without a session
	round   uint16
	nextID  uint32
	owners  map[Owner]*ownerState
	changed chan struct{}
}

type ownerState struct {
	id    uint32
	flows []Flow
	// enc is flows' wire encoding, kept so a reconcile that brings the same
	// flows compares bytes instead of encoding both sides again.
	enc       []byte
	installed bool
}

// NewManager returns a manager with no session.
func NewManager(log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{log: log, owners: map[Owner]*ownerState{}, changed: make(chan struct{})}
}

func (m *Manager) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Set makes flows the desired flows of owner and installs them, replacing
// the owner's previous flows atomically. Unchanged, installed flows cost
// nothing. Without a session it records them and returns ErrNoSession.
func (m *Manager) Set(ctx context.Context, owner Owner, flows []Flow) error {
	if flows == nil {
		flows = []Flow{}
	}
	return m.Apply(ctx, map[Owner][]Flow{owner: flows})
}

// Remove deletes owner's flows and forgets them.
func (m *Manager) Remove(ctx context.Context, owner Owner) error {
	return m.Apply(ctx, map[Owner][]Flow{owner: nil})
}

// Apply changes several owners at once in one atomic bundle: a nil slice
// removes the owner, anything else replaces its flows. Batching lets a burst
// of pods share one bundle (two round trips to ovs-vswitchd) instead of
// queueing one bundle each. Without a session the desired state is recorded
// and ErrNoSession returned; the next Resync installs it.
func (m *Manager) Apply(ctx context.Context, changes map[Owner][]Flow) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var msgs []of.Message
	var touched []*ownerState
	for _, owner := range slices.Sorted(maps.Keys(changes)) {
		flows := changes[owner]
		st, ok := m.owners[owner]
		if flows == nil {
			if !ok {
				continue
			}
			delete(m.owners, owner)
			if m.sw != nil {
				msgs = append(msgs, of.DeleteFlows(of.TableAll, of.Match{}, cookie(m.round, st.id), ^uint64(0)))
			}
			continue
		}
		if !ok {
			m.nextID++
			st = &ownerState{id: m.nextID}
			m.owners[owner] = st
		}
		enc := encodeFlows(flows)
		if st.installed && m.sw != nil && enc != nil && bytes.Equal(st.enc, enc) {
			continue
		}
		st.flows, st.enc, st.installed = slices.Clone(flows), enc, false
		if m.sw != nil {
			c := cookie(m.round, st.id)
			msgs = append(msgs, of.DeleteFlows(of.TableAll, of.Match{}, c, ^uint64(0)))
			msgs = appendAdds(msgs, flows, c)
			touched = append(touched, st)
		}
	}
	m.broadcastLocked()
	if m.sw == nil {
		if len(changes) > 0 {
			return ErrNoSession
		}
		return nil
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := m.sw.Bundle(ctx, msgs); err != nil {
		return fmt.Errorf("install flows of %d owners: %w", len(changes), err)
	}
	for _, st := range touched {
		st.installed = true
	}
	m.broadcastLocked()
	return nil
}

// Resync installs every desired flow through a new session sw under a new
// round and deletes all other flows on the bridge, atomically. Call it on
// every new OpenFlow session: after an ovs-vswitchd restart the bridge has no
// flows; after an agent restart it has the previous agent's.
func (m *Manager) Resync(ctx context.Context, sw Switch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	existing, err := sw.DumpFlows(ctx, of.NewFlowStatsRequest(of.TableAll, of.Match{}))
	if err != nil {
		return fmt.Errorf("resync flows: dump existing flows: %w", err)
	}
	rounds := map[uint16]bool{}
	for _, f := range existing {
		rounds[uint16(f.Cookie>>roundShift)] = true
	}
	next := m.round + 1
	for rounds[next] || next == 0 {
		next++
	}
	var msgs []of.Message
	total := 0
	for _, owner := range slices.Sorted(maps.Keys(m.owners)) {
		st := m.owners[owner]
		msgs = appendAdds(msgs, st.flows, cookie(next, st.id))
		total += len(st.flows)
	}
	for r := range rounds {
		msgs = append(msgs, of.DeleteFlows(of.TableAll, of.Match{}, uint64(r)<<roundShift, roundMask))
	}
	if err := sw.Bundle(ctx, msgs); err != nil {
		return fmt.Errorf("resync flows: %w", err)
	}
	m.round, m.sw = next, sw
	for _, st := range m.owners {
		st.installed = true
	}
	m.broadcastLocked()
	m.log.Info("flows resynced", "round", next, "owners", len(m.owners), "flows", total,
		"stale_flows_before", len(existing))
	return nil
}

// SessionLost forgets the session: nothing is installed until Resync.
func (m *Manager) SessionLost() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sw = nil
	for _, st := range m.owners {
		st.installed = false
	}
	m.broadcastLocked()
}

// Installed reports whether owner's desired flows are on the switch.
func (m *Manager) Installed(owner Owner) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.owners[owner]
	return ok && st.installed
}

// WaitInstalled blocks until owner's flows are installed or ctx ends. An
// owner without desired flows yet is waited for: the reconciler may not have
// seen its port ready.
func (m *Manager) WaitInstalled(ctx context.Context, owner Owner) error {
	for {
		m.mu.Lock()
		st, ok := m.owners[owner]
		done := ok && st.installed
		ch := m.changed
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if !ok {
				return fmt.Errorf("flows of %s not computed (port never ready): %w", owner, ctx.Err())
			}
			return fmt.Errorf("flows of %s not installed: %w", owner, ctx.Err())
		}
	}
}

// Desired returns a copy of every owner's desired flows, for the CLI.
func (m *Manager) Desired() map[Owner][]Flow {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Owner][]Flow, len(m.owners))
	for o, st := range m.owners {
		out[o] = slices.Clone(st.flows)
	}
	return out
}

// Round is the current cookie round.
func (m *Manager) Round() uint16 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.round
}

func appendAdds(msgs []of.Message, flows []Flow, c uint64) []of.Message {
	for _, f := range flows {
		fm := of.AddFlow(f.Table, f.Priority, f.Match, f.Instructions...)
		fm.Cookie = c
		msgs = append(msgs, fm)
	}
	return msgs
}

// encodeFlows is the flows' wire encoding, nil when one does not encode
// (never equal to anything: the switch will report the error).
func encodeFlows(flows []Flow) []byte {
	var b []byte
	for _, f := range flows {
		var err error
		if b, err = of.AddFlow(f.Table, f.Priority, f.Match, f.Instructions...).AppendBinary(b); err != nil {
			return nil
		}
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

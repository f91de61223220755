package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Switch is the OpenFlow session flows are programmed through.
type Switch interface {
	// Bundle applies msgs atomically, or not at all. When the switch
	// rejects some messages the error should implement Rejections, so that
	// the other owners' changes can still go in.
	Bundle(ctx context.Context, msgs []of.Message) error
	// DumpFlows returns the flows the request selects.
	DumpFlows(ctx context.Context, req *of.FlowStatsRequest) ([]of.FlowStats, error)
}

// Rejections is implemented by a bundle error that names the messages the
// switch refused, by their index in the bundle.
type Rejections interface {
	error
	RejectedIndexes() []int
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
	OwnerTunnel  Owner = "tunnel"
)

// PeerOwner is the owner of the flows that reach another node.
func PeerOwner(node string) Owner { return Owner("peer/" + node) }

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
)

func cookie(round uint16, id uint32) uint64 { return uint64(round)<<roundShift | uint64(id) }

// OwnerErrors reports the owners of an Apply whose changes did not take
// effect; every other owner's change did. Each error says why (usually the
// switch rejected one of the owner's flows).
type OwnerErrors map[Owner]error

func (e OwnerErrors) Error() string {
	owners := slices.Sorted(maps.Keys(e))
	parts := make([]string, 0, len(owners))
	for _, o := range owners {
		parts = append(parts, fmt.Sprintf("%s: %v", o, e[o]))
	}
	return fmt.Sprintf("flows of %d owner(s) not installed: %s", len(e), strings.Join(parts, "; "))
}

// Unwrap returns the per-owner errors.
func (e OwnerErrors) Unwrap() []error {
	out := make([]error, 0, len(e))
	for _, o := range slices.Sorted(maps.Keys(e)) {
		out = append(out, e[o])
	}
	return out
}

// Manager keeps the switch's flows equal to the desired flows of each owner.
// Flow programming is serialised; callers run in parallel otherwise.
//
// An owner's record outlives a removal until the switch has confirmed it (a
// delete bundle succeeded, or a Resync replaced every flow of the old
// round): a removal that failed is retried by the next Apply of that owner
// instead of being forgotten with the flows left on the bridge.
type Manager struct {
	log *slog.Logger

	mu      sync.Mutex
	sw      Switch // nil without a session
	round   uint16
	nextID  uint32
	owners  map[Owner]*ownerState
	changed chan struct{}
	// session is closed and replaced when a session is installed or lost.
	session chan struct{}
}

type ownerState struct {
	id    uint32
	flows []Flow
	// enc is flows' wire encoding, kept so a reconcile that brings the same
	// flows compares bytes instead of encoding both sides again.
	enc       []byte
	installed bool
	// removing: the owner is gone from the desired state but the switch
	// may still hold its flows (a delete not yet confirmed).
	removing bool
}

// NewManager returns a manager with no session.
func NewManager(log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{log: log, owners: map[Owner]*ownerState{}, changed: make(chan struct{}), session: make(chan struct{})}
}

func (m *Manager) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Manager) sessionChangedLocked() {
	close(m.session)
	m.session = make(chan struct{})
}

// SessionChanged returns a channel closed at the next Resync or SessionLost.
// Take it before reading the state it guards.
func (m *Manager) SessionChanged() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.session
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

// Remove deletes owner's flows and forgets them once the switch confirms.
func (m *Manager) Remove(ctx context.Context, owner Owner) error {
	return m.Apply(ctx, map[Owner][]Flow{owner: nil})
}

// Apply changes several owners at once in one atomic bundle: a nil slice
// removes the owner, anything else replaces its flows. Batching lets a burst
// of pods share one bundle (two round trips to ovs-vswitchd) instead of
// queueing one bundle each.
//
// When the switch rejects some owners' flows, the bundle is retried without
// them, so one bad owner does not hold up the rest; the error is then an
// OwnerErrors naming exactly the owners that did not change. Without a
// session the desired state is recorded and ErrNoSession returned; the next
// Resync installs it. Any other error (the session failed) means nothing of
// the batch is known to have taken effect; the desired state is recorded.
func (m *Manager) Apply(ctx context.Context, changes map[Owner][]Flow) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	type pending struct {
		owner Owner
		st    *ownerState
		msgs  []of.Message
	}
	var work []pending
	for _, owner := range slices.Sorted(maps.Keys(changes)) {
		flows := changes[owner]
		st, ok := m.owners[owner]
		if flows == nil {
			if !ok {
				continue
			}
			st.flows, st.enc, st.installed, st.removing = nil, nil, false, true
			if m.sw == nil {
				continue
			}
			work = append(work, pending{owner, st, []of.Message{of.DeleteFlows(of.TableAll, of.Match{}, cookie(m.round, st.id), ^uint64(0))}})
			continue
		}
		if !ok {
			m.nextID++
			st = &ownerState{id: m.nextID}
			m.owners[owner] = st
		}
		enc := encodeFlows(flows)
		if st.installed && !st.removing && m.sw != nil && enc != nil && bytes.Equal(st.enc, enc) {
			continue
		}
		st.flows, st.enc, st.installed, st.removing = slices.Clone(flows), enc, false, false
		if m.sw != nil {
			c := cookie(m.round, st.id)
			msgs := []of.Message{of.DeleteFlows(of.TableAll, of.Match{}, c, ^uint64(0))}
			work = append(work, pending{owner, st, appendAdds(msgs, flows, c)})
		}
	}
	m.broadcastLocked()
	if m.sw == nil {
		if len(changes) > 0 {
			return ErrNoSession
		}
		return nil
	}
	failed := OwnerErrors{}
	// Each failed attempt that names rejected messages drops their owners
	// and tries the rest again, so this ends after at most len(work)+1
	// bundles.
	for len(work) > 0 {
		var msgs []of.Message
		ownerOf := make([]int, 0, len(work)*6)
		for i, w := range work {
			msgs = append(msgs, w.msgs...)
			for range w.msgs {
				ownerOf = append(ownerOf, i)
			}
		}
		err := m.sw.Bundle(ctx, msgs)
		if err == nil {
			for _, w := range work {
				m.confirmLocked(w.owner, w.st)
			}
			break
		}
		var rej Rejections
		if !errors.As(err, &rej) || len(rej.RejectedIndexes()) == 0 {
			return fmt.Errorf("install flows of %d owners: %w", len(work), err)
		}
		bad := map[int]bool{}
		for _, idx := range rej.RejectedIndexes() {
			if idx >= 0 && idx < len(ownerOf) {
				bad[ownerOf[idx]] = true
			}
		}
		if len(bad) == 0 {
			return fmt.Errorf("install flows of %d owners: %w", len(work), err)
		}
		rest := work[:0:0]
		for i, w := range work {
			if bad[i] {
				failed[w.owner] = fmt.Errorf("switch rejected flows of %s: %w", w.owner, err)
				continue
			}
			rest = append(rest, w)
		}
		if len(failed) > 0 {
			m.log.Warn("switch rejected some owners' flows; installing the others without them",
				"rejected", len(failed), "others", len(rest), "err", err)
		}
		work = rest
	}
	m.broadcastLocked()
	if len(failed) > 0 {
		return failed
	}
	return nil
}

// confirmLocked records that the switch now holds exactly st's desired
// flows (none, for a removal).
func (m *Manager) confirmLocked(owner Owner, st *ownerState) {
	if st.removing {
		if m.owners[owner] == st {
			delete(m.owners, owner)
		}
		return
	}
	st.installed = true
}

// Resync installs every desired flow through a new session sw under a new
// round and deletes all other flows on the bridge, atomically. Call it on
// every new OpenFlow session: after an ovs-vswitchd restart the bridge has no
// flows; after an agent restart it has the previous agent's. The switch's
// flows are compared with the desired ones first, and the difference is
// logged: a flow removed or added behind the agent's back is repaired here.
func (m *Manager) Resync(ctx context.Context, sw Switch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	existing, err := sw.DumpFlows(ctx, of.NewFlowStatsRequest(of.TableAll, of.Match{}))
	if err != nil {
		return fmt.Errorf("resync flows: dump existing flows: %w", err)
	}
	rounds := map[uint16]bool{}
	have := map[string]int{}
	for i := range existing {
		f := &existing[i]
		rounds[uint16(f.Cookie>>roundShift)] = true
		have[flowKey(f.Table, f.Priority, f.Match, f.Instructions)]++
	}
	next := m.round + 1
	for rounds[next] || next == 0 {
		next++
	}
	var msgs []of.Message
	total, missing := 0, 0
	for _, owner := range slices.Sorted(maps.Keys(m.owners)) {
		st := m.owners[owner]
		if st.removing {
			continue
		}
		msgs = appendAdds(msgs, st.flows, cookie(next, st.id))
		total += len(st.flows)
		for _, f := range st.flows {
			k := f.key()
			if have[k] > 0 {
				have[k]--
			} else {
				missing++
			}
		}
	}
	stale := 0
	for _, n := range have {
		stale += n
	}
	for r := range rounds {
		msgs = append(msgs, of.DeleteFlows(of.TableAll, of.Match{}, uint64(r)<<roundShift, roundMask))
	}
	if err := sw.Bundle(ctx, msgs); err != nil {
		return fmt.Errorf("resync flows: %w", err)
	}
	m.round, m.sw = next, sw
	for owner, st := range m.owners {
		if st.removing {
			// The old round's flows, this owner's among them, are gone.
			delete(m.owners, owner)
			continue
		}
		st.installed = true
	}
	m.broadcastLocked()
	m.sessionChangedLocked()
	m.log.Info("flows resynced", "round", next, "owners", len(m.owners), "flows", total,
		"flows_before", len(existing), "missing_before", missing, "unexpected_before", stale)
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
	m.sessionChangedLocked()
}

// Connected reports whether the manager has a session to program.
func (m *Manager) Connected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sw != nil
}

// Installed reports whether owner's desired flows are on the switch, as far
// as the manager knows (Verify asks the switch).
func (m *Manager) Installed(owner Owner) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.owners[owner]
	return ok && st.installed && !st.removing
}

// WaitInstalled blocks until owner's flows are installed or ctx ends. An
// owner without desired flows yet is waited for.
func (m *Manager) WaitInstalled(ctx context.Context, owner Owner) error {
	for {
		m.mu.Lock()
		st, ok := m.owners[owner]
		done := ok && st.installed && !st.removing
		ch := m.changed
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flows of %s not installed: %w", owner, ctx.Err())
		}
	}
}

// Known reports whether the manager still has a record of owner: desired
// flows, or a removal the switch has not confirmed.
func (m *Manager) Known(owner Owner) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.owners[owner]
	return ok
}

// DriftError reports an owner whose flows on the switch differ from the
// desired ones.
type DriftError struct {
	Owner   Owner
	Missing []string // desired flows the switch does not have
	Extra   []string // flows of the owner the switch has and should not
}

func (e *DriftError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flows of %s on the switch differ from the desired ones", e.Owner)
	if len(e.Missing) > 0 {
		fmt.Fprintf(&b, "; missing: %s", strings.Join(e.Missing, " | "))
	}
	if len(e.Extra) > 0 {
		fmt.Fprintf(&b, "; unexpected: %s", strings.Join(e.Extra, " | "))
	}
	return b.String()
}

// Verify asks the switch for owner's flows (a dump filtered by the owner's
// cookie) and compares them with the desired ones. A difference is a
// *DriftError, and the owner is marked not installed so that its next Apply
// puts the desired flows back. Without a session it returns ErrNoSession.
func (m *Manager) Verify(ctx context.Context, owner Owner) error {
	m.mu.Lock()
	sw, round := m.sw, m.round
	st, ok := m.owners[owner]
	var want []Flow
	var enc []byte
	var c uint64
	removing := false
	if ok {
		want, enc, c, removing = st.flows, st.enc, cookie(round, st.id), st.removing
	}
	m.mu.Unlock()
	if sw == nil {
		return ErrNoSession
	}
	if !ok || removing {
		return fmt.Errorf("no desired flows for %s", owner)
	}
	req := of.NewFlowStatsRequest(of.TableAll, of.Match{})
	req.Cookie, req.CookieMask = c, ^uint64(0)
	got, err := sw.DumpFlows(ctx, req)
	if err != nil {
		return fmt.Errorf("verify flows of %s: dump: %w", owner, err)
	}
	have := map[string]int{}
	for i := range got {
		f := &got[i]
		have[flowKey(f.Table, f.Priority, f.Match, f.Instructions)]++
	}
	drift := &DriftError{Owner: owner}
	for _, f := range want {
		k := f.key()
		if have[k] > 0 {
			have[k]--
			continue
		}
		drift.Missing = append(drift.Missing, f.String())
	}
	for k, n := range have {
		for range n {
			drift.Extra = append(drift.Extra, k)
		}
	}
	if len(drift.Missing) == 0 && len(drift.Extra) == 0 {
		return nil
	}
	sort.Strings(drift.Missing)
	sort.Strings(drift.Extra)
	m.mu.Lock()
	if cur, ok := m.owners[owner]; ok && cur == st && m.round == round && bytes.Equal(cur.enc, enc) {
		cur.installed = false
		m.broadcastLocked()
	}
	m.mu.Unlock()
	return drift
}

// Desired returns a copy of every owner's desired flows, for the CLI.
func (m *Manager) Desired() map[Owner][]Flow {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Owner][]Flow, len(m.owners))
	for o, st := range m.owners {
		if st.removing {
			continue
		}
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

// CookieOwners maps the cookie of every owner in the current round to the
// owner (owners whose removal is unconfirmed included), for reading a dump.
func (m *Manager) CookieOwners() map[uint64]Owner {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[uint64]Owner, len(m.owners))
	for o, st := range m.owners {
		out[cookie(m.round, st.id)] = o
	}
	return out
}

// OwnerOf returns the owner whose flows carry cookie c in the current round.
func (m *Manager) OwnerOf(c uint64) (Owner, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if uint16(c>>roundShift) != m.round {
		return "", false
	}
	for o, st := range m.owners {
		if cookie(m.round, st.id) == c {
			return o, true
		}
	}
	return "", false
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

// flowKey identifies a flow by what OVS keys and runs it on: table,
// priority, match and instructions, in ovs-ofctl's canonical text (the match
// fields sorted as OVS prints them), so a flow read back from the switch
// compares equal to the one installed.
func flowKey(table uint8, prio uint16, m of.Match, insts []of.Instruction) string {
	return fmt.Sprintf("table=%d,priority=%d,%s actions=%s", table, prio, m.String(), of.InstructionsString(insts))
}

func (f Flow) key() string { return flowKey(f.Table, f.Priority, f.Match, f.Instructions) }

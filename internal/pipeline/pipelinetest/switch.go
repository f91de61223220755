// Package pipelinetest has a fake of pipeline.Switch for tests of what sits
// above the flow manager: an in-memory flow table with atomic bundles,
// cookie-filtered dumps, and hooks to hold, fail or reject bundles at chosen
// moments.
package pipelinetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Switch is an in-memory OpenFlow switch. Flows are keyed by table,
// priority and match, as OVS keys them: an add with the key of an existing
// flow replaces it. Deletes are non-strict, by cookie and mask (ovsnet's
// only kind). It is safe for concurrent use.
type Switch struct {
	mu      sync.Mutex
	flows   map[string]of.FlowStats
	bundles int
	changed chan struct{}
	// BeforeBundle, if set, runs before every bundle is applied, outside
	// the switch's lock; a non-nil error fails the bundle (nothing
	// applied). Tests use it to hold a bundle at a chosen moment.
	BeforeBundle func(ctx context.Context, msgs []of.Message) error
	// Reject, if set, is asked about every flow add of a bundle; a true
	// answer rejects that message, and the whole bundle is discarded with
	// a *Rejected error naming every rejected index, as OVS does.
	Reject func(fm *of.FlowMod) bool
}

var _ pipeline.Switch = (*Switch)(nil)

// New returns an empty switch.
func New() *Switch { return &Switch{flows: map[string]of.FlowStats{}, changed: make(chan struct{})} }

// Changed returns a channel closed at the next change of the flow table.
func (s *Switch) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Switch) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Rejected is the error of a bundle with rejected messages.
type Rejected struct{ Indexes []int }

func (e *Rejected) Error() string {
	return fmt.Sprintf("fake switch rejected messages %v of the bundle; nothing applied", e.Indexes)
}

// RejectedIndexes implements pipeline.Rejections.
func (e *Rejected) RejectedIndexes() []int { return slices.Clone(e.Indexes) }

func key(table uint8, prio uint16, m of.Match) string {
	return fmt.Sprintf("%d/%d/%s", table, prio, m.String())
}

// Bundle implements pipeline.Switch.
func (s *Switch) Bundle(ctx context.Context, msgs []of.Message) error {
	s.mu.Lock()
	hook := s.BeforeBundle
	s.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, msgs); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []int
	for i, msg := range msgs {
		fm, ok := msg.(*of.FlowMod)
		if !ok {
			return fmt.Errorf("fake switch: message %d is a %T, not a flow mod", i, msg)
		}
		if fm.Command == of.FlowAdd && s.Reject != nil && s.Reject(fm) {
			bad = append(bad, i)
		}
	}
	if len(bad) > 0 {
		return &Rejected{Indexes: bad}
	}
	s.bundles++
	defer s.changedLocked()
	for _, msg := range msgs {
		fm := msg.(*of.FlowMod)
		switch fm.Command {
		case of.FlowAdd:
			s.flows[key(fm.Table, fm.Priority, fm.Match)] = of.FlowStats{Table: fm.Table, Priority: fm.Priority,
				Cookie: fm.Cookie, Match: fm.Match, Instructions: fm.Instructions}
		case of.FlowDelete:
			for k, f := range s.flows {
				if (fm.Table == of.TableAll || fm.Table == f.Table) && f.Cookie&fm.CookieMask == fm.Cookie&fm.CookieMask {
					delete(s.flows, k)
				}
			}
		default:
			return errors.New("fake switch: only flow adds and deletes are supported")
		}
	}
	return nil
}

// DumpFlows implements pipeline.Switch: the table and the cookie filter of
// req are honoured.
func (s *Switch) DumpFlows(_ context.Context, req *of.FlowStatsRequest) ([]of.FlowStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []of.FlowStats
	for _, f := range s.flows {
		if req.Table != of.TableAll && req.Table != f.Table {
			continue
		}
		if f.Cookie&req.CookieMask != req.Cookie&req.CookieMask {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// Flows returns every flow on the switch.
func (s *Switch) Flows() []of.FlowStats {
	out, _ := s.DumpFlows(context.Background(), of.NewFlowStatsRequest(of.TableAll, of.Match{}))
	return out
}

// Count is the number of flows on the switch.
func (s *Switch) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}

// Bundles is the number of bundles applied.
func (s *Switch) Bundles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundles
}

// DeleteWhere removes the flows for which del is true, behind the flow
// manager's back (as `ovs-ofctl del-flows` would).
func (s *Switch) DeleteWhere(del func(of.FlowStats) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, f := range s.flows {
		if del(f) {
			delete(s.flows, k)
			n++
		}
	}
	s.changedLocked()
	return n
}

// SetBeforeBundle replaces the BeforeBundle hook under the switch's lock.
func (s *Switch) SetBeforeBundle(f func(ctx context.Context, msgs []of.Message) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.BeforeBundle = f
}

// SetReject replaces the Reject hook under the switch's lock.
func (s *Switch) SetReject(f func(fm *of.FlowMod) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Reject = f
}

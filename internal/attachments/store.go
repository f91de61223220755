// Package attachments is the agent's record of pod attachments: one entry
// per CNI attachment (container id and interface name), with its lifecycle
// state, its address and port, and the flow reconciler's last report on it.
// It is the single owner of that state; everything else reads snapshots and
// changes entries through the store's methods, which keep the indexes (by
// attachment, by host interface, by pod) consistent and tell the reconciler
// what changed.
//
// Lifecycle:
//
//	Pending  reserved at the start of ADD, before the address is allocated:
//	         it protects the address from garbage collection while ADD runs
//	Plumbed  the interface and the OVS port are declared: the pod's flows are
//	         wanted whenever its port is live
//	Ready    ADD returned with the port live and the flows in
//	Deleting DEL began: the flows go first, then the port, the interface and
//	         the address; the entry stays (a tombstone) until all are gone
//
// Every change of what the flows depend on (state, address, port) raises the
// entry's generation. The reconciler reports, per generation, whether the
// pod's flows are on the switch; ADD waits for "in at my generation", DEL for
// "out at my generation", so neither can be satisfied by a report about an
// older state of the entry.
package attachments

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
)

// State is where an attachment is in its lifecycle.
type State uint8

// The states, in lifecycle order.
const (
	Pending State = iota + 1
	Plumbed
	Ready
	Deleting
)

var stateNames = [...]string{Pending: "pending", Plumbed: "plumbed", Ready: "ready", Deleting: "deleting"}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Key names an attachment.
type Key struct {
	ContainerID string
	IfName      string
}

func (k Key) String() string { return k.ContainerID + "/" + k.IfName }

// FlowReport is the reconciler's last word on an attachment's flows.
type FlowReport struct {
	// Gen is the generation of the entry the report is about.
	Gen uint64
	// In: the pod's flows are on the switch; otherwise none of them are.
	In bool
	// Err is why the last attempt for Gen failed (nil after a success).
	Err error
	// Attempts counts consecutive failures for Gen.
	Attempts int
}

// Attachment is one pod interface. Values returned by the store are copies.
type Attachment struct {
	Key
	// Network is the CNI network name the attachment was added for.
	Network    string
	Netns      string
	Pod        cniapi.PodRef
	HostIfName string
	// IP and MAC are zero while the address is not allocated yet.
	IP      netip.Prefix
	MAC     net.HardwareAddr
	HostMAC net.HardwareAddr
	Created time.Time
	// Async: the interface is created after ADD returned.
	Async bool
	// Restored: found in OVSDB when the agent started.
	Restored bool
	// Port is the OVS port, once declared.
	Port ports.Ref
	// Conflict, when set, is why the attachment gets no flows (another
	// attachment holds its address).
	Conflict string

	State State
	// Incarnation is unique to this entry: an attachment deleted and added
	// again under the same key is a new incarnation.
	Incarnation uint64
	// Gen changes whenever the inputs of the attachment's flows change.
	Gen uint64
	// Flows is the reconciler's last report.
	Flows FlowReport
	// PlumbErr is why background plumbing failed (asynchronous mode).
	PlumbErr error
	// Timeline holds the duration of each ADD phase, in order.
	Timeline []Phase
	// ReadyAt is when ADD saw the port live and the flows in.
	ReadyAt time.Time
}

// Phase is one step of an ADD.
type Phase struct {
	Name     string
	Duration time.Duration
}

// FlowsIn reports whether the reconciler has installed the flows for the
// attachment's current generation.
func (a Attachment) FlowsIn() bool { return a.Flows.Gen == a.Gen && a.Flows.In && a.Flows.Err == nil }

// FlowsOut reports whether the reconciler has confirmed that no flow of the
// attachment's current generation is on the switch.
func (a Attachment) FlowsOut() bool { return a.Flows.Gen == a.Gen && !a.Flows.In && a.Flows.Err == nil }

func (a *Attachment) clone() Attachment {
	c := *a
	c.Timeline = slices.Clone(a.Timeline)
	return c
}

// Errors of the store's methods.
var (
	// ErrExists: Reserve or Restore found the key or the host interface
	// taken.
	ErrExists = errors.New("attachment exists")
	// ErrGone: the entry was removed or replaced by another incarnation.
	ErrGone = errors.New("attachment gone")
)

// Store holds the attachments. Its methods are safe for concurrent use.
type Store struct {
	mu    sync.Mutex
	seq   uint64
	byKey map[Key]*Attachment
	byIf  map[string]Key
	// dirty collects keys whose entry changed, for the reconciler.
	dirty map[Key]struct{}
	wake  chan struct{}
	// waiters wakes the waiters of one key.
	waiters map[Key]chan struct{}
	// changed is closed and replaced on every change.
	changed chan struct{}
}

// New returns an empty store.
func New() *Store {
	return &Store{byKey: map[Key]*Attachment{}, byIf: map[string]Key{}, dirty: map[Key]struct{}{},
		wake: make(chan struct{}, 1), waiters: map[Key]chan struct{}{}, changed: make(chan struct{})}
}

func (s *Store) next() uint64 {
	s.seq++
	return s.seq
}

// notifyLocked wakes the key's waiters and everyone watching the store; with
// dirty it also tells the reconciler.
func (s *Store) notifyLocked(k Key, dirty bool) {
	if ch, ok := s.waiters[k]; ok {
		close(ch)
		delete(s.waiters, k)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	if dirty {
		s.dirty[k] = struct{}{}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *Store) insertLocked(a *Attachment) error {
	if _, ok := s.byKey[a.Key]; ok {
		return fmt.Errorf("attachment %s: %w", a.Key, ErrExists)
	}
	if k, ok := s.byIf[a.HostIfName]; ok && a.HostIfName != "" {
		return fmt.Errorf("host interface %s belongs to attachment %s: %w", a.HostIfName, k, ErrExists)
	}
	a.Incarnation = s.next()
	a.Gen = s.next()
	a.Flows = FlowReport{}
	s.byKey[a.Key] = a
	if a.HostIfName != "" {
		s.byIf[a.HostIfName] = a.Key
	}
	s.notifyLocked(a.Key, true)
	return nil
}

// Reserve adds a new entry in state Pending.
func (s *Store) Reserve(a Attachment) (Attachment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.State = Pending
	a.Timeline = slices.Clone(a.Timeline)
	e := &a
	if err := s.insertLocked(e); err != nil {
		return Attachment{}, err
	}
	return e.clone(), nil
}

// Restore adds an entry found in durable state (OVSDB) at start, in state
// Plumbed (its port exists).
func (s *Store) Restore(a Attachment) (Attachment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.State, a.Restored = Plumbed, true
	e := &a
	if err := s.insertLocked(e); err != nil {
		return Attachment{}, err
	}
	return e.clone(), nil
}

// Update changes the entry of k, provided it is still incarnation inc, and
// raises its generation: use it for whatever the flows depend on (state,
// address, port). It returns the new value.
func (s *Store) Update(k Key, inc uint64, f func(*Attachment)) (Attachment, error) {
	return s.update(k, inc, true, f)
}

// Annotate changes the entry like Update but keeps its generation, for what
// the flows do not depend on (the ADD timeline, the host MAC, a plumbing
// error, ReadyAt).
func (s *Store) Annotate(k Key, inc uint64, f func(*Attachment)) (Attachment, error) {
	return s.update(k, inc, false, f)
}

func (s *Store) update(k Key, inc uint64, bump bool, f func(*Attachment)) (Attachment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byKey[k]
	if !ok || e.Incarnation != inc {
		return Attachment{}, fmt.Errorf("attachment %s: %w", k, ErrGone)
	}
	host := e.HostIfName
	f(e)
	// The key, incarnation and host interface are fixed for an entry's
	// life: the indexes rely on them.
	e.Key, e.Incarnation, e.HostIfName = k, inc, host
	if bump {
		e.Gen = s.next()
	}
	s.notifyLocked(k, bump)
	return e.clone(), nil
}

// Remove deletes the entry of k if it is still incarnation inc.
func (s *Store) Remove(k Key, inc uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byKey[k]
	if !ok || e.Incarnation != inc {
		return false
	}
	delete(s.byKey, k)
	if s.byIf[e.HostIfName] == k {
		delete(s.byIf, e.HostIfName)
	}
	s.notifyLocked(k, true)
	return true
}

// Get returns the entry of k.
func (s *Store) Get(k Key) (Attachment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byKey[k]
	if !ok {
		return Attachment{}, false
	}
	return e.clone(), true
}

// Has reports whether k has an entry, in any state.
func (s *Store) Has(k Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byKey[k]
	return ok
}

// ByHostIf returns the entry whose host interface (OVS port) is name.
func (s *Store) ByHostIf(name string) (Attachment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.byIf[name]
	if !ok {
		return Attachment{}, false
	}
	return s.byKey[k].clone(), true
}

// ByPod returns the entries of a Kubernetes pod (namespace and name).
func (s *Store) ByPod(namespace, name string) []Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Attachment
	for _, e := range s.byKey {
		if e.Pod.Namespace == namespace && e.Pod.Name == name {
			out = append(out, e.clone())
		}
	}
	return out
}

// List returns every entry.
func (s *Store) List() []Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Attachment, 0, len(s.byKey))
	for _, e := range s.byKey {
		out = append(out, e.clone())
	}
	return out
}

// Len is the number of entries.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}

// Dirty receives a value when keys are waiting in TakeDirty.
func (s *Store) Dirty() <-chan struct{} { return s.wake }

// TakeDirty returns and clears the keys changed since the last call.
func (s *Store) TakeDirty() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Key, 0, len(s.dirty))
	for k := range s.dirty {
		out = append(out, k)
	}
	clear(s.dirty)
	return out
}

// MarkDirty hands keys to the reconciler again (a retry, a repair).
func (s *Store) MarkDirty(keys ...Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.dirty[k] = struct{}{}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// MarkAllDirty hands every key to the reconciler.
func (s *Store) MarkAllDirty() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.byKey {
		s.dirty[k] = struct{}{}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ReportFlows records the reconciler's outcome for generation gen of
// incarnation inc: in says whether the flows are on the switch; err, if not
// nil, says why the attempt failed (in then keeps its previous value). A
// report about an older generation than the last one recorded is ignored.
func (s *Store) ReportFlows(k Key, inc, gen uint64, in bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byKey[k]
	if !ok || e.Incarnation != inc || gen < e.Flows.Gen {
		return
	}
	r := FlowReport{Gen: gen, In: in}
	if err != nil {
		r.In, r.Err = e.Flows.In, err
		if e.Flows.Gen == gen {
			r.Attempts = e.Flows.Attempts
		}
		r.Attempts++
	}
	e.Flows = r
	s.notifyLocked(k, false)
}

// Wait blocks until cond holds for the entry of k (ok false: there is
// none), re-evaluating it whenever that entry changes, or ctx ends. cond
// must not block; a non-nil error from it ends the wait.
func (s *Store) Wait(ctx context.Context, k Key, cond func(a Attachment, ok bool) (bool, error)) (Attachment, error) {
	for {
		s.mu.Lock()
		e, ok := s.byKey[k]
		var a Attachment
		if ok {
			a = e.clone()
		}
		ch, have := s.waiters[k]
		if !have {
			ch = make(chan struct{})
			s.waiters[k] = ch
		}
		s.mu.Unlock()
		done, err := cond(a, ok)
		if err != nil || done {
			return a, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return a, ctx.Err()
		}
	}
}

// Changed returns a channel closed at the next change of any entry.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitAll blocks until cond holds for the whole store, re-evaluating it on
// every change, or ctx ends.
func (s *Store) WaitAll(ctx context.Context, cond func([]Attachment) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s.List()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

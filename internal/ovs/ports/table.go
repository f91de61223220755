// Package ports keeps ovsnet's view of the bridge's OpenFlow ports and
// answers "is this port ready?" (ready.go: the second sync point).
//
// The view is state, not a stream of events: the OpenFlow side is seeded
// from a PORT_DESC dump on every (re)connect and then updated by PORT_STATUS
// messages; the OVSDB side is the monitored cache (Interface.ofport). A
// PORT_STATUS lost during a reconnect, or sent before anyone listened, is
// covered by the next dump and by OVSDB; it only ever makes a wait faster.
//
// Each OpenFlow port entry carries an incarnation number, raised whenever a
// port appears that the table did not know under that name with that number
// and MAC. A port deleted and re-added under the same name is a new
// incarnation, so a waiter that registered before creating its port is never
// satisfied by the port's predecessor.
package ports

import (
	"bytes"
	"sync"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// DB is the part of the OVSDB client the table reads.
type DB interface {
	InterfaceByUUID(uuid string) (vswitch.Interface, bool, error)
	OnInterfaceChange(func(name string))
}

// Table is the bridge's port table. Its methods are safe for concurrent use;
// the feed methods (Reset, Update, Disconnected) never block on readers.
type Table struct {
	db DB

	mu     sync.Mutex
	byName map[string]*entry
	seq    uint64 // last incarnation handed out
	fresh  bool   // the OpenFlow side reflects a live connection
	// byWaiter wakes the waiters of one port name: a change elsewhere on
	// the bridge does not make fifty waiters re-check their ports.
	byWaiter map[string]chan struct{}
	subs     []*Subscription
}

type entry struct {
	port openflow.Port
	inc  uint64
}

// New returns an empty table that reads OVSDB state from db.
func New(db DB) *Table {
	t := &Table{db: db, byName: map[string]*entry{}, byWaiter: map[string]chan struct{}{}}
	db.OnInterfaceChange(t.markDirty)
	return t
}

// Reset replaces the OpenFlow side with a PORT_DESC dump taken on a new
// connection. Entries that match a dumped port by name, number and MAC keep
// their incarnation; everything else in the dump is new.
func (t *Table) Reset(ports []openflow.Port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.byName
	t.byName = make(map[string]*entry, len(ports))
	for i := range ports {
		p := ports[i]
		e, ok := old[p.Name]
		if ok && e.port.PortNo == p.PortNo && bytes.Equal(e.port.HWAddr[:], p.HWAddr[:]) {
			e.port = p
		} else {
			t.seq++
			e = &entry{port: p, inc: t.seq}
		}
		t.byName[p.Name] = e
		t.dirtyLocked(p.Name)
	}
	for name := range old {
		if _, ok := t.byName[name]; !ok {
			t.dirtyLocked(name)
		}
	}
	t.fresh = true
	t.broadcastLocked()
}

// Update applies one PORT_STATUS message.
func (t *Table) Update(reason openflow.PortReason, p *openflow.Port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch reason {
	case openflow.PortReasonDelete:
		if e, ok := t.byName[p.Name]; ok && e.port.PortNo == p.PortNo {
			delete(t.byName, p.Name)
		}
	default:
		// ADD, MODIFY, and any reason a newer switch may send: the message
		// carries the port's whole current description.
		e, ok := t.byName[p.Name]
		if ok && e.port.PortNo == p.PortNo && bytes.Equal(e.port.HWAddr[:], p.HWAddr[:]) && reason != openflow.PortReasonAdd {
			e.port = *p
		} else {
			t.seq++
			t.byName[p.Name] = &entry{port: *p, inc: t.seq}
		}
	}
	t.dirtyLocked(p.Name)
}

// Disconnected marks the OpenFlow side stale: until the next Reset, only
// OVSDB can say a port is allocated, and nothing is reported live.
func (t *Table) Disconnected() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.fresh {
		return
	}
	t.fresh = false
	for name := range t.byName {
		t.dirtyLocked(name)
	}
	t.broadcastLocked()
}

// Port returns the OpenFlow view of the named port, if any, and whether that
// view is from a live connection.
func (t *Table) Port(name string) (p openflow.Port, ok, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byName[name]
	if !ok {
		return p, false, t.fresh
	}
	return e.port, true, t.fresh
}

// Ports returns every port on the OpenFlow side.
func (t *Table) Ports() []openflow.Port {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]openflow.Port, 0, len(t.byName))
	for _, e := range t.byName {
		out = append(out, e.port)
	}
	return out
}

// broadcastLocked wakes every waiter: the connection came or went.
func (t *Table) broadcastLocked() {
	for name, ch := range t.byWaiter {
		close(ch)
		delete(t.byWaiter, name)
	}
}

// waitCh returns a channel closed at the next change of the named port on
// either side, or of the connection.
func (t *Table) waitCh(name string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.byWaiter[name]
	if !ok {
		ch = make(chan struct{})
		t.byWaiter[name] = ch
	}
	return ch
}

// markDirty is called by OVSDB for every changed Interface row.
func (t *Table) markDirty(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dirtyLocked(name)
}

func (t *Table) dirtyLocked(name string) {
	if ch, ok := t.byWaiter[name]; ok {
		close(ch)
		delete(t.byWaiter, name)
	}
	for _, s := range t.subs {
		s.add(name)
	}
}

// Subscription collects the names of ports whose state changed on either
// side, coalesced: a port that changes a thousand times before the
// consumer looks is reported once. Producers never wait for the consumer.
type Subscription struct {
	mu    sync.Mutex
	dirty map[string]struct{}
	wake  chan struct{}
}

// Subscribe starts collecting changed port names.
func (t *Table) Subscribe() *Subscription {
	s := &Subscription{dirty: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	t.mu.Lock()
	t.subs = append(t.subs, s)
	t.mu.Unlock()
	return s
}

func (s *Subscription) add(name string) {
	s.mu.Lock()
	s.dirty[name] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// C receives a value whenever names are waiting to be taken.
func (s *Subscription) C() <-chan struct{} { return s.wake }

// Take returns and clears the changed names.
func (s *Subscription) Take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.dirty))
	for n := range s.dirty {
		out = append(out, n)
	}
	clear(s.dirty)
	return out
}

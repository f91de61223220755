package ports

import (
	"context"
	"fmt"
	"math"
	"net"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Port readiness: ovsnet's second sync point with Open vSwitch.
//
// A port is identified by its Interface row UUID and its name, never by the
// name alone. Two conditions can be waited for:
//
//   - Allocated: OVS gave the interface an OpenFlow port number. Known from
//     OVSDB (Interface.ofport > 0 on this very row) or, often earlier, from
//     a PORT_STATUS ADD of a port incarnation newer than the wait's
//     registration.
//   - Live: the port's OpenFlow state has the LIVE bit, on a port entry
//     that belongs to this interface (newer than the registration, or
//     carrying the number OVSDB recorded for this row). Internal ports never
//     become LIVE; wait for Allocated on them.
//
// Waits are level-triggered: each change on either side re-evaluates the
// condition against current state, so a missed message cannot strand a
// waiter; and there is no timeout but the caller's context.

// Cond is what a wait waits for.
type Cond int

const (
	// Allocated: the interface has a valid OpenFlow port number.
	Allocated Cond = iota
	// Live: the port can forward (OpenFlow LIVE).
	Live
)

func (c Cond) String() string {
	if c == Live {
		return "live"
	}
	return "allocated"
}

// Ref names the port a wait is about.
type Ref struct {
	Name string
	// InterfaceUUID is the Interface row's UUID, once known.
	InterfaceUUID string
	// baseline: OpenFlow incarnations above it were created after the ref.
	baseline uint64
}

// Expect returns a reference for a port about to be created: take it before
// the OVSDB transaction that adds the port, so a PORT_STATUS that arrives
// before the transaction's reply already counts. Set InterfaceUUID from the
// transaction's result.
func (t *Table) Expect(name string) Ref {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Ref{Name: name, baseline: t.seq}
}

// Existing returns a reference for a port that may predate this table (an
// agent restart): only OVSDB's record of the row's ofport ties an OpenFlow
// port to it.
func Existing(name, ifaceUUID string) Ref {
	return Ref{Name: name, InterfaceUUID: ifaceUUID, baseline: math.MaxUint64}
}

// Ready describes a port that met its condition.
type Ready struct {
	Name   string
	OFPort uint32
	MAC    net.HardwareAddr // zero until the OpenFlow side has seen the port
	Live   bool
}

// Check evaluates cond for ref once. When not met, why says what is missing.
func (t *Table) Check(ref Ref, cond Cond) (r Ready, ok bool, why string) {
	ofport := 0
	ifaceErr := ""
	if ref.InterfaceUUID != "" {
		iface, found, err := t.db.InterfaceByUUID(ref.InterfaceUUID)
		switch {
		case err != nil:
			ifaceErr = err.Error()
		case !found:
			ifaceErr = "interface row not in OVSDB (yet)"
		default:
			if iface.Ofport != nil {
				ofport = *iface.Ofport
			}
			if iface.Error != nil {
				ifaceErr = *iface.Error
			}
		}
	}

	t.mu.Lock()
	e, haveOF := t.byName[ref.Name]
	fresh := t.fresh
	var p openflow.Port
	var newer bool
	if haveOF {
		p = e.port
		newer = e.inc > ref.baseline
	}
	t.mu.Unlock()

	// The OpenFlow entry belongs to this interface if it appeared after the
	// ref was taken or has the number OVSDB recorded for this row.
	ours := haveOF && fresh && (newer || (ofport > 0 && uint32(ofport) == p.PortNo))
	r = Ready{Name: ref.Name}
	switch {
	case ours:
		r.OFPort, r.MAC, r.Live = p.PortNo, p.MAC(), p.Live()
	case ofport > 0:
		r.OFPort = uint32(ofport)
	}

	switch cond {
	case Allocated:
		if r.OFPort > 0 {
			return r, true, ""
		}
	case Live:
		if r.Live {
			return r, true, ""
		}
	}
	switch {
	case ofport == -1:
		why = fmt.Sprintf("OVS cannot open the device yet (ofport -1: %s)", ifaceErr)
	case !fresh:
		why = "OpenFlow connection down"
		if ofport > 0 {
			why += fmt.Sprintf("; OVSDB has ofport %d", ofport)
		}
	case ours:
		why = fmt.Sprintf("port %d is %v, not live", p.PortNo, p.State)
	case r.OFPort > 0:
		why = fmt.Sprintf("OVSDB has ofport %d, OpenFlow has not reported it", r.OFPort)
	case ifaceErr != "":
		why = ifaceErr
	default:
		why = "no OpenFlow port number yet"
	}
	return r, false, why
}

// WaitPort blocks until cond holds for ref, re-checking whenever this port
// changes on the OpenFlow side or its Interface row changes in OVSDB (and
// when the OpenFlow connection comes or goes). It fails only when ctx ends,
// with the last reason the port was not ready.
func (t *Table) WaitPort(ctx context.Context, ref Ref, cond Cond) (Ready, error) {
	for {
		ch := t.waitCh(ref.Name)
		if !t.surelyNotLive(ref, cond) {
			if r, ok, _ := t.Check(ref, cond); ok {
				return r, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			r, _, why := t.Check(ref, cond)
			return r, fmt.Errorf("port %s not %v: %s: %w", ref.Name, cond, why, ctx.Err())
		}
	}
}

// surelyNotLive answers the common "not yet" of a Live wait from the
// OpenFlow side alone, without reading OVSDB.
func (t *Table) surelyNotLive(ref Ref, cond Cond) bool {
	if cond != Live {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byName[ref.Name]
	return !t.fresh || !ok || !e.port.Live()
}

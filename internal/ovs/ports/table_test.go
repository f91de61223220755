package ports

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// fakeDB is an OVSDB cache holding Interface rows.
type fakeDB struct {
	mu        sync.Mutex
	rows      map[string]vswitch.Interface
	listeners []func(string)
}

func newFakeDB() *fakeDB {
	return &fakeDB{rows: map[string]vswitch.Interface{}}
}

func (f *fakeDB) InterfaceByUUID(uuid string) (vswitch.Interface, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rows[uuid]
	return r, ok, nil
}

func (f *fakeDB) OnInterfaceChange(l func(string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listeners = append(f.listeners, l)
}

func (f *fakeDB) set(uuid, name string, ofport int) {
	f.mu.Lock()
	f.rows[uuid] = vswitch.Interface{UUID: uuid, Name: name, Ofport: &ofport}
	ls := f.listeners
	f.mu.Unlock()
	for _, l := range ls {
		l(name)
	}
}

func port(no uint32, name string, mac byte, live bool) *openflow.Port {
	p := &openflow.Port{PortNo: no, Name: name, HWAddr: [6]byte{2, 0, 0, 0, 0, mac}}
	if live {
		p.State = openflow.PortStateLive
	}
	return p
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestPredecessorDoesNotSatisfy(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	tb.Reset([]openflow.Port{*port(5, "veth1", 1, true)})
	db.set("old", "veth1", 5)

	// The pod's port is deleted and re-created under the same name.
	ref := tb.Expect("veth1")
	ref.InterfaceUUID = "new"
	if _, ok, why := tb.Check(ref, Live); ok {
		t.Fatal("the predecessor satisfied the wait")
	} else if why == "" {
		t.Fatal("no reason given")
	}
	tb.Update(openflow.PortReasonDelete, port(5, "veth1", 1, true))
	// OVS may hand the same number to the new port.
	tb.Update(openflow.PortReasonAdd, port(5, "veth1", 2, false))
	if _, ok, _ := tb.Check(ref, Live); ok {
		t.Fatal("live before the LIVE bit")
	}
	r, ok, _ := tb.Check(ref, Allocated)
	if !ok || r.OFPort != 5 {
		t.Fatalf("allocated: %v %+v", ok, r)
	}
	tb.Update(openflow.PortReasonModify, port(5, "veth1", 2, true))
	r, err := tb.WaitPort(ctx(t), ref, Live)
	if err != nil || !r.Live || r.MAC[5] != 2 {
		t.Fatalf("live: %v %+v", err, r)
	}
}

func TestPortStatusBeforeTransactionReply(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	tb.Reset(nil)
	ref := tb.Expect("veth2")
	// PORT_STATUS arrives before the caller learned its interface UUID.
	tb.Update(openflow.PortReasonAdd, port(7, "veth2", 1, true))
	ref.InterfaceUUID = "u2"
	r, err := tb.WaitPort(ctx(t), ref, Live)
	if err != nil || r.OFPort != 7 {
		t.Fatalf("%v %+v", err, r)
	}
}

func TestExistingPortNeedsOVSDBMatch(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	tb.Reset([]openflow.Port{*port(3, "veth3", 1, true)})
	ref := Existing("veth3", "u3")
	if _, ok, _ := tb.Check(ref, Live); ok {
		t.Fatal("an OpenFlow port not tied to the row satisfied the wait")
	}
	done := make(chan error, 1)
	go func() { _, err := tb.WaitPort(ctx(t), ref, Live); done <- err }()
	db.set("u3", "veth3", 3)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A different number in OVSDB means a different port.
	db.set("u3", "veth3", 4)
	if _, ok, _ := tb.Check(ref, Live); ok {
		t.Fatal("port 3 satisfied a row with ofport 4")
	}
}

func TestMissedPortStatusCoveredByDump(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	tb.Reset(nil)
	ref := tb.Expect("veth4")
	ref.InterfaceUUID = "u4"
	tb.Disconnected()
	done := make(chan error, 1)
	go func() { _, err := tb.WaitPort(ctx(t), ref, Live); done <- err }()
	// The port was added while the connection was down: no PORT_STATUS,
	// only the dump on reconnect.
	tb.Reset([]openflow.Port{*port(9, "veth4", 1, true)})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDisconnectedNeverLive(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	tb.Reset([]openflow.Port{*port(3, "veth5", 1, true)})
	db.set("u5", "veth5", 3)
	tb.Disconnected()
	ref := Existing("veth5", "u5")
	if _, ok, why := tb.Check(ref, Live); ok || why == "" {
		t.Fatalf("live while disconnected (why %q)", why)
	}
	if _, ok, _ := tb.Check(ref, Allocated); !ok {
		t.Fatal("OVSDB's ofport should still count as allocated")
	}
}

func TestWaitEndsWithContextAndReason(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	tb.Reset(nil)
	ref := tb.Expect("veth6")
	ref.InterfaceUUID = "u6"
	db.set("u6", "veth6", -1)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tb.WaitPort(c, ref, Allocated)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "ofport -1") {
		t.Fatalf("%v", err)
	}
}

func TestSubscriptionCoalesces(t *testing.T) {
	db := newFakeDB()
	tb := New(db)
	sub := tb.Subscribe()
	tb.Reset(nil)
	for i := range 1000 {
		tb.Update(openflow.PortReasonModify, port(1, "a", 1, i%2 == 0))
	}
	db.set("ub", "b", 2)
	<-sub.C()
	got := map[string]bool{}
	for _, n := range sub.Take() {
		got[n] = true
	}
	if len(got) != 2 || !got["a"] || !got["b"] {
		t.Fatalf("dirty names %v", got)
	}
	if n := sub.Take(); len(n) != 0 {
		t.Fatalf("Take did not clear: %v", n)
	}
}

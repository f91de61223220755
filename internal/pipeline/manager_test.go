package pipeline

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// fakeSwitch applies bundles to an in-memory flow table keyed by
// table/priority/match, like OVS does for adds and cookie-masked deletes.
type fakeSwitch struct {
	mu      sync.Mutex
	flows   map[string]of.FlowStats
	bundles int
	fail    error
}

func newFakeSwitch() *fakeSwitch { return &fakeSwitch{flows: map[string]of.FlowStats{}} }

func key(table uint8, prio uint16, m of.Match) string {
	return string(rune(table)) + "/" + string(rune(prio)) + "/" + m.String()
}

func (s *fakeSwitch) Bundle(_ context.Context, msgs []of.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.bundles++
	for _, msg := range msgs {
		fm := msg.(*of.FlowMod)
		switch fm.Command {
		case of.FlowAdd:
			s.flows[key(fm.Table, fm.Priority, fm.Match)] = of.FlowStats{Table: fm.Table, Priority: fm.Priority, Cookie: fm.Cookie, Match: fm.Match}
		case of.FlowDelete:
			for k, f := range s.flows {
				if f.Cookie&fm.CookieMask == fm.Cookie&fm.CookieMask {
					delete(s.flows, k)
				}
			}
		}
	}
	return nil
}

func (s *fakeSwitch) DumpFlows(context.Context, *of.FlowStatsRequest) ([]of.FlowStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []of.FlowStats
	for _, f := range s.flows {
		out = append(out, f)
	}
	return out, nil
}

func (s *fakeSwitch) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}

var (
	testNet = Network{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), GatewayIP: netip.MustParseAddr("10.244.0.1"),
		GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 244, 0, 1}}
	pod1 = Endpoint{OFPort: 2, IP: netip.MustParseAddr("10.244.0.2"), MAC: net.HardwareAddr{0x0a, 0x58, 10, 244, 0, 2}}
	pod2 = Endpoint{OFPort: 3, IP: netip.MustParseAddr("10.244.0.3"), MAC: net.HardwareAddr{0x0a, 0x58, 10, 244, 0, 3}}
)

func TestSetRemoveResync(t *testing.T) {
	ctx := context.Background()
	m := NewManager(nil)
	// Before any session, desired state is recorded.
	if err := m.Set(ctx, OwnerBase, BaseFlows()); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Set without session: %v", err)
	}
	sw := newFakeSwitch()
	// A stale flow of a previous agent (round 1) and one from nobody.
	stale := of.NewMatch(of.InPort(99))
	sw.flows["stale"] = of.FlowStats{Table: 0, Priority: 200, Cookie: cookie(1, 7), Match: stale}
	sw.flows["foreign"] = of.FlowStats{Table: 0, Priority: 1, Cookie: 0}
	if err := m.Resync(ctx, sw); err != nil {
		t.Fatal(err)
	}
	if m.Round() != 2 {
		t.Fatalf("round %d, want 2 (1 was in use)", m.Round())
	}
	if got, want := sw.count(), len(BaseFlows()); got != want {
		t.Fatalf("%d flows after resync, want %d (stale ones removed)", got, want)
	}
	if err := m.Set(ctx, OwnerGateway, GatewayFlows(testNet, Endpoint{OFPort: 1, IP: testNet.GatewayIP, MAC: testNet.GatewayMAC})); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, PodOwner("c1", "eth0"), PodFlows(pod1)); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, PodOwner("c2", "eth0"), PodFlows(pod2)); err != nil {
		t.Fatal(err)
	}
	all := len(BaseFlows()) + len(GatewayFlows(testNet, Endpoint{})) + 2*len(PodFlows(pod1))
	if sw.count() != all {
		t.Fatalf("%d flows, want %d", sw.count(), all)
	}
	// Unchanged flows are not sent again.
	before := sw.bundles
	if err := m.Set(ctx, PodOwner("c1", "eth0"), PodFlows(pod1)); err != nil {
		t.Fatal(err)
	}
	if sw.bundles != before {
		t.Fatal("unchanged flows were sent again")
	}
	// A changed port replaces the owner's flows exactly.
	moved := pod1
	moved.OFPort = 9
	if err := m.Set(ctx, PodOwner("c1", "eth0"), PodFlows(moved)); err != nil {
		t.Fatal(err)
	}
	if sw.count() != all {
		t.Fatalf("%d flows after replace, want %d", sw.count(), all)
	}
	if err := m.Remove(ctx, PodOwner("c1", "eth0")); err != nil {
		t.Fatal(err)
	}
	if sw.count() != all-len(PodFlows(pod1)) {
		t.Fatalf("%d flows after remove", sw.count())
	}

	// Session lost: nothing installed; a resync through a new session (an
	// ovs-vswitchd restart: empty switch) restores all.
	m.SessionLost()
	if m.Installed(PodOwner("c2", "eth0")) {
		t.Fatal("installed without a session")
	}
	done := make(chan error, 1)
	go func() { done <- m.WaitInstalled(ctx, PodOwner("c2", "eth0")) }()
	sw2 := newFakeSwitch()
	if err := m.Resync(ctx, sw2); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sw2.count() != all-len(PodFlows(pod1)) {
		t.Fatalf("%d flows after resync on a new switch", sw2.count())
	}
}

func TestSetFailureLeavesOwnerUninstalled(t *testing.T) {
	ctx := context.Background()
	m := NewManager(nil)
	sw := newFakeSwitch()
	if err := m.Resync(ctx, sw); err != nil {
		t.Fatal(err)
	}
	sw.fail = errors.New("rejected")
	if err := m.Set(ctx, PodOwner("c", "eth0"), PodFlows(pod1)); err == nil {
		t.Fatal("no error")
	}
	if m.Installed(PodOwner("c", "eth0")) {
		t.Fatal("installed after a failed bundle")
	}
}

// rejectingSwitch is the fake switch whose bundles fail with rejections of
// the messages adding flows for one pod address.
type rejectingSwitch struct {
	*fakeSwitch
	bad netip.Addr
}

type rejected struct{ idx []int }

func (r *rejected) Error() string          { return "rejected" }
func (r *rejected) RejectedIndexes() []int { return r.idx }

func (s *rejectingSwitch) Bundle(ctx context.Context, msgs []of.Message) error {
	var idx []int
	for i, m := range msgs {
		if fm := m.(*of.FlowMod); fm.Command == of.FlowAdd {
			if f, ok := fm.Match.Get(of.FieldIPv4Src); ok && f.Addr() == s.bad {
				idx = append(idx, i)
			}
		}
	}
	if len(idx) > 0 {
		return &rejected{idx}
	}
	return s.fakeSwitch.Bundle(ctx, msgs)
}

// A batch with one owner the switch rejects installs the others and names
// exactly the rejected owner.
func TestApplySplitsRejectedOwners(t *testing.T) {
	ctx := context.Background()
	m := NewManager(nil)
	sw := &rejectingSwitch{fakeSwitch: newFakeSwitch(), bad: pod1.IP}
	if err := m.Resync(ctx, sw); err != nil {
		t.Fatal(err)
	}
	err := m.Apply(ctx, map[Owner][]Flow{PodOwner("c1", "eth0"): PodFlows(pod1), PodOwner("c2", "eth0"): PodFlows(pod2)})
	var oe OwnerErrors
	if !errors.As(err, &oe) || len(oe) != 1 || oe[PodOwner("c1", "eth0")] == nil {
		t.Fatalf("Apply: %v, want exactly c1 rejected", err)
	}
	var rej Rejections
	if !errors.As(err, &rej) {
		t.Fatal("the owner's error does not carry the switch's rejection")
	}
	if !m.Installed(PodOwner("c2", "eth0")) || sw.count() != len(PodFlows(pod2)) {
		t.Fatalf("c2 not installed beside the rejected c1 (%d flows)", sw.count())
	}
	if m.Installed(PodOwner("c1", "eth0")) {
		t.Fatal("rejected c1 counted as installed")
	}
}

// A removal that fails keeps the owner (a tombstone): the retry sends the
// delete again instead of finding nothing to do; a resync confirms it too.
func TestFailedRemovalIsRetried(t *testing.T) {
	ctx := context.Background()
	m := NewManager(nil)
	sw := newFakeSwitch()
	if err := m.Resync(ctx, sw); err != nil {
		t.Fatal(err)
	}
	owner := PodOwner("c1", "eth0")
	if err := m.Set(ctx, owner, PodFlows(pod1)); err != nil {
		t.Fatal(err)
	}
	sw.fail = errors.New("busy")
	if err := m.Remove(ctx, owner); err == nil {
		t.Fatal("removal reported success although the bundle failed")
	}
	if !m.Known(owner) || sw.count() == 0 {
		t.Fatal("a failed removal forgot the owner or its flows vanished")
	}
	if _, ok := m.Desired()[owner]; ok {
		t.Fatal("a removed owner is still desired")
	}
	sw.fail = nil
	if err := m.Remove(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if m.Known(owner) || sw.count() != 0 {
		t.Fatalf("retried removal: known %v, %d flows left", m.Known(owner), sw.count())
	}

	// Without a session, a removal waits for the next resync, which drops
	// the old round and with it the owner's flows.
	if err := m.Set(ctx, owner, PodFlows(pod1)); err != nil {
		t.Fatal(err)
	}
	m.SessionLost()
	if err := m.Remove(ctx, owner); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Remove without session: %v", err)
	}
	if !m.Known(owner) {
		t.Fatal("removal without a session forgot the owner before the switch did")
	}
	if err := m.Resync(ctx, sw); err != nil {
		t.Fatal(err)
	}
	if m.Known(owner) || sw.count() != 0 {
		t.Fatalf("after resync: known %v, %d flows", m.Known(owner), sw.count())
	}
}

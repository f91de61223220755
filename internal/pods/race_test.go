package pods_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/ipam"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// Each test here pins one interleaving that once broke the pod lifecycle,
// with hooks in the fakes, and checks where the harm would show.

func cniCode(err error) uint {
	var ce *types.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	var coded *cniserver.Error
	if errors.As(err, &coded) {
		return coded.Code
	}
	return 0
}

// A DEL lands after the reconciler has read an attachment and before its
// flows reached the switch. The stale install must not outlive the DEL:
// when DEL returns, no flow of the pod may be on the switch, or the next
// pod on its OpenFlow port could send as it (a SpoofGuard bypass).
func TestDelWhileReconcilerAppliesLeavesNoFlows(t *testing.T) {
	e := newEnv(t, nil)
	ip := ipOf(t, e.mustAdd("a"))
	host := podnet.HostIfName("a", "eth0")

	// OVS renumbers a's port: the reconciler computes new flows, and its
	// bundle is held at the switch.
	g := newGate()
	e.sw.SetBeforeBundle(func(ctx context.Context, msgs []of.Message) error {
		for _, m := range msgs {
			if fm, ok := m.(*of.FlowMod); ok && fm.Command == of.FlowAdd {
				return g.wait(ctx)
			}
		}
		return nil
	})
	e.ovs.renumber(host)
	recv(t, e.ctx, g.held, "the reconciler's install bundle")
	newPort := e.ovs.ofportOf(host)

	delDone := make(chan error, 1)
	go func() { delDone <- e.del(e.ctx, "a") }()
	// DEL marks the attachment Deleting and waits for the flows to go.
	if _, err := e.svc.Store().Wait(e.ctx, attachments.Key{ContainerID: "a", IfName: "eth0"},
		func(a attachments.Attachment, ok bool) (bool, error) {
			return ok && a.State == attachments.Deleting, nil
		}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-delDone:
		t.Fatalf("DEL returned (%v) while the pod's install bundle was still in flight", err)
	default:
	}
	if p := e.ovs.portNames(); len(p) != 1 {
		t.Fatalf("OVS port deleted before the flows: ports %v", p)
	}
	e.sw.SetBeforeBundle(nil)
	g.release()
	if err := recv(t, e.ctx, delDone, "DEL"); err != nil {
		t.Fatal(err)
	}
	if left := e.podFlows("a", ip, newPort); len(left) > 0 {
		t.Fatalf("DEL returned with %d flows of the deleted pod on the switch, e.g. %s", len(left), left[0].FlowString())
	}
	if e.flows.Known(pipeline.PodOwner("a", "eth0")) {
		t.Fatal("the flow manager still has the deleted pod as an owner: a resync would reinstall it")
	}
	// The next pod gets a's OpenFlow port number in the worst case; its
	// flows are its own.
	e.mustAdd("b")
	e.checkInvariants()
	e.mustDel("b")
	e.checkEmpty()
}

// A CNI GC runs while an ADD is between its address allocation and its
// port. The address is the ADD's: GC must neither release it nor delete the
// attachment, and the next ADD must get another address.
func TestGCDuringAddKeepsTheAddress(t *testing.T) {
	e := newEnv(t, nil)
	g := newGate()
	e.pl.SetBeforeSetup(func(ctx context.Context, cfg podnet.Config) error {
		if strings.HasSuffix(cfg.NetnsPath, "/a") {
			return g.wait(ctx)
		}
		return nil
	})
	addDone := make(chan error, 1)
	go func() { _, err := e.add(e.ctx, "a"); addDone <- err }()
	recv(t, e.ctx, g.held, "ADD a in plumbing")
	al, ok := e.ipam.Lookup(ipam.Owner{ContainerID: "a", IfName: "eth0"})
	if !ok {
		t.Fatal("ADD a holds no address while plumbing")
	}
	// The runtime's GC, with a list that does not know a yet.
	if err := e.svc.GC(e.ctx, &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "ovsnet"}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got, ok := e.ipam.Lookup(ipam.Owner{ContainerID: "a", IfName: "eth0"}); !ok || got.IP != al.IP {
		t.Fatalf("GC released the address of a pod being added (was %s, now %v %v)", al.IP, got.IP, ok)
	}
	// Another pod meanwhile must not get a's address.
	ipB := ipOf(t, e.mustAdd("b"))
	if ipB == al.IP {
		t.Fatalf("two pods got %s", ipB)
	}
	g.release()
	if err := recv(t, e.ctx, addDone, "ADD a"); err != nil {
		t.Fatal(err)
	}
	e.checkInvariants()
	// A GC whose list names neither collects both, once they exist.
	if err := e.svc.GC(e.ctx, &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "ovsnet"}); err != nil {
		t.Fatal(err)
	}
	e.checkEmpty()
}

// GC judges only its own network's attachments.
func TestGCKeepsOtherNetworks(t *testing.T) {
	e := newEnv(t, nil)
	e.mustAdd("a")
	if err := e.svc.GC(e.ctx, &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "another-network"}); err != nil {
		t.Fatal(err)
	}
	if e.svc.Store().Len() != 1 {
		t.Fatal("GC of another network deleted an ovsnet attachment")
	}
	if err := e.svc.GC(e.ctx, &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "ovsnet",
		ValidAttachments: []types.GCAttachment{{ContainerID: "a", IfName: "eth0"}}}); err != nil {
		t.Fatal(err)
	}
	if e.svc.Store().Len() != 1 {
		t.Fatal("GC deleted a valid attachment")
	}
}

// A bundle that fails without ending the session (the switch was busy, a
// transient error) is retried: ADD does not wait for an unrelated change.
func TestFailedBundleIsRetried(t *testing.T) {
	e := newEnv(t, nil)
	fails := 3
	e.sw.SetBeforeBundle(func(context.Context, []of.Message) error {
		if fails > 0 {
			fails--
			return errInjected
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if _, err := e.add(ctx, "a"); err != nil {
		t.Fatalf("ADD after transient bundle failures: %v", err)
	}
	if fails != 0 {
		t.Fatalf("%d injected failures left: the bundle was not retried", fails)
	}
}

// One pod's rejected flow does not hold back the others in its batch; the
// rejected pod's ADD fails at once with the switch's reason.
func TestRejectedOwnerDoesNotStallOthers(t *testing.T) {
	e := newEnv(t, nil)
	bad := netip.MustParseAddr("10.244.0.2") // the first address IPAM hands out
	e.sw.SetReject(func(fm *of.FlowMod) bool {
		if f, ok := fm.Match.Get(of.FieldIPv4Src); ok && f.Addr() == bad {
			return true
		}
		return false
	})
	// Hold the first bundle so both pods' flows meet in one batch.
	g := newGate()
	first := true
	e.sw.SetBeforeBundle(func(ctx context.Context, _ []of.Message) error {
		if first {
			first = false
			return g.wait(ctx)
		}
		return nil
	})
	errA := make(chan error, 1)
	go func() { _, err := e.add(e.ctx, "a"); errA <- err }()
	recv(t, e.ctx, g.held, "a's bundle")
	errB := make(chan error, 1)
	go func() { _, err := e.add(e.ctx, "b"); errB <- err }()
	// b is declared (its port exists) before the held bundle goes on.
	if err := e.svc.Store().WaitAll(e.ctx, func(l []attachments.Attachment) bool {
		for _, a := range l {
			if a.ContainerID == "b" && a.State == attachments.Plumbed {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	g.release()
	if err := recv(t, e.ctx, errB, "ADD b"); err != nil {
		t.Fatalf("ADD b stalled behind a's rejected flows: %v", err)
	}
	err := recv(t, e.ctx, errA, "ADD a")
	if err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("ADD a: %v, want the switch's rejection", err)
	}
	if left := e.podFlows("a", bad, 0); len(left) > 0 {
		t.Fatalf("flows of the rejected pod on the switch: %s", left[0].FlowString())
	}
}

// A DEL whose flow removal fails keeps its tombstone: the port stays (its
// flows still reference it), DEL answers "try again later", and the
// runtime's retry completes with nothing left.
func TestFailedFlowRemovalKeepsTombstone(t *testing.T) {
	e := newEnv(t, nil)
	ip := ipOf(t, e.mustAdd("a"))
	port := e.ovs.ofportOf(podnet.HostIfName("a", "eth0"))
	e.sw.SetBeforeBundle(func(context.Context, []of.Message) error { return errInjected })
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	err := e.del(ctx, "a")
	cancel()
	if err == nil {
		t.Fatal("DEL succeeded although the pod's flows could not be removed")
	}
	if c := cniCode(err); c != types.ErrTryAgainLater {
		t.Fatalf("DEL: code %d (%v), want 11", c, err)
	}
	if len(e.podFlows("a", ip, port)) == 0 {
		t.Fatal("flows gone although every bundle failed")
	}
	if len(e.ovs.portNames()) != 1 {
		t.Fatal("the port was deleted while its flows are on the switch")
	}
	e.sw.SetBeforeBundle(nil)
	e.mustDel("a")
	if left := e.podFlows("a", ip, port); len(left) > 0 {
		t.Fatalf("the retried DEL left %s", left[0].FlowString())
	}
	e.checkEmpty()
}

// CHECK asks the switch: flows deleted behind the agent's back fail it, and
// the reconciler puts them back.
func TestCheckFindsAndRepairsMissingFlows(t *testing.T) {
	e := newEnv(t, nil)
	res := e.mustAdd("a")
	if err := e.check(e.ctx, "a", res); err != nil {
		t.Fatalf("CHECK of a healthy pod: %v", err)
	}
	want := len(e.podFlows("a", ipOf(t, res), 0))
	if n := e.sw.DeleteWhere(func(f of.FlowStats) bool {
		o, _ := e.flows.OwnerOf(f.Cookie)
		return o == pipeline.PodOwner("a", "eth0") && f.Table == pipeline.TableSpoofGuard
	}); n == 0 {
		t.Fatal("no SpoofGuard flow of the pod to delete")
	}
	err := e.check(e.ctx, "a", res)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("CHECK with flows deleted behind the agent: %v, want the missing flows named", err)
	}
	e.waitSwitch("the pod's flows to come back", func() bool { return len(e.podFlows("a", ipOf(t, res), 0)) == want })
	if err := e.check(e.ctx, "a", res); err != nil {
		t.Fatalf("CHECK after the repair: %v", err)
	}
}

// CHECK compares all of prevResult, and an unknown attachment is code 3.
func TestCheckPrevResultAndUnknown(t *testing.T) {
	e := newEnv(t, nil)
	if c := cniCode(e.check(e.ctx, "ghost", nil)); c != types.ErrUnknownContainer {
		t.Fatalf("CHECK of an unknown attachment: code %d, want 3", c)
	}
	res := e.mustAdd("a")
	for name, mutate := range map[string]func(){
		"pod MAC":   func() { res.Interfaces[1].Mac = "0a:58:00:00:00:01" },
		"sandbox":   func() { res.Interfaces[1].Sandbox = "/var/run/netns/other" },
		"address":   func() { res.IPs[0].Address.IP = netip.MustParseAddr("10.244.0.99").AsSlice() },
		"gateway":   func() { res.IPs[0].Gateway = netip.MustParseAddr("10.244.0.9").AsSlice() },
		"route":     func() { res.Routes = nil },
		"interface": func() { res.Interfaces = res.Interfaces[:1] },
	} {
		good := e.mustAdd("a") // the same answer again (ADD is idempotent)
		res = good
		mutate()
		if err := e.check(e.ctx, "a", res); err == nil {
			t.Errorf("CHECK with a wrong %s in prevResult passed", name)
		}
	}
}

// DEL of an unknown attachment removes only what is provably ovsnet's.
func TestDelUnknownLeavesForeignInterface(t *testing.T) {
	e := newEnv(t, nil)
	e.pl.Foreign = func(netns, ifName string) bool { return true }
	if _, err := e.pl.Setup(e.ctx, podnet.Config{NetnsPath: "/var/run/netns/ghost", IfName: "eth0",
		HostIfName: podnet.HostIfName("other", "eth0"), Address: netip.MustParsePrefix("10.9.0.2/24"), Gateway: netip.MustParseAddr("10.9.0.1")}); err != nil {
		t.Fatal(err)
	}
	if err := e.del(e.ctx, "ghost"); err != nil {
		t.Fatal(err)
	}
	if len(e.pl.Interfaces()) != 1 {
		t.Fatal("DEL of an unknown attachment removed an interface that was not its")
	}
}

// A port that disappears from OVSDB while its pod lives (conf.db lost) is
// re-created, and the pod's flows follow its new OpenFlow number.
func TestLostPortIsRecreated(t *testing.T) {
	e := newEnv(t, nil)
	res := e.mustAdd("a")
	host := podnet.HostIfName("a", "eth0")
	old := e.ovs.ofportOf(host)
	e.ovs.lose(host)
	if err := e.svc.Store().WaitAll(e.ctx, func([]attachments.Attachment) bool { return e.ovs.ofportOf(host) != 0 }); err != nil {
		t.Fatalf("port never re-created: %v", err)
	}
	if err := e.svc.WaitReady(e.ctx, "a", "eth0"); err != nil {
		t.Fatal(err)
	}
	now := e.ovs.ofportOf(host)
	if now == old {
		t.Fatalf("re-created port kept number %d; the fake renumbers", now)
	}
	e.waitSwitch("flows on the new port", func() bool {
		return len(e.flowsOnPort(now)) > 0 && len(e.flowsOnPort(old)) == 0
	})
	if err := e.check(e.ctx, "a", res); err != nil {
		t.Fatalf("CHECK after the port came back: %v", err)
	}
	e.checkInvariants()
}

// A restarted agent finds a pod whose port was lost with conf.db while the
// agent was down: IPAM still records it with its namespace, the interface
// is there, so the pod is adopted and its port re-created instead of its
// address being released (and given to another pod).
func TestRestoreAdoptsPodWithoutPort(t *testing.T) {
	e := newEnv(t, nil)
	ip := ipOf(t, e.mustAdd("a"))
	e.stop()
	e.ovs.lose(podnet.HostIfName("a", "eth0"))
	e.start()
	if err := e.svc.WaitReady(e.ctx, "a", "eth0"); err != nil {
		t.Fatalf("pod without port not adopted: %v", err)
	}
	if got, ok := e.ipam.Lookup(ipam.Owner{ContainerID: "a", IfName: "eth0"}); !ok || got.IP != ip {
		t.Fatalf("address of the adopted pod: %v %v, want %s", got.IP, ok, ip)
	}
	if ipOf(t, e.mustAdd("b")) == ip {
		t.Fatal("another pod got the adopted pod's address")
	}
	e.checkInvariants()
}

// Two OVSDB ports claiming one address at restore: the one IPAM records
// keeps it and its flows; the other gets none and CHECK says why.
func TestRestoreConflictGetsNoFlows(t *testing.T) {
	e := newEnv(t, nil)
	resA := e.mustAdd("a")
	e.stop()
	// A stale copy of a's port under another container's name.
	ids := map[string]string{}
	i, _, _ := e.ovs.Interface(podnet.HostIfName("a", "eth0"))
	for k, v := range i.ExternalIDs {
		ids[k] = v
	}
	ids["ovsnet.io/container-id"] = "z"
	if _, err := e.ovs.AddPort(e.ctx, "br-int", portSpec(podnet.HostIfName("z", "eth0"), ids)); err != nil {
		t.Fatal(err)
	}
	e.start()
	if err := e.svc.WaitReady(e.ctx, "a", "eth0"); err != nil {
		t.Fatal(err)
	}
	z, ok := e.svc.Store().Get(attachments.Key{ContainerID: "z", IfName: "eth0"})
	if !ok || z.Conflict == "" {
		t.Fatalf("conflicting attachment not marked: %+v", z)
	}
	if err := e.check(e.ctx, "z", nil); err == nil || !strings.Contains(err.Error(), "also held") {
		t.Fatalf("CHECK of the conflicting attachment: %v", err)
	}
	if left := e.podFlows("z", netip.Addr{}, e.ovs.ofportOf(podnet.HostIfName("z", "eth0"))); len(left) > 0 {
		t.Fatalf("the conflicting attachment has flows: %s", left[0].FlowString())
	}
	if err := e.check(e.ctx, "a", resA); err != nil {
		t.Fatal(err)
	}
}

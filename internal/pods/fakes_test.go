package pods_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/keyqueue"
	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/pipeline/pipelinetest"
	"github.com/ovsnet/ovsnet/internal/podnet"
	"github.com/ovsnet/ovsnet/internal/podnet/podnettest"
	"github.com/ovsnet/ovsnet/internal/pods"
)

// fakeOVS is OVSDB's Interface table and the OpenFlow port table in one:
// a port added through OVSDB gets the next OpenFlow number and (unless
// held) is reported LIVE to the port table, as ovs-vswitchd would.
type fakeOVS struct {
	mu        sync.Mutex
	ifaces    map[string]vswitch.Interface
	uuids     int
	ofport    int
	seq       uint64
	connected bool
	changed   chan struct{}
	listeners []func(string)
	table     *ports.Table
	// addPortErr, if set, fails AddPort of a name.
	addPortErr func(name string) error
	// failDeletes fails that many DeletePorts calls.
	failDeletes int
}

var (
	_ pods.DB  = (*fakeOVS)(nil)
	_ ports.DB = (*fakeOVS)(nil)
)

func newFakeOVS() *fakeOVS {
	return &fakeOVS{ifaces: map[string]vswitch.Interface{}, connected: true, seq: 1, changed: make(chan struct{}), ofport: 1}
}

func (f *fakeOVS) notifyLocked(name string) []func(string) {
	close(f.changed)
	f.changed = make(chan struct{})
	return slices.Clone(f.listeners)
}

func (f *fakeOVS) Interface(name string) (vswitch.Interface, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected {
		return vswitch.Interface{}, false, ovsdb.ErrNotConnected
	}
	i, ok := f.ifaces[name]
	return i, ok, nil
}

func (f *fakeOVS) InterfaceByUUID(uuid string) (vswitch.Interface, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.ifaces {
		if i.UUID == uuid {
			return i, true, nil
		}
	}
	return vswitch.Interface{}, false, nil
}

func (f *fakeOVS) Interfaces(keep func(*vswitch.Interface) bool) ([]vswitch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []vswitch.Interface
	for _, i := range f.ifaces {
		if keep(&i) {
			out = append(out, i)
		}
	}
	return out, nil
}

func (f *fakeOVS) AddPort(_ context.Context, _ string, spec ovsdb.PortSpec) (ovsdb.AddedPort, error) {
	f.mu.Lock()
	if f.addPortErr != nil {
		if err := f.addPortErr(spec.Name); err != nil {
			f.mu.Unlock()
			return ovsdb.AddedPort{}, err
		}
	}
	if !f.connected {
		f.mu.Unlock()
		return ovsdb.AddedPort{}, ovsdb.ErrNotConnected
	}
	f.uuids++
	f.ofport++
	no := f.ofport
	uuid := fmt.Sprintf("uuid-%d", f.uuids)
	f.ifaces[spec.Name] = vswitch.Interface{UUID: uuid, Name: spec.Name, Ofport: &no, ExternalIDs: maps.Clone(spec.ExternalIDs)}
	ls := f.notifyLocked(spec.Name)
	table := f.table
	f.mu.Unlock()
	for _, l := range ls {
		l(spec.Name)
	}
	if table != nil {
		table.Update(openflow.PortReasonAdd, &openflow.Port{PortNo: uint32(no), Name: spec.Name, State: openflow.PortStateLive})
	}
	return ovsdb.AddedPort{PortUUID: "p-" + uuid, InterfaceUUID: uuid}, nil
}

func (f *fakeOVS) DeletePorts(_ context.Context, _ string, names ...string) error {
	f.mu.Lock()
	if f.failDeletes > 0 {
		f.failDeletes--
		f.mu.Unlock()
		return errInjected
	}
	if !f.connected {
		f.mu.Unlock()
		return ovsdb.ErrNotConnected
	}
	var gone []vswitch.Interface
	for _, n := range names {
		if i, ok := f.ifaces[n]; ok {
			gone = append(gone, i)
			delete(f.ifaces, n)
		}
	}
	ls := f.notifyLocked("")
	table := f.table
	f.mu.Unlock()
	for _, i := range gone {
		for _, l := range ls {
			l(i.Name)
		}
		if table != nil {
			table.Update(openflow.PortReasonDelete, &openflow.Port{PortNo: uint32(*i.Ofport), Name: i.Name})
		}
	}
	return nil
}

// lose drops a port from OVSDB and the switch behind the agent's back (an
// empty conf.db, `ovs-vsctl del-port`).
func (f *fakeOVS) lose(name string) {
	f.mu.Lock()
	saved := f.failDeletes
	f.failDeletes = 0
	f.mu.Unlock()
	_ = f.DeletePorts(context.Background(), "", name)
	f.mu.Lock()
	f.failDeletes += saved
	f.mu.Unlock()
}

func (f *fakeOVS) injectDeleteFailures(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failDeletes = n
}

func (f *fakeOVS) Connected() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected {
		return false, ovsdb.ErrNotConnected
	}
	return true, nil
}

func (f *fakeOVS) ConnectionSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

func (f *fakeOVS) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeOVS) OnInterfaceChange(l func(string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listeners = append(f.listeners, l)
}

func (f *fakeOVS) portNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.ifaces))
}

func (f *fakeOVS) ofportOf(name string) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.ifaces[name]; ok {
		return uint32(*i.Ofport)
	}
	return 0
}

// renumber gives a port a new OpenFlow number, as an ovs-vswitchd restart
// may.
func (f *fakeOVS) renumber(name string) {
	f.mu.Lock()
	i := f.ifaces[name]
	old := *i.Ofport
	f.ofport++
	no := f.ofport
	i.Ofport = &no
	f.ifaces[name] = i
	ls := f.notifyLocked(name)
	table := f.table
	f.mu.Unlock()
	for _, l := range ls {
		l(name)
	}
	table.Update(openflow.PortReasonDelete, &openflow.Port{PortNo: uint32(old), Name: name})
	table.Update(openflow.PortReasonAdd, &openflow.Port{PortNo: uint32(no), Name: name, State: openflow.PortStateLive})
}

// env is a pod service over fakes of everything below it but the store,
// IPAM (on disk in a temp dir), the port table and the flow manager, which
// are the real ones.
type env struct {
	t     *testing.T
	ctx   context.Context
	svc   *pods.Service
	ovs   *fakeOVS
	sw    *pipelinetest.Switch
	flows *pipeline.Manager
	ipam  *ipam.Allocator
	pl    *podnettest.Plumber
	table *ports.Table
	queue *keyqueue.Queue
	cfg   pods.Config
	stop  func()
}

var testNet = pipeline.Network{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), GatewayIP: netip.MustParseAddr("10.244.0.1"),
	GatewayMAC: podnet.MACFromIP(netip.MustParseAddr("10.244.0.1"))}

func newEnv(t *testing.T, mutate func(*pods.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	al, err := ipam.New(ipam.Config{CIDR: testNet.PodCIDR, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, ovs: newFakeOVS(), sw: pipelinetest.New(), flows: pipeline.NewManager(nil), ipam: al,
		pl: podnettest.New(), queue: keyqueue.New()}
	e.table = ports.New(e.ovs)
	e.ovs.table = e.table
	e.table.Reset(nil)
	if err := e.flows.Resync(ctx, e.sw); err != nil {
		t.Fatal(err)
	}
	e.cfg = pods.Config{Bridge: "br-int", Network: testNet, IPAM: al, Plumber: e.pl, DB: e.ovs, Ports: e.table,
		Flows: e.flows, Queue: e.queue, Ready: func() error { return nil }, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond}
	if mutate != nil {
		mutate(&e.cfg)
	}
	e.start()
	return e
}

// start builds the service, restores and runs it; stop ends it.
func (e *env) start() {
	e.t.Helper()
	e.svc = pods.New(e.cfg)
	if err := e.svc.Restore(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = e.svc.Run(ctx); close(done) }()
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(e.stop)
}

func req(id string) *cniapi.Request {
	return &cniapi.Request{CNIVersion: "1.0.0", Network: "ovsnet", ContainerID: id, IfName: "eth0",
		Netns: "/var/run/netns/" + id, Pod: cniapi.PodRef{Namespace: "default", Name: "pod-" + id, UID: "uid-" + id}}
}

// The CNI server calls the verbs in the container's turn; so do these.
func (e *env) add(ctx context.Context, id string) (*current.Result, error) {
	var res *current.Result
	err := e.queue.Do(ctx, id, func() error {
		var err error
		res, err = e.svc.Add(ctx, req(id))
		return err
	})
	return res, err
}

func (e *env) del(ctx context.Context, id string) error {
	return e.queue.Do(ctx, id, func() error { return e.svc.Del(ctx, req(id)) })
}

func (e *env) check(ctx context.Context, id string, prev *current.Result) error {
	r := req(id)
	r.PrevResult = prev
	return e.queue.Do(ctx, id, func() error { return e.svc.Check(ctx, r) })
}

func (e *env) mustAdd(id string) *current.Result {
	e.t.Helper()
	res, err := e.add(e.ctx, id)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", id, err)
	}
	return res
}

func (e *env) mustDel(id string) {
	e.t.Helper()
	if err := e.del(e.ctx, id); err != nil {
		e.t.Fatalf("DEL %s: %v", id, err)
	}
}

// podFlows returns the flows on the switch that carry the cookie of id's
// owner in any round, or that match its address or port.
func (e *env) podFlows(id string, ip netip.Addr, ofport uint32) []openflow.FlowStats {
	var out []openflow.FlowStats
	for _, f := range e.sw.Flows() {
		if o, ok := e.flows.OwnerOf(f.Cookie); ok && o == pipeline.PodOwner(id, "eth0") {
			out = append(out, f)
			continue
		}
		for _, fl := range f.Match.Fields {
			v := fl.Value
			if (fl.ID == openflow.FieldIPv4Src || fl.ID == openflow.FieldIPv4Dst || fl.ID == openflow.FieldARPTPA || fl.ID == openflow.FieldARPSPA) &&
				len(v) == 4 && ip.IsValid() && netip.AddrFrom4([4]byte(v)) == ip {
				out = append(out, f)
				break
			}
			if fl.ID == openflow.FieldInPort && ofport != 0 && fl.Uint() == uint64(ofport) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// flowsOnPort returns the flows that match or output to an OpenFlow port.
func (e *env) flowsOnPort(ofport uint32) []openflow.FlowStats {
	var out []openflow.FlowStats
	for _, f := range e.sw.Flows() {
		if fl, ok := f.Match.Get(openflow.FieldInPort); ok && fl.Uint() == uint64(ofport) {
			out = append(out, f)
			continue
		}
		for _, m := range outputRE.FindAllStringSubmatch(openflow.InstructionsString(f.Instructions), -1) {
			if m[1] == strconv.Itoa(int(ofport)) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

var outputRE = regexp.MustCompile(`output:(\d+)`)

func ipOf(t *testing.T, res *current.Result) netip.Addr {
	t.Helper()
	if res == nil || len(res.IPs) != 1 {
		t.Fatalf("result %v: want one IP", res)
	}
	a, _ := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	return a
}

// checkInvariants verifies, between operations, what must always hold:
//   - every flow on the switch is of the current round and belongs to an
//     owner the manager knows; every pod owner among them has an
//     attachment in the store;
//   - no address is held by two attachments, and each attachment's address
//     is the one IPAM holds for it;
//   - every attachment that is not Pending or Deleting has its port.
func (e *env) checkInvariants() {
	e.t.Helper()
	var problems []string
	list := e.svc.Attachments()
	byKey := map[attachments.Key]attachments.Attachment{}
	for _, a := range list {
		byKey[a.Key] = a
	}
	round := e.flows.Round()
	for _, f := range e.sw.Flows() {
		if uint16(f.Cookie>>48) != round {
			problems = append(problems, fmt.Sprintf("flow of round %d on the switch (current %d): %s", f.Cookie>>48, round, f.FlowString()))
			continue
		}
		o, ok := e.flows.OwnerOf(f.Cookie)
		if !ok {
			problems = append(problems, "flow without an owner: "+f.FlowString())
			continue
		}
		if rest, isPod := strings.CutPrefix(string(o), "pod/"); isPod {
			id, ifn, _ := strings.Cut(rest, "/")
			if _, ok := byKey[attachments.Key{ContainerID: id, IfName: ifn}]; !ok {
				problems = append(problems, fmt.Sprintf("flow of %s, which has no attachment: %s", o, f.FlowString()))
			}
		}
	}
	seen := map[netip.Addr]attachments.Key{}
	for _, a := range list {
		if !a.IP.IsValid() {
			continue
		}
		if other, dup := seen[a.IP.Addr()]; dup {
			problems = append(problems, fmt.Sprintf("address %s held by %s and %s", a.IP.Addr(), other, a.Key))
		}
		seen[a.IP.Addr()] = a.Key
		if al, ok := e.ipam.Lookup(ipam.Owner{ContainerID: a.ContainerID, IfName: a.IfName}); !ok || al.IP != a.IP.Addr() {
			problems = append(problems, fmt.Sprintf("attachment %s has %s, IPAM has %v (found %v)", a.Key, a.IP, al.IP, ok))
		}
	}
	if len(problems) > 0 {
		e.t.Fatalf("invariants violated:\n  %s", strings.Join(problems, "\n  "))
	}
}

// checkEmpty verifies that nothing of any pod is left.
func (e *env) checkEmpty() {
	e.t.Helper()
	var problems []string
	if n := e.svc.Store().Len(); n != 0 {
		problems = append(problems, fmt.Sprintf("%d attachments left", n))
	}
	if p := e.ovs.portNames(); len(p) != 0 {
		problems = append(problems, fmt.Sprintf("OVS ports left: %v", p))
	}
	if p := e.pl.Interfaces(); len(p) != 0 {
		problems = append(problems, fmt.Sprintf("interfaces left: %v", p))
	}
	if al := e.ipam.Allocations(); len(al) != 0 {
		problems = append(problems, fmt.Sprintf("%d addresses left: %v", len(al), al))
	}
	for _, f := range e.sw.Flows() {
		if o, ok := e.flows.OwnerOf(f.Cookie); !ok || strings.HasPrefix(string(o), "pod/") {
			problems = append(problems, "pod flow left: "+f.FlowString())
		}
	}
	if len(problems) > 0 {
		e.t.Fatalf("after deleting everything:\n  %s", strings.Join(problems, "\n  "))
	}
}

// waitSwitch waits until cond holds for the switch, re-checking at every
// change of its flow table.
func (e *env) waitSwitch(what string, cond func() bool) {
	e.t.Helper()
	for {
		ch := e.sw.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-e.ctx.Done():
			e.t.Fatalf("waiting for %s: %v", what, e.ctx.Err())
		}
	}
}

// gate is a hook that holds callers until opened, and tells when one is
// held.
type gate struct {
	held chan struct{}
	open chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{held: make(chan struct{}, 16), open: make(chan struct{})} }

func (g *gate) wait(ctx context.Context) error {
	g.held <- struct{}{}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func recv[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
	}
	var zero T
	return zero
}

var errInjected = errors.New("injected failure")

func portSpec(name string, ids map[string]string) ovsdb.PortSpec {
	return ovsdb.PortSpec{Name: name, ExternalIDs: ids}
}

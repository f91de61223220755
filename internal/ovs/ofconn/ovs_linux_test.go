package ofconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

// The bridge as ovsnet configures it: netdev datapath, OpenFlow 1.3 only,
// fail_mode=secure (EnsureBridge's defaults).
const bridge = "br-int"

// ovsEnv is a real OVS with ovsnet's OVSDB client and port table.
type ovsEnv struct {
	o      *ovstest.OVS
	db     *ovsdb.Client
	table  *ports.Table
	events *portEvents
	conn   *Conn
}

func setupOVS(t testing.TB) *ovsEnv {
	t.Helper()
	o := ovstest.Start(t, ovstest.Options{})
	db, err := ovsdb.New(ovsdb.Config{Endpoint: o.DBEndpoint(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = db.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := db.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	next, err := db.EnsureBridge(wctx, ovsdb.BridgeSpec{Name: bridge, DatapathType: "netdev"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Wait(wctx, "bridge applied", func() (bool, error) {
		ok, _, err := db.BridgeApplied(bridge, next)
		return ok, err
	}); err != nil {
		t.Fatal(err)
	}
	return &ovsEnv{o: o, db: db, table: ports.New(db), events: newPortEvents()}
}

// connect starts the controller connection; cfg adds timeouts.
func (e *ovsEnv) connect(t testing.TB, cfg Config) *Conn {
	t.Helper()
	cfg.Bridge, cfg.RunDir, cfg.Ports, cfg.onPortStatus = bridge, e.o.Dir(), e.table, e.events.record
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.conn = c
	return c
}

func startOVS(t *testing.T, cfg Config) *ovsEnv {
	t.Helper()
	e := setupOVS(t)
	e.connect(t, cfg)
	return e
}

// veth creates a veth pair in the OVS namespace, both ends up, so the end
// given to OVS goes LIVE. The namespace and its devices go with the sandbox.
func (e *ovsEnv) veth(t testing.TB, names ...string) {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "link add %s type veth peer name %sp\nlink set %sp up\nlink set %s up\n", n, n, n, n)
	}
	file := filepath.Join(t.TempDir(), "veth.batch")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	e.o.InNetns("ip", "-batch", file)
}

// addPort adds a port through OVSDB without waiting for ovs-vswitchd (as
// ovs-vsctl --no-wait does) and returns a ref taken before the transaction.
func (e *ovsEnv) addPort(ctx context.Context, name, typ string) (ports.Ref, error) {
	ref := e.table.Expect(name)
	added, err := e.db.AddPort(ctx, bridge, ovsdb.PortSpec{Name: name, Type: typ})
	ref.InterfaceUUID = added.InterfaceUUID
	return ref, err
}

// portEvent is one PORT_STATUS as the receive loop saw it.
type portEvent struct {
	at     time.Time
	reason openflow.PortReason
	port   openflow.Port
}

// portEvents records PORT_STATUS messages for assertions and benchmarks.
type portEvents struct {
	mu      sync.Mutex
	all     []portEvent
	changed chan struct{}
}

func newPortEvents() *portEvents { return &portEvents{changed: make(chan struct{})} }

func (p *portEvents) record(at time.Time, reason openflow.PortReason, port *openflow.Port) {
	p.mu.Lock()
	p.all = append(p.all, portEvent{at: at, reason: reason, port: *port})
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *portEvents) of(name string) []portEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []portEvent
	for _, e := range p.all {
		if e.port.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event from index from on that matches.
func (p *portEvents) wait(ctx context.Context, from int, match func(portEvent) bool) (portEvent, int, error) {
	for {
		p.mu.Lock()
		ch := p.changed
		for i := from; i < len(p.all); i++ {
			if match(p.all[i]) {
				e := p.all[i]
				p.mu.Unlock()
				return e, i, nil
			}
		}
		from = len(p.all)
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return portEvent{}, 0, ctx.Err()
		}
	}
}

func (p *portEvents) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.all)
}

// waitDone waits for a session to end, bounded so a regression fails.
func waitDone(t *testing.T, s *Session) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("session %d did not end", s.Seq)
	}
}

type waitResult struct {
	ready ports.Ready
	err   error
}

// waitAsync runs WaitPort in the background.
func (e *ovsEnv) waitAsync(ctx context.Context, ref ports.Ref, cond ports.Cond) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		r, err := e.table.WaitPort(ctx, ref, cond)
		ch <- waitResult{r, err}
	}()
	return ch
}

func TestOVSHandshake(t *testing.T) {
	e := startOVS(t, Config{})
	s := waitSession(t, e.conn)
	br, ok, err := e.db.Bridge(bridge)
	if err != nil || !ok || br.DatapathID == nil {
		t.Fatalf("bridge row: %+v %v %v", br, ok, err)
	}
	want, err := strconv.ParseUint(*br.DatapathID, 16, 64)
	if err != nil {
		t.Fatalf("OVSDB datapath_id %q: %v", *br.DatapathID, err)
	}
	if s.DatapathID != want {
		t.Errorf("session datapath id %016x, OVSDB has %s", s.DatapathID, *br.DatapathID)
	}
	if p, ok, fresh := e.table.Port(bridge); !ok || !fresh || p.PortNo != openflow.PortLocal {
		t.Errorf("bridge's LOCAL port in the table: %v ok=%v fresh=%v", p, ok, fresh)
	}
	if e.o.Vsctl("get", "bridge", bridge, "fail_mode") != "secure" {
		t.Errorf("bridge fail_mode is not secure")
	}
}

func TestOVSVersionMismatch(t *testing.T) {
	e := setupOVS(t)
	e.o.Vsctl("set", "bridge", bridge, "protocols=OpenFlow10")
	c, err := New(Config{Bridge: bridge, RunDir: e.o.Dir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.connect(testCtx(t))
	if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "set protocols=OpenFlow13") {
		t.Fatalf("handshake with an OpenFlow 1.0 bridge: %v", err)
	}
	t.Log(err)
}

func TestOVSPortAddedWhileConnected(t *testing.T) {
	e := startOVS(t, Config{})
	waitSession(t, e.conn)
	ctx := testCtx(t)

	e.veth(t, "ofx-c1")
	ref, err := e.addPort(ctx, "ofx-c1", "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.table.WaitPort(ctx, ref, ports.Live)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Live || r.OFPort == 0 || r.OFPort >= openflow.PortMax {
		t.Errorf("veth ready %+v", r)
	}
	evs := e.events.of("ofx-c1")
	if len(evs) == 0 || evs[0].reason != openflow.PortReasonAdd {
		t.Fatalf("PORT_STATUS for the veth: %v, want ADD first", evs)
	}
	liveAt := slices.IndexFunc(evs, func(e portEvent) bool { return e.port.Live() })
	if liveAt < 0 {
		t.Fatalf("no PORT_STATUS with LIVE: %v", evs)
	}
	t.Logf("veth: ADD state=%v, LIVE in event %d (%v) %v after the ADD", evs[0].port.State, liveAt, evs[liveAt].reason, evs[liveAt].at.Sub(evs[0].at))

	// An internal port is allocated but never live.
	iref, err := e.addPort(ctx, "ofx-c2", "internal")
	if err != nil {
		t.Fatal(err)
	}
	ir, err := e.table.WaitPort(ctx, iref, ports.Allocated)
	if err != nil {
		t.Fatal(err)
	}
	if ir.OFPort == 0 || ir.OFPort == r.OFPort {
		t.Errorf("internal port ready %+v (veth has %d)", ir, r.OFPort)
	}
	if err := e.conn.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if _, live, why := e.table.Check(iref, ports.Live); live {
		t.Errorf("internal port reported live")
	} else {
		t.Logf("internal port not live: %s", why)
	}
}

func TestOVSPortFromDump(t *testing.T) {
	e := setupOVS(t)
	ctx := testCtx(t)
	e.veth(t, "ofx-d1")
	added, err := e.db.AddPort(ctx, bridge, ovsdb.PortSpec{Name: "ofx-d1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Wait(ctx, "ofx-d1 ofport", func() (bool, error) {
		n, err := e.db.Ofport(added.InterfaceUUID)
		return n > 0, err
	}); err != nil {
		t.Fatal(err)
	}
	// Only now does ovsnet connect: no PORT_STATUS will ever announce it.
	e.connect(t, Config{})
	r, err := e.table.WaitPort(ctx, ports.Existing("ofx-d1", added.InterfaceUUID), ports.Live)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Live || r.MAC == nil {
		t.Errorf("existing port ready %+v", r)
	}
	for _, ev := range e.events.of("ofx-d1") {
		if ev.reason == openflow.PortReasonAdd {
			t.Errorf("PORT_STATUS ADD for a port that existed before the connection: %v", ev)
		}
	}
}

// shortTimeouts detect a stopped ovs-vswitchd quickly.
var shortTimeouts = Config{EchoInterval: 200 * time.Millisecond, DeadTimeout: 400 * time.Millisecond, HandshakeTimeout: 2 * time.Second}

func TestOVSPortAddedWhileStopped(t *testing.T) {
	e := startOVS(t, shortTimeouts)
	s1 := waitSession(t, e.conn)
	ctx := testCtx(t)
	e.veth(t, "ofx-s1")

	e.o.Must(e.o.PauseVswitchd())
	t.Cleanup(func() { _ = e.o.ResumeVswitchd() })
	waitDone(t, s1)
	if !errors.Is(s1.Err(), ErrDeadPeer) {
		t.Errorf("session of a stopped ovs-vswitchd ended with %v, want ErrDeadPeer", s1.Err())
	}
	ref, err := e.addPort(ctx, "ofx-s1", "")
	if err != nil {
		t.Fatal(err)
	}
	res := e.waitAsync(ctx, ref, ports.Live)
	if _, ok, why := e.table.Check(ref, ports.Live); ok {
		t.Fatal("port ready while ovs-vswitchd is stopped")
	} else {
		t.Logf("while stopped: %s", why)
	}
	e.o.Must(e.o.ResumeVswitchd())
	r := <-res
	if r.err != nil || !r.ready.Live {
		t.Fatalf("wait across SIGSTOP/SIGCONT: %+v", r)
	}
	if s2 := waitSession(t, e.conn); s2.Seq <= s1.Seq {
		t.Errorf("session %d after %d", s2.Seq, s1.Seq)
	}
}

func TestOVSPortAddedWhileRestarting(t *testing.T) {
	e := startOVS(t, Config{})
	s1 := waitSession(t, e.conn)
	ctx := testCtx(t)
	e.veth(t, "ofx-k1")

	e.o.KillVswitchd()
	waitDone(t, s1)
	ref, err := e.addPort(ctx, "ofx-k1", "")
	if err != nil {
		t.Fatal(err)
	}
	res := e.waitAsync(ctx, ref, ports.Live)
	e.o.StartVswitchd(ovssandbox.Foreground)
	r := <-res
	if r.err != nil || !r.ready.Live {
		t.Fatalf("wait across an ovs-vswitchd restart: %+v", r)
	}
	s2 := waitSession(t, e.conn)
	if s2.Seq <= s1.Seq {
		t.Errorf("session %d after %d", s2.Seq, s1.Seq)
	}
	t.Logf("session %d ended: %v; session %d up", s1.Seq, s1.Err(), s2.Seq)
}

func TestOVSPortReaddedSameName(t *testing.T) {
	e := startOVS(t, Config{})
	waitSession(t, e.conn)
	ctx := testCtx(t)
	e.veth(t, "ofx-r1")
	ref, err := e.addPort(ctx, "ofx-r1", "")
	if err != nil {
		t.Fatal(err)
	}
	old, err := e.table.WaitPort(ctx, ref, ports.Live)
	if err != nil {
		t.Fatal(err)
	}

	// A waiter registered while the old port is still there and live.
	res := e.waitAsync(ctx, e.table.Expect("ofx-r1"), ports.Live)
	if err := e.db.DeletePorts(ctx, bridge, "ofx-r1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.events.wait(ctx, 0, func(ev portEvent) bool {
		return ev.port.Name == "ofx-r1" && ev.reason == openflow.PortReasonDelete
	}); err != nil {
		t.Fatal(err)
	}
	e.o.InNetns("ip", "link", "del", "ofx-r1")
	e.veth(t, "ofx-r1")
	if _, err := e.db.AddPort(ctx, bridge, ovsdb.PortSpec{Name: "ofx-r1"}); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if bytes.Equal(r.ready.MAC, old.MAC) {
		t.Errorf("waiter got the deleted port (MAC %v), not the new one", old.MAC)
	}
	t.Logf("old port %d %v, new port %d %v", old.OFPort, old.MAC, r.ready.OFPort, r.ready.MAC)
}

func TestOVSInterfaceCreatedLater(t *testing.T) {
	e := startOVS(t, Config{})
	waitSession(t, e.conn)
	ctx := testCtx(t)
	ref, err := e.addPort(ctx, "ofx-l1", "")
	if err != nil {
		t.Fatal(err)
	}
	res := e.waitAsync(ctx, ref, ports.Live)
	if err := e.db.Wait(ctx, "ofport -1", func() (bool, error) {
		n, err := e.db.Ofport(ref.InterfaceUUID)
		return n == -1, err
	}); err != nil {
		t.Fatal(err)
	}
	_, _, why := e.table.Check(ref, ports.Live)
	t.Logf("declared, no device: %s", why)

	// The device appears later, as a pod NIC created by the OS would. The
	// timer only schedules the creation; the test waits on the port.
	created := make(chan error, 1)
	timer := time.AfterFunc(2*time.Second, func() {
		_, err := e.o.Sandbox.InNetns(ctx, "ip", "link", "add", "ofx-l1", "type", "veth", "peer", "name", "ofx-l1p")
		if err == nil {
			_, err = e.o.Sandbox.InNetns(ctx, "ip", "link", "set", "ofx-l1p", "up")
		}
		if err == nil {
			_, err = e.o.Sandbox.InNetns(ctx, "ip", "link", "set", "ofx-l1", "up")
		}
		created <- err
	})
	t.Cleanup(func() { timer.Stop() })
	r := <-res
	if r.err != nil || !r.ready.Live {
		t.Fatalf("wait for a late interface: %+v", r)
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
}

func TestOVSManyPorts(t *testing.T) {
	e := startOVS(t, Config{})
	waitSession(t, e.conn)
	ctx := testCtx(t)
	const n = 50
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ofx-m%02d", i)
	}
	e.veth(t, names...)
	results := make([]waitResult, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref, err := e.addPort(ctx, name, "")
			if err != nil {
				results[i].err = err
				return
			}
			results[i].ready, results[i].err = e.table.WaitPort(ctx, ref, ports.Live)
		}()
	}
	wg.Wait()
	seen := map[uint32]string{}
	for i, r := range results {
		if r.err != nil || !r.ready.Live {
			t.Errorf("%s: %+v", names[i], r)
			continue
		}
		if other, dup := seen[r.ready.OFPort]; dup {
			t.Errorf("%s and %s both got ofport %d", names[i], other, r.ready.OFPort)
		}
		seen[r.ready.OFPort] = names[i]
	}
}

func TestOVSStoppedDuringWaits(t *testing.T) {
	e := startOVS(t, shortTimeouts)
	s1 := waitSession(t, e.conn)
	ctx := testCtx(t)
	const n = 20
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ofx-p%02d", i)
	}
	e.veth(t, names...)

	add := make([]chan struct{}, n)
	results := make([]waitResult, n)
	var wg sync.WaitGroup
	for i, name := range names {
		add[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := e.table.Expect(name)
			<-add[i]
			added, err := e.db.AddPort(ctx, bridge, ovsdb.PortSpec{Name: name})
			if err != nil {
				results[i].err = err
				return
			}
			ref.InterfaceUUID = added.InterfaceUUID
			results[i].ready, results[i].err = e.table.WaitPort(ctx, ref, ports.Live)
		}()
	}
	// Half the ports go in while ovs-vswitchd runs, half while it is
	// stopped; it stays stopped for 8 s.
	for i := range n / 2 {
		close(add[i])
	}
	e.o.Must(e.o.PauseVswitchd())
	t.Cleanup(func() { _ = e.o.ResumeVswitchd() })
	for i := n / 2; i < n; i++ {
		close(add[i])
	}
	resumed := make(chan error, 1)
	timer := time.AfterFunc(8*time.Second, func() { resumed <- e.o.ResumeVswitchd() })
	t.Cleanup(func() { timer.Stop() })
	wg.Wait()
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.err != nil || !r.ready.Live {
			t.Errorf("%s: %+v", names[i], r)
		}
	}
	st := e.conn.Stats()
	t.Logf("stats after the pause: %+v", st)
	if s1.Err() == nil || st.DeadPeer == 0 {
		t.Errorf("the 8 s stop was not detected: session 1 %v, stats %+v", s1.Err(), st)
	}
}

// dumpFlows returns `ovs-ofctl --no-stats dump-flows` lines, sorted.
func dumpFlows(o *ovstest.OVS) []string {
	var lines []string
	for _, l := range strings.Split(o.Ofctl("-O", "OpenFlow13", "--no-stats", "dump-flows", bridge), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

func TestOVSBundles(t *testing.T) {
	e := startOVS(t, Config{})
	s := waitSession(t, e.conn)
	ctx := testCtx(t)

	arp := openflow.AddFlow(0, 100, openflow.NewMatch(openflow.EthType(openflow.EthTypeARP)), openflow.Apply(openflow.Output{Port: openflow.PortNormal}))
	arp.Cookie = 0x1
	ip := openflow.AddFlow(0, 90, openflow.NewMatch(openflow.EthType(openflow.EthTypeIPv4)), openflow.GotoTable{Table: 10})
	ip.Cookie = 0x1
	drop := openflow.AddFlow(10, 1, openflow.NewMatch())
	drop.Cookie = 0x1
	if err := s.Bundle(ctx, []openflow.Message{arp, ip, drop}); err != nil {
		t.Fatalf("valid bundle: %v", err)
	}
	want := []string{
		"cookie=0x1, priority=100,arp actions=NORMAL",
		"cookie=0x1, priority=90,ip actions=goto_table:10",
		"cookie=0x1, table=10, priority=1 actions=drop",
	}
	got := dumpFlows(e.o)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("after the bundle, dump-flows lacks %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
	flows, err := s.DumpFlows(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for i := range flows {
		ours = append(ours, flows[i].FlowString())
	}
	slices.Sort(ours)
	if !slices.Equal(ours, got) {
		t.Errorf("DumpFlows:\n%s\novs-ofctl:\n%s", strings.Join(ours, "\n"), strings.Join(got, "\n"))
	}

	// One bad flow: nothing of the bundle is installed.
	good := openflow.AddFlow(0, 6, openflow.NewMatch(openflow.EthType(openflow.EthTypeARP)), openflow.Apply(openflow.Output{Port: openflow.PortNormal}))
	good.Cookie = 0x2
	bad := openflow.AddFlow(0, 5, openflow.NewMatch(openflow.TCPDst(22)), openflow.Apply(openflow.Output{Port: 1})) // tcp_dst without ip,tcp
	bad.Cookie = 0x2
	err = s.Bundle(ctx, []openflow.Message{good, bad, good})
	var be *BundleError
	if !errors.As(err, &be) || len(be.Rejected) != 1 || be.Rejected[0].Index != 1 || be.Rejected[0].Message != bad {
		t.Fatalf("bundle with a bad flow: %v, want a *BundleError naming message 1", err)
	}
	if !errors.Is(err, &openflow.ErrorMsg{ErrType: openflow.ErrBadMatch, Code: 9}) {
		t.Errorf("bundle error %v does not carry OFPBMC_BAD_PREREQ", err)
	}
	t.Log(err)
	for _, l := range dumpFlows(e.o) {
		if strings.Contains(l, "cookie=0x2") {
			t.Errorf("a flow of the rejected bundle was installed: %s", l)
		}
	}

	// The connection stays usable.
	if err := s.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	del := openflow.DeleteFlows(openflow.TableAll, openflow.NewMatch(), 0x1, ^uint64(0))
	if err := s.Bundle(ctx, []openflow.Message{del}); err != nil {
		t.Fatalf("bundle after a rejected one: %v", err)
	}
	if err := s.Apply(ctx, good, bad); err == nil {
		t.Error("apply with a bad flow succeeded")
	} else {
		t.Log(err)
	}
	if !slices.Contains(dumpFlows(e.o), "cookie=0x2, priority=6,arp actions=NORMAL") {
		t.Error("apply is not atomic, yet the good flow is missing")
	}
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
}

func TestOVSInFlightFailsOnDisconnect(t *testing.T) {
	e := startOVS(t, Config{})
	s := waitSession(t, e.conn)
	e.o.Must(e.o.PauseVswitchd())
	t.Cleanup(func() { _ = e.o.ResumeVswitchd() })
	ctx := testCtx(t)
	errc := make(chan error, 2)
	go func() { errc <- s.Barrier(ctx) }()
	go func() {
		errc <- s.Bundle(ctx, []openflow.Message{openflow.AddFlow(0, 1, openflow.NewMatch(), openflow.Apply(openflow.Output{Port: openflow.PortNormal}))})
	}()
	// SIGKILL while stopped: it dies without answering anything. (The
	// harness's KillVswitchd continues the process first, which would let
	// it answer.)
	if err := syscall.Kill(e.o.VswitchdPID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, ErrDisconnected) || ctx.Err() != nil {
			t.Errorf("request in flight when ovs-vswitchd died: %v, want ErrDisconnected", err)
		}
	}
	// While it is down, requests fail fast.
	waitDone(t, s)
	if err := e.conn.Barrier(ctx); !errors.Is(err, ErrDisconnected) {
		t.Errorf("request while disconnected: %v", err)
	}
	// Flows do not survive an ovs-vswitchd restart; the new session says so
	// by its number.
	e.o.KillVswitchd()
	e.o.StartVswitchd(ovssandbox.Foreground)
	if s2 := waitSession(t, e.conn); s2.Seq <= s.Seq {
		t.Errorf("session %d after %d", s2.Seq, s.Seq)
	}
}

// A restarted ovs-vswitchd re-creates the management socket, and that is
// what brings the session back: with a reconnect backoff of an hour and no
// Retry, the session to the new process still comes up.
func TestOVSReconnectsOnSocketCreation(t *testing.T) {
	e := startOVS(t, Config{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	s1 := waitSession(t, e.conn)
	for range 3 {
		e.o.KillVswitchd()
		waitDone(t, s1)
		e.o.StartVswitchd(ovssandbox.Foreground)
		s2 := waitSession(t, e.conn)
		if s2.Seq <= s1.Seq {
			t.Fatalf("session %d after %d", s2.Seq, s1.Seq)
		}
		s1 = s2
	}
}

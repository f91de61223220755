//go:build unix

package ofconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testCtx bounds a test so a broken connection fails it instead of hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startConn runs a Conn against socket until the test ends.
func startConn(t *testing.T, cfg Config) *Conn {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

func waitSession(t *testing.T, c *Conn) *Session {
	t.Helper()
	s, err := c.WaitSession(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitNext waits for a session newer than after.
func waitNext(t *testing.T, c *Conn, after *Session) *Session {
	t.Helper()
	select {
	case <-after.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("session %d did not end", after.Seq)
	}
	s := waitSession(t, c)
	if s.Seq <= after.Seq {
		t.Fatalf("session %d after session %d", s.Seq, after.Seq)
	}
	return s
}

// waitTable waits, on the table's change notifications, until cond holds.
func waitTable(t *testing.T, tb *ports.Table, what string, cond func() bool) {
	t.Helper()
	sub := tb.Subscribe()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-sub.C():
			sub.Take()
		case <-deadline:
			t.Fatalf("port table never showed %s: %v", what, tb.Ports())
		}
	}
}

func TestHandshake(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		sw.ports = []openflow.Port{fakePort(openflow.PortLocal, "br-fake", openflow.PortStateLinkDown),
			fakePort(1, "p1", openflow.PortStateLive), fakePort(2, "p2", 0)}
	})
	tb := ports.New(newFakeDB())
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake", Ports: tb})
	s := waitSession(t, c)
	if s.Seq != 1 || s.DatapathID != 0xabcdef0123 || s.NTables != 254 {
		t.Errorf("session seq %d dpid %x tables %d, want 1, abcdef0123, 254", s.Seq, s.DatapathID, s.NTables)
	}
	if got := len(tb.Ports()); got != 3 {
		t.Errorf("port table has %d ports after a dump of 3 in two parts", got)
	}
	if p, ok, fresh := tb.Port("p1"); !ok || !fresh || !p.Live() {
		t.Errorf("p1 in table: %v ok=%v fresh=%v", p, ok, fresh)
	}

	// What the switch saw, in order.
	peer := sw.nextPeer()
	var types []string
	var setCfg *openflow.SetConfig
	var setAsync *openflow.SetAsync
	peer.waitFor(t, "the port dump request", func(m openflow.Message) bool {
		types = append(types, strings.TrimPrefix(m.Type().String(), "OFPT_"))
		switch m := m.(type) {
		case *openflow.SetConfig:
			setCfg = m
		case *openflow.SetAsync:
			setAsync = m
		}
		_, done := m.(*openflow.PortDescRequest)
		return done
	})
	want := "HELLO FEATURES_REQUEST SET_CONFIG SET_ASYNC BARRIER_REQUEST MULTIPART_REQUEST"
	if strings.Join(types, " ") != want {
		t.Errorf("handshake sent %v, want %s", types, want)
	}
	if setCfg == nil || setCfg.MissSendLen != openflow.MissSendLenNoBuffer {
		t.Errorf("SET_CONFIG %+v, want miss_send_len 0xffff", setCfg)
	}
	if setAsync == nil || setAsync.PortStatusMask != [2]uint32{openflow.AllPortStatus, openflow.AllPortStatus} ||
		setAsync.PacketInMask[0] != 1<<openflow.ReasonAction || setAsync.FlowRemovedMask != [2]uint32{} {
		t.Errorf("SET_ASYNC %+v", setAsync)
	}
	if st := c.Stats(); !st.Connected || st.Sessions != 1 || st.Seq != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRepliesMatchedByXID(t *testing.T) {
	sw := newFakeSwitch(t)
	const n = 8
	var mu sync.Mutex
	var held []*openflow.EchoRequest
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			e, ok := m.(*openflow.EchoRequest)
			if !ok || !strings.HasPrefix(string(e.Data), "req") {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			held = append(held, e)
			if len(held) == n {
				// Answer in reverse order.
				for i := len(held) - 1; i >= 0; i-- {
					p.send(held[i].Reply())
				}
			}
			return true
		}
	})
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := fmt.Sprintf("req%d", i)
			req := &openflow.EchoRequest{Header: openflow.Header{Xid: 99}, Data: []byte(data)}
			r, err := c.Request(testCtx(t), req)
			switch {
			case err != nil:
				errs <- err
			case string(r.(*openflow.EchoReply).Data) != data:
				errs <- fmt.Errorf("request %q got reply %q", data, r.(*openflow.EchoReply).Data)
			case req.Xid != 99:
				errs <- fmt.Errorf("Request changed the caller's message xid to 0x%x", req.Xid)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestMultipart(t *testing.T) {
	sw := newFakeSwitch(t)
	var flows []openflow.FlowStats
	for i := range 5 {
		flows = append(flows, openflow.FlowStats{Table: uint8(i), Priority: uint16(100 + i), Cookie: uint64(i)})
	}
	var pp []openflow.Port
	for i := range 7 {
		pp = append(pp, fakePort(uint32(i+1), fmt.Sprintf("p%d", i+1), 0))
	}
	sw.set(func(sw *fakeSwitch) { sw.flows, sw.ports = flows, pp })
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	ctx := testCtx(t)

	got, err := c.DumpFlows(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("DumpFlows returned %d flows from 3 parts, want 5", len(got))
	}
	for i, f := range got {
		if f.Cookie != uint64(i) {
			t.Errorf("flow %d has cookie %d: parts out of order", i, f.Cookie)
		}
	}
	parts, err := c.Multipart(ctx, &openflow.PortDescRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 4 {
		t.Errorf("port dump of 7 ports in parts of 2: %d parts, want 4", len(parts))
	}
	desc, err := c.PortDesc(ctx)
	if err != nil || len(desc) != 7 {
		t.Errorf("PortDesc: %d ports, %v", len(desc), err)
	}

	if _, err := c.Multipart(ctx, &openflow.BarrierRequest{}); err == nil {
		t.Error("Multipart accepted a barrier")
	}
	if _, err := c.Request(ctx, &openflow.PortDescRequest{}); err == nil {
		t.Error("Request accepted a multipart request")
	}
	if _, err := c.Request(ctx, openflow.NewFlowMod(openflow.FlowAdd)); err == nil {
		t.Error("Request accepted a flow mod, which gets no reply")
	}
}

func TestErrorReply(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			if _, ok := m.(*openflow.RoleRequest); ok {
				p.reject(m, &openflow.ErrorMsg{ErrType: openflow.ErrRoleRequestFailed, Code: 1})
				return true
			}
			return false
		}
	})
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	_, err := c.Request(testCtx(t), &openflow.RoleRequest{})
	var em *openflow.ErrorMsg
	if !errors.As(err, &em) || em.Name() != "OFPRRFC_UNSUP" {
		t.Fatalf("Request error %v, want the switch's OFPRRFC_UNSUP", err)
	}
	if !errors.Is(err, &openflow.ErrorMsg{ErrType: openflow.ErrRoleRequestFailed, Code: 1}) {
		t.Errorf("errors.Is does not match the ERROR in %v", err)
	}
}

func TestEchoFromSwitchAnswered(t *testing.T) {
	sw := newFakeSwitch(t)
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	peer := sw.nextPeer()
	peer.send(&openflow.EchoRequest{Header: openflow.Header{Xid: 0x77}, Data: []byte("ping")})
	r := peer.waitFor(t, "an ECHO_REPLY", func(m openflow.Message) bool { return m.Type() == openflow.TypeEchoReply && m.XID() == 0x77 })
	if string(r.(*openflow.EchoReply).Data) != "ping" {
		t.Errorf("echo reply data %q", r.(*openflow.EchoReply).Data)
	}
}

// truncated returns a message of type typ whose body is too short to decode.
func truncated(typ openflow.Type, xid uint32) []byte {
	b := []byte{openflow.Version13, byte(typ), 0, 10, 0, 0, 0, 0, 1, 2}
	binary.BigEndian.PutUint32(b[4:], xid)
	return b
}

func TestDecodeErrorsSkipped(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			if _, ok := m.(*openflow.GetConfigRequest); ok {
				p.sendRaw(truncated(openflow.TypeGetConfigReply+100, 0))  // unknown type: kept raw
				p.sendRaw(truncated(openflow.TypeFeaturesReply, 0x12345)) // for nobody
				p.sendRaw(truncated(openflow.TypePortStatus, 0))          // for nobody
				p.sendRaw(truncated(openflow.TypeGetConfigReply, m.XID()))
				return true
			}
			return false
		}
	})
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	s := waitSession(t, c)
	ctx := testCtx(t)
	_, err := c.Request(ctx, &openflow.GetConfigRequest{})
	var de *openflow.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("request answered by an undecodable reply: %v, want a *DecodeError", err)
	}
	// The stream is still in sync: the session goes on.
	if err := c.Barrier(ctx); err != nil {
		t.Fatalf("barrier after undecodable messages: %v", err)
	}
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
	st := c.Stats()
	if st.DecodeErrors != 3 || st.Unexpected != 1 {
		t.Errorf("decode errors %d, unexpected %d; want 3 and 1", st.DecodeErrors, st.Unexpected)
	}
}

func TestDeadPeer(t *testing.T) {
	sw := newFakeSwitch(t)
	tb := ports.New(newFakeDB())
	sw.set(func(sw *fakeSwitch) { sw.ports = []openflow.Port{fakePort(1, "p1", openflow.PortStateLive)} })
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake", Ports: tb,
		EchoInterval: 50 * time.Millisecond, DeadTimeout: 100 * time.Millisecond})
	s1 := waitSession(t, c)
	peer := sw.nextPeer()

	// Idle but answering: the keepalive keeps the session.
	peer.waitFor(t, "a keepalive ECHO_REQUEST", func(m openflow.Message) bool { return m.Type() == openflow.TypeEchoRequest })
	peer.waitFor(t, "a second keepalive ECHO_REQUEST", func(m openflow.Message) bool { return m.Type() == openflow.TypeEchoRequest })
	if s1.Err() != nil {
		t.Fatalf("answering switch dropped: %v", s1.Err())
	}

	// The switch stops answering but keeps the socket open.
	peer.silent.Store(true)
	errc := make(chan error, 1)
	go func() { errc <- s1.Barrier(testCtx(t)) }()
	s2 := waitNext(t, c, s1)
	if !errors.Is(s1.Err(), ErrDeadPeer) {
		t.Errorf("silent switch ended the session with %v, want ErrDeadPeer", s1.Err())
	}
	if err := <-errc; !errors.Is(err, ErrDisconnected) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("barrier in flight: %v, want ErrDisconnected", err)
	} else {
		t.Log(err)
	}
	// A request pinned to the old session fails at once.
	if err := s1.Barrier(testCtx(t)); !errors.Is(err, ErrDisconnected) {
		t.Errorf("request on an ended session: %v, want ErrDisconnected", err)
	}
	if err := s2.Barrier(testCtx(t)); err != nil {
		t.Errorf("request on the new session: %v", err)
	}
	if p, ok, fresh := tb.Port("p1"); !ok || !fresh || !p.Live() {
		t.Errorf("p1 after reconnect: %v ok=%v fresh=%v", p, ok, fresh)
	}
	if st := c.Stats(); st.DeadPeer < 1 || st.Sessions < 2 || st.Disconnects < 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestFailFastWithoutSession(t *testing.T) {
	c, err := New(Config{Socket: "/nonexistent/br.mgmt", Bridge: "br-x", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Barrier(testCtx(t)); !errors.Is(err, ErrDisconnected) {
		t.Errorf("barrier without a session: %v, want ErrDisconnected", err)
	}
	if err := c.Bundle(testCtx(t), []openflow.Message{openflow.NewFlowMod(openflow.FlowAdd)}); !errors.Is(err, ErrDisconnected) {
		t.Errorf("bundle without a session: %v, want ErrDisconnected", err)
	}

	if _, err := c.connect(testCtx(t)); err == nil || !strings.Contains(err.Error(), "OpenFlow socket /nonexistent/br.mgmt not found") {
		t.Errorf("connect to a missing socket: %v", err)
	}

	// Run keeps trying; WaitSession waits only as long as its context.
	c = startConn(t, Config{Socket: "/nonexistent/br.mgmt", Bridge: "br-x"})
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	if _, err = c.WaitSession(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSession: %v", err)
	}
	if err := c.Barrier(testCtx(t)); !errors.Is(err, ErrDisconnected) {
		t.Errorf("barrier while reconnecting: %v, want ErrDisconnected", err)
	}
}

func TestVersionMismatch(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		// What OVS sends when the bridge allows only OpenFlow 1.0.
		sw.hello = []openflow.Message{&openflow.Hello{Version: 1},
			&openflow.ErrorMsg{ErrType: openflow.ErrHelloFailed, Data: []byte("We support version 0x01, you support version 0x04, no common versions.")}}
	})
	c, err := New(Config{Socket: sw.path, Bridge: "br-int", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.connect(testCtx(t))
	if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "bridge br-int does not accept OpenFlow 1.3 (it offers OpenFlow 1.0)") ||
		!strings.Contains(err.Error(), "set protocols=OpenFlow13") {
		t.Fatalf("handshake with a 1.0-only bridge: %v", err)
	}
	t.Log(err)
}

func TestHandshakeTimeout(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			// Answers echoes, so only the handshake bound can end this.
			if e, ok := m.(*openflow.EchoRequest); ok {
				p.send(e.Reply())
			}
			return true
		}
	})
	c, err := New(Config{Socket: sw.path, Bridge: "br-fake", HandshakeTimeout: 300 * time.Millisecond,
		EchoInterval: 20 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.connect(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "no complete handshake within 300ms") {
		t.Fatalf("handshake against a switch that never answers FEATURES: %v", err)
	}
}

func TestPortStatusAroundDump(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			req, ok := m.(*openflow.PortDescRequest)
			if !ok {
				return false
			}
			p1 := fakePort(1, "p1", 0)
			live := p1
			live.State = openflow.PortStateLive
			gone := fakePort(9, "gone", 0)
			msgs := []openflow.Message{
				// Older than the dump: the dump replaces them.
				&openflow.PortStatus{Reason: openflow.PortReasonAdd, Port: gone},
				&openflow.PortStatus{Reason: openflow.PortReasonAdd, Port: p1},
			}
			msgs = append(msgs, portDescParts(req.Xid, []openflow.Port{p1, fakePort(2, "p2", 0)}, 1)...)
			// Newer than the dump: must win over it.
			msgs = append(msgs, &openflow.PortStatus{Reason: openflow.PortReasonModify, Port: live})
			p.send(msgs...)
			return true
		}
	})
	tb := ports.New(newFakeDB())
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake", Ports: tb})
	waitSession(t, c)
	waitTable(t, tb, "p1 live after the dump", func() bool {
		p, ok, fresh := tb.Port("p1")
		return ok && fresh && p.Live()
	})
	// Everything the switch sent is processed once a barrier returns.
	if err := c.Barrier(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if p, ok, _ := tb.Port("p1"); !ok || !p.Live() {
		t.Errorf("p1 %v: the dump overwrote a newer PORT_STATUS", p)
	}
	if _, ok, _ := tb.Port("gone"); ok {
		t.Error("a port added before the dump but absent from it survived the reset")
	}
	if st := c.Stats(); st.PortStatus != 3 {
		t.Errorf("%d PORT_STATUS counted, want 3", st.PortStatus)
	}
}

func TestReconnectResetsTable(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) { sw.ports = []openflow.Port{fakePort(1, "p1", openflow.PortStateLive)} })
	tb := ports.New(newFakeDB())
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake", Ports: tb})
	s1 := waitSession(t, c)
	peer := sw.nextPeer()

	// The switch restarts with a different port set; a request waits for a
	// reply that never comes.
	sw.set(func(sw *fakeSwitch) {
		sw.ports = []openflow.Port{fakePort(3, "p3", openflow.PortStateLive)}
		sw.handle = func(_ *fakePeer, m openflow.Message) bool { _, ok := m.(*openflow.GetConfigRequest); return ok }
	})
	errc := make(chan error, 1)
	go func() { _, err := c.Request(testCtx(t), &openflow.GetConfigRequest{}); errc <- err }()
	peer.waitFor(t, "GET_CONFIG", func(m openflow.Message) bool { return m.Type() == openflow.TypeGetConfigRequest })
	_ = peer.c.Close()
	if err := <-errc; !errors.Is(err, ErrDisconnected) {
		t.Errorf("request in flight when the connection closed: %v, want ErrDisconnected", err)
	}
	waitNext(t, c, s1)
	if _, ok, _ := tb.Port("p1"); ok {
		t.Error("p1, gone from the new dump, is still in the table")
	}
	if p, ok, fresh := tb.Port("p3"); !ok || !fresh || !p.Live() {
		t.Errorf("p3 after reconnect: %v ok=%v fresh=%v", p, ok, fresh)
	}
}

func TestPacketIn(t *testing.T) {
	sw := newFakeSwitch(t)
	ch := make(chan *openflow.PacketIn, 1)
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake", PacketIn: ch})
	waitSession(t, c)
	peer := sw.nextPeer()
	for i := range 3 {
		peer.send(&openflow.PacketIn{BufferID: openflow.NoBuffer, Reason: openflow.ReasonAction, Cookie: uint64(i), Data: []byte{1}})
	}
	if err := c.Barrier(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if pin := <-ch; pin.Cookie != 0 {
		t.Errorf("first PACKET_IN has cookie %d", pin.Cookie)
	}
	if st := c.Stats(); st.PacketIn != 3 || st.PacketInDropped != 2 {
		t.Errorf("packet in %d, dropped %d; want 3 and 2", st.PacketIn, st.PacketInDropped)
	}
}

func flowMods(prios ...uint16) []openflow.Message {
	var out []openflow.Message
	for _, p := range prios {
		out = append(out, openflow.AddFlow(0, p, openflow.NewMatch(openflow.EthType(openflow.EthTypeARP)), openflow.Apply(openflow.Output{Port: openflow.PortNormal})))
	}
	return out
}

func TestBundleFake(t *testing.T) {
	sw := newFakeSwitch(t)
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	peer := sw.nextPeer()
	ctx := testCtx(t)
	isCtrl := func(typ openflow.BundleCtrlType) func(openflow.Message) bool {
		return func(m openflow.Message) bool {
			bc, ok := m.(*openflow.BundleControl)
			return ok && bc.CtrlType == typ
		}
	}

	if err := c.Bundle(ctx, flowMods(10, 20, 30)); err != nil {
		t.Fatalf("valid bundle: %v", err)
	}
	peer.waitFor(t, "a commit", isCtrl(openflow.BundleCommitRequest))

	err := c.Bundle(ctx, flowMods(10, badPriority, 30, badPriority))
	var be *BundleError
	if !errors.As(err, &be) {
		t.Fatalf("bundle with bad flows: %v, want a *BundleError", err)
	}
	if len(be.Rejected) != 2 || be.Rejected[0].Index != 1 || be.Rejected[1].Index != 3 || be.Commit != nil {
		t.Errorf("rejected %v, want messages 1 and 3", be.Rejected)
	}
	if !errors.Is(err, errBadPrereq) {
		t.Errorf("errors.Is does not find OFPBMC_BAD_PREREQ in %v", err)
	}
	// Discarded, never committed.
	var sawCommit bool
	peer.waitFor(t, "a discard", func(m openflow.Message) bool {
		sawCommit = sawCommit || isCtrl(openflow.BundleCommitRequest)(m)
		return isCtrl(openflow.BundleDiscardRequest)(m)
	})
	if sawCommit {
		t.Error("a bundle with rejected messages was committed")
	}
	t.Log(err)

	// A refused commit.
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			if isCtrl(openflow.BundleCommitRequest)(m) {
				p.reject(m, &openflow.ErrorMsg{ErrType: openflow.ErrExperimenter, Experimenter: openflow.ONFExperimenter, Code: openflow.BundleErrMsgConflict})
				return true
			}
			return false
		}
	})
	err = c.Bundle(ctx, flowMods(1))
	if !errors.As(err, &be) || be.Commit == nil || be.Commit.Name() != "OFPBFC_MSG_CONFLICT" {
		t.Errorf("refused commit: %v", err)
	}

	// Apply: ordered, not atomic, rejections named.
	err = c.Apply(ctx, flowMods(1, badPriority)...)
	var ae *ApplyError
	if !errors.As(err, &ae) || len(ae.Rejected) != 1 || ae.Rejected[0].Index != 1 {
		t.Errorf("apply with a bad flow: %v", err)
	}
	if err := c.Apply(ctx, flowMods(1, 2)...); err != nil {
		t.Errorf("apply: %v", err)
	}
	if err := c.Send(ctx, flowMods(badPriority)...); err != nil {
		t.Errorf("send: %v", err)
	}
	if err := c.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.UnsolicitedErrors != 1 {
		t.Errorf("the error for a sent message counted %d times as unsolicited, want 1", st.UnsolicitedErrors)
	}
}

func TestBundleCancelledIsDiscarded(t *testing.T) {
	sw := newFakeSwitch(t)
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(p *fakePeer, m openflow.Message) bool {
			bc, ok := m.(*openflow.BundleControl)
			return ok && bc.CtrlType == openflow.BundleCloseRequest // never answered
		}
	})
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	peer := sw.nextPeer()
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() { errc <- c.Bundle(ctx, flowMods(1, 2)) }()
	peer.waitFor(t, "the bundle close", func(m openflow.Message) bool {
		bc, ok := m.(*openflow.BundleControl)
		return ok && bc.CtrlType == openflow.BundleCloseRequest
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled bundle: %v", err)
	}
	peer.waitFor(t, "a discard of the abandoned bundle", func(m openflow.Message) bool {
		bc, ok := m.(*openflow.BundleControl)
		return ok && bc.CtrlType == openflow.BundleDiscardRequest
	})
}

func TestWedgedPeerBoundsWrites(t *testing.T) {
	sw := newFakeSwitch(t)
	c := startConn(t, Config{Socket: sw.path, Bridge: "br-fake", EchoInterval: time.Hour, DeadTimeout: 200 * time.Millisecond})
	s := waitSession(t, c)
	// The switch stops reading at the next message: its receive buffer
	// fills up.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	sw.set(func(sw *fakeSwitch) {
		sw.handle = func(*fakePeer, openflow.Message) bool { <-release; return true }
	})
	big := make([]openflow.Message, 0, 64)
	for range cap(big) {
		big = append(big, openflow.NewPacketOut(make([]byte, 60000), openflow.Output{Port: 1}))
	}
	var err error
	for err == nil {
		err = s.Send(testCtx(t), big...)
	}
	if !errors.Is(err, ErrDisconnected) || !errors.Is(s.Err(), ErrDeadPeer) {
		t.Errorf("send to a wedged switch: %v (session: %v), want ErrDisconnected after ErrDeadPeer", err, s.Err())
	}
}

func TestNewAndRun(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted a config without bridge or socket")
	}
	c, err := New(Config{Bridge: "br-int", RunDir: "/run/ovs"})
	if err != nil {
		t.Fatal(err)
	}
	if c.socket != "/run/ovs/br-int.mgmt" {
		t.Errorf("socket %s", c.socket)
	}
	sw := newFakeSwitch(t)
	c = startConn(t, Config{Socket: sw.path, Bridge: "br-fake"})
	waitSession(t, c)
	if err := c.Run(testCtx(t)); err == nil {
		t.Error("second Run accepted")
	}
}

package openflow

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
)

// switchConn is a minimal synchronous controller connection for tests: it
// sends messages and reads replies with a deadline, keeping the
// asynchronous messages it sees on the way.
type switchConn struct {
	t     *testing.T
	c     net.Conn
	r     *Reader
	xid   uint32
	async []Message
}

// waitLimit bounds every read so a silent switch fails the test instead of
// hanging it.
const waitLimit = 30 * time.Second

func dialSwitch(t *testing.T, path string) *switchConn {
	t.Helper()
	c, err := net.DialTimeout("unix", path, waitLimit)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return &switchConn{t: t, c: c, r: NewReader(c)}
}

func (s *switchConn) nextXID() uint32 { s.xid++; return s.xid }

func (s *switchConn) send(msgs ...Message) {
	s.t.Helper()
	var b []byte
	for _, m := range msgs {
		if m.XID() == 0 {
			m.SetXID(s.nextXID())
		}
		var err error
		if b, err = m.AppendBinary(b); err != nil {
			s.t.Fatalf("encode %T: %v", m, err)
		}
	}
	if err := s.c.SetWriteDeadline(time.Now().Add(waitLimit)); err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

func (s *switchConn) read() Message {
	s.t.Helper()
	if err := s.c.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		s.t.Fatal(err)
	}
	m, err := s.r.ReadMessage()
	if err != nil {
		s.t.Fatalf("read from switch: %v", err)
	}
	if req, ok := m.(*EchoRequest); ok {
		s.send(req.Reply())
	}
	return m
}

// until reads until done returns true for a message and returns every
// message read before it (done's message excluded), recording asynchronous
// ones.
func (s *switchConn) until(done func(Message) bool) []Message {
	s.t.Helper()
	var seen []Message
	for {
		m := s.read()
		if done(m) {
			return seen
		}
		switch m.Type() {
		case TypePortStatus, TypePacketIn, TypeFlowRemoved:
			s.async = append(s.async, m)
		}
		seen = append(seen, m)
	}
}

// barrier sends a barrier and returns what arrived before its reply.
func (s *switchConn) barrier() []Message {
	s.t.Helper()
	b := &BarrierRequest{}
	s.send(b)
	return s.until(func(m Message) bool { return m.Type() == TypeBarrierReply && m.XID() == b.Xid })
}

// request sends req and returns the first reply with its xid; multipart
// replies are collected until the last part.
func (s *switchConn) request(req Message) []Message {
	s.t.Helper()
	s.send(req)
	var parts []Message
	s.until(func(m Message) bool {
		if m.XID() != req.XID() {
			return false
		}
		parts = append(parts, m)
		more := false
		switch r := m.(type) {
		case *PortDescReply:
			more = r.More()
		case *FlowStatsReply:
			more = r.More()
		case *MultipartReply:
			more = r.More()
		}
		return !more
	})
	return parts
}

// takeAsync returns and forgets the asynchronous messages seen so far.
func (s *switchConn) takeAsync() []Message {
	a := s.async
	s.async = nil
	return a
}

// waitPortStatus reads until a PORT_STATUS for name satisfies ok.
func (s *switchConn) waitPortStatus(name string, ok func(*PortStatus) bool) *PortStatus {
	s.t.Helper()
	var found *PortStatus
	check := func(m Message) bool {
		ps, isPS := m.(*PortStatus)
		if isPS && ps.Port.Name == name && ok(ps) {
			found = ps
			return true
		}
		return false
	}
	for _, m := range s.takeAsync() {
		if check(m) {
			return found
		}
	}
	s.until(check)
	return found
}

func errorsIn(msgs []Message) []*ErrorMsg {
	var out []*ErrorMsg
	for _, m := range msgs {
		if e, ok := m.(*ErrorMsg); ok {
			out = append(out, e)
		}
	}
	return out
}

// dumpFlows returns `ovs-ofctl --no-stats dump-flows` lines, trimmed and
// sorted.
func dumpFlows(o *ovstest.OVS, bridge string) []string {
	var lines []string
	for _, l := range strings.Split(o.Ofctl("-O", "OpenFlow13", "--no-stats", "dump-flows", bridge), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// TestInstallOnOVS drives a real ovs-vswitchd through its management
// socket with this codec: handshake, async configuration, port events, a
// bundle of flows, a failing bundle, groups, packet out/in, and flow dumps
// compared with ovs-ofctl's.
func TestInstallOnOVS(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	const br = "br-ofc"
	o.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "protocols=OpenFlow13")
	sw := dialSwitch(t, filepath.Join(o.Dir(), br+".mgmt"))

	// Handshake.
	sw.send(NewHello(Version13))
	hello, ok := sw.read().(*Hello)
	if !ok || !hello.Supports(Version13) {
		t.Fatalf("switch hello %#v does not offer OpenFlow 1.3", hello)
	}
	t.Logf("switch HELLO: version 0x%02x, bitmap versions %v", hello.Version, hello.Versions)
	feats := sw.request(&FeaturesRequest{})[0].(*FeaturesReply)
	dpid := strings.Trim(o.Vsctl("get", "bridge", br, "datapath_id"), `"`)
	if got := fmt.Sprintf("%016x", feats.DatapathID); got != dpid {
		t.Errorf("FEATURES datapath id %s, OVSDB says %s", got, dpid)
	}
	t.Logf("FEATURES: dpid %016x n_tables %d capabilities %v", feats.DatapathID, feats.NTables, feats.Capabilities)

	echo := &EchoRequest{Data: []byte("ovsnet")}
	if r := sw.request(echo)[0].(*EchoReply); string(r.Data) != "ovsnet" {
		t.Errorf("echo reply data %q", r.Data)
	}
	if r := sw.request(&RoleRequest{Role: Role{Role: RoleNoChange}})[0].(*RoleReply); r.Role.Role != RoleEqual {
		t.Errorf("role %v, want equal", r.Role.Role)
	}

	// Port description dump: the bridge's own LOCAL port.
	desc := sw.request(&PortDescRequest{})
	var ports []Port
	for _, m := range desc {
		ports = append(ports, m.(*PortDescReply).Ports...)
	}
	if len(ports) != 1 || ports[0].PortNo != PortLocal || ports[0].Name != br {
		t.Fatalf("PORT_DESC %+v, want only LOCAL(%s)", ports, br)
	}

	// Before asking for asynchronous messages, a new port brings none.
	o.Vsctl("add-port", br, "ofc-quiet", "--", "set", "interface", "ofc-quiet", "type=internal")
	sw.barrier()
	if a := sw.takeAsync(); len(a) != 0 {
		t.Errorf("got %d asynchronous messages before SET_CONFIG/SET_ASYNC: %v", len(a), a)
	} else {
		t.Log("observed: no PORT_STATUS for a new port before SET_CONFIG/SET_ASYNC")
	}

	// Ask for them.
	sw.send(&SetConfig{SwitchConfig: SwitchConfig{MissSendLen: MissSendLenNoBuffer}},
		&SetAsync{AsyncConfig: AsyncConfig{
			PacketInMask:    [2]uint32{1<<ReasonNoMatch | 1<<ReasonAction, 0},
			PortStatusMask:  [2]uint32{AllPortStatus, AllPortStatus},
			FlowRemovedMask: [2]uint32{1 << FlowRemovedDelete, 0},
		}})
	if errs := errorsIn(sw.barrier()); len(errs) != 0 {
		t.Fatalf("SET_CONFIG/SET_ASYNC: %v", errs)
	}
	cfg := sw.request(&GetConfigRequest{})[0].(*GetConfigReply)
	if cfg.MissSendLen != MissSendLenNoBuffer {
		t.Errorf("miss_send_len %d after SET_CONFIG", cfg.MissSendLen)
	}
	async := sw.request(&GetAsyncRequest{})[0].(*GetAsyncReply)
	if async.PortStatusMask[0] != AllPortStatus {
		t.Errorf("GET_ASYNC port status mask %#x", async.PortStatusMask)
	}

	// An internal port: ADD, and it stays LINK_DOWN in this namespace.
	o.Vsctl("add-port", br, "ofc-int", "--", "set", "interface", "ofc-int", "type=internal")
	ps := sw.waitPortStatus("ofc-int", func(ps *PortStatus) bool { return ps.Reason == PortReasonAdd })
	ofportInt, _ := strconv.Atoi(o.Vsctl("get", "interface", "ofc-int", "ofport"))
	if int(ps.Port.PortNo) != ofportInt {
		t.Errorf("PORT_STATUS port %d, OVSDB ofport %d", ps.Port.PortNo, ofportInt)
	}
	t.Logf("internal port PORT_STATUS ADD: %v", &ps.Port)

	// A veth with its peer up goes LIVE.
	o.InNetns("ip", "link", "add", "ofc-va", "type", "veth", "peer", "name", "ofc-vb")
	o.InNetns("ip", "link", "set", "ofc-vb", "up")
	o.InNetns("ip", "link", "set", "ofc-va", "up")
	o.Vsctl("add-port", br, "ofc-va")
	live := sw.waitPortStatus("ofc-va", func(ps *PortStatus) bool { return ps.Port.Live() })
	t.Logf("veth PORT_STATUS %v with LIVE: %v", live.Reason, &live.Port)
	vethPort := live.Port.PortNo

	o.Vsctl("del-port", br, "ofc-int")
	sw.waitPortStatus("ofc-int", func(ps *PortStatus) bool { return ps.Reason == PortReasonDelete })

	// A bundle of flows, then a barrier.
	ipm := EthType(EthTypeIPv4)
	flows := []*FlowMod{
		AddFlow(0, 100, NewMatch(ipm, InPort(vethPort), IPv4Src(ip4("10.0.0.2"))), Apply(Output{Port: PortLocal})),
		AddFlow(0, 90, NewMatch(EthType(EthTypeARP), InPort(vethPort)), Apply(SetField{Field: Reg(0, 5)}, Resubmit{Table: 10})),
		AddFlow(10, 50, NewMatch(ipm, IPProto(IPProtoTCP), TCPDst(80), RegMasked(0, 5, 0xff)),
			Apply(CT{Commit: true, Zone: 7, Actions: []Action{SetField{Field: CTMark(1)}}}, Output{Port: vethPort})),
		AddFlow(10, 40, NewMatch(ipm, CTState(CTStateTracked|CTStateEstablished, CTStateNew)), Apply(Output{Port: PortNormal})),
		AddFlow(10, 30, NewMatch(ipm), Apply(CT{Recirc: true, Table: 20, ZoneField: &FieldSlice{Field: RegField(1), NBits: 16}})),
		AddFlow(20, 10, NewMatch(), GotoTable{Table: 30}),
	}
	flows[1].Cookie = 0x51
	msgs := make([]Message, len(flows))
	for i, f := range flows {
		msgs[i] = f
	}
	bundle := Bundle(1, BundleAtomic, sw.nextXID, msgs...)
	sw.send(bundle...)
	replies := sw.barrier()
	if errs := errorsIn(replies); len(errs) != 0 {
		t.Fatalf("bundle: %v", errs)
	}
	var ctrl []BundleCtrlType
	for _, m := range replies {
		if bc, ok := m.(*BundleControl); ok {
			ctrl = append(ctrl, bc.CtrlType)
			if bc.BundleID != 1 {
				t.Errorf("bundle reply for bundle %d", bc.BundleID)
			}
		}
	}
	if !slices.Equal(ctrl, []BundleCtrlType{BundleOpenReply, BundleCommitReply}) {
		t.Fatalf("bundle replies %v, want OPEN_REPLY then COMMIT_REPLY", ctrl)
	}

	// What OVS installed, as ovs-ofctl prints it, and as our flow dump
	// decodes it.
	fromOVS := dumpFlows(o, br)
	var fromUs []string
	var dumped []FlowStats
	for _, m := range sw.request(NewFlowStatsRequest(TableAll, NewMatch())) {
		dumped = append(dumped, m.(*FlowStatsReply).Flows...)
	}
	for i := range dumped {
		fromUs = append(fromUs, dumped[i].FlowString())
	}
	slices.Sort(fromUs)
	if !slices.Equal(fromUs, fromOVS) {
		t.Errorf("flow dump decoded by this codec:\n%s\novs-ofctl dump-flows:\n%s", strings.Join(fromUs, "\n"), strings.Join(fromOVS, "\n"))
	}
	// OVS keeps its default NORMAL flow beside ours.
	if len(fromOVS) != len(flows)+1 || !slices.Contains(fromOVS, "priority=0 actions=NORMAL") {
		t.Errorf("%d flows installed, want %d and the default NORMAL flow:\n%s", len(fromOVS), len(flows), strings.Join(fromOVS, "\n"))
	}
	for _, want := range []string{
		fmt.Sprintf("priority=100,ip,in_port=%d,nw_src=10.0.0.2 actions=LOCAL", vethPort),
		fmt.Sprintf("cookie=0x51, priority=90,arp,in_port=%d actions=set_field:0x5->reg0,resubmit(,10)", vethPort),
		fmt.Sprintf("table=10, priority=50,tcp,reg0=0x5/0xff,tp_dst=80 actions=ct(commit,zone=7,exec(set_field:0x1->ct_mark)),output:%d", vethPort),
		"table=10, priority=40,ct_state=-new+est+trk,ip actions=NORMAL",
		"table=10, priority=30,ip actions=ct(table=20,zone=NXM_NX_REG1[0..15])",
		"table=20, priority=10 actions=goto_table:30",
	} {
		if !slices.Contains(fromOVS, want) {
			t.Errorf("dump-flows lacks %q:\n%s", want, strings.Join(fromOVS, "\n"))
		}
	}

	// A bundle with a bad flow: the error names the add's xid, and the
	// commit still succeeds.
	bad := AddFlow(0, 5, NewMatch(TCPDst(22)), Apply(Output{Port: 1})) // tcp_dst without ip,tcp
	good := AddFlow(0, 6, NewMatch(EthType(EthTypeARP)), Apply(Output{Port: PortNormal}))
	bundle = Bundle(2, BundleAtomic, sw.nextXID, good, bad)
	sw.send(bundle...)
	replies = sw.barrier()
	errs := errorsIn(replies)
	if len(errs) != 1 || errs[0].Xid != bundle[2].XID() {
		t.Fatalf("bad bundle: errors %v, want one for the bad add's xid 0x%x", errs, bundle[2].XID())
	}
	t.Logf("bad flow in bundle: %v", errs[0])
	if !errors.Is(errs[0], &ErrorMsg{ErrType: ErrBadMatch, Code: 9}) {
		t.Errorf("bad flow error %s, want OFPBMC_BAD_PREREQ", errs[0].Name())
	}
	var committed bool
	for _, m := range replies {
		if bc, ok := m.(*BundleControl); ok && bc.CtrlType == BundleCommitReply && bc.Xid == bundle[3].XID() {
			committed = true
		}
	}
	goodInstalled := slices.Contains(dumpFlows(o, br), "priority=6,arp actions=NORMAL")
	t.Logf("observed: commit after a rejected add succeeded=%v, good flow of that bundle installed=%v", committed, goodInstalled)
	if !committed {
		t.Errorf("no COMMIT_REPLY for the bundle with a rejected add: %v", replies)
	}
	// Callers rely on this: an atomic bundle does not protect against a
	// rejected add, so they must discard a bundle that got an error.
	if !goodInstalled {
		t.Errorf("the good flow of a bundle with a rejected add was not installed; OVS behaviour changed")
	}

	// A select group.
	sw.send(&GroupMod{Command: GroupAdd, GroupType: GroupTypeSelect, GroupID: 7, Buckets: []Bucket{
		NewBucket(10, Output{Port: vethPort}), NewBucket(20, Output{Port: PortLocal})}})
	if errs := errorsIn(sw.barrier()); len(errs) != 0 {
		t.Fatalf("group mod: %v", errs)
	}
	groups := o.Ofctl("-O", "OpenFlow13", "dump-groups", br)
	if want := fmt.Sprintf("group_id=7,type=select,bucket=weight:10,actions=output:%d,bucket=weight:20,actions=LOCAL", vethPort); !strings.Contains(groups, want) {
		t.Errorf("dump-groups lacks %q:\n%s", want, groups)
	}

	// Packet out through the tables to a flow that sends it back to us.
	const probeType = 0x88b5 // IEEE local experimental
	toCtl := AddFlow(0, 1000, NewMatch(EthType(probeType)), Apply(SetField{Field: Reg(2, 0x42)}, Output{Port: PortController, MaxLen: ControllerMaxLenNoBuffer}))
	toCtl.Cookie = 0xc0ffee
	sw.send(toCtl)
	if errs := errorsIn(sw.barrier()); len(errs) != 0 {
		t.Fatalf("controller flow: %v", errs)
	}
	frame := append(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x02, 0, 0, 0, 0, 1, byte(probeType>>8), byte(probeType&0xff)), []byte("ovsnet probe")...)
	sw.send(NewPacketOut(frame, Output{Port: PortTable}))
	var pin *PacketIn
	sw.until(func(m Message) bool {
		if e, ok := m.(*ErrorMsg); ok {
			t.Fatalf("packet out: %v", e)
		}
		pin, _ = m.(*PacketIn)
		return pin != nil
	})
	if pin.Reason != ReasonAction || pin.Cookie != 0xc0ffee || string(pin.Data) != string(frame) || int(pin.TotalLen) != len(frame) {
		t.Errorf("packet in: reason %v cookie %#x total_len %d data %x", pin.Reason, pin.Cookie, pin.TotalLen, pin.Data)
	}
	if f, ok := pin.Match.Get(RegField(2)); !ok || f.Uint() != 0x42 {
		t.Errorf("packet in metadata %v lacks reg2=0x42", pin.Match)
	}
	if p, ok := pin.InPort(); !ok || p != PortController {
		t.Errorf("packet in in_port %d %v, want CONTROLLER", p, ok)
	}
	t.Logf("PACKET_IN: reason=%v table=%d match=%v", pin.Reason, pin.Table, pin.Match)

	// Deleting by cookie.
	sw.send(DeleteFlows(TableAll, NewMatch(), 0x51, ^uint64(0)))
	sw.barrier()
	for _, l := range dumpFlows(o, br) {
		if strings.Contains(l, "cookie=0x51") {
			t.Errorf("flow with cookie 0x51 survived the delete: %s", l)
		}
	}
}

// TestAsyncEnablementOnOVS records which requests make OVS send
// PORT_STATUS on a management (service) connection: four connections ask
// for different things, a port is added, and each is checked after a
// barrier.
func TestAsyncEnablementOnOVS(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	const br = "br-ofc"
	o.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "protocols=OpenFlow13")
	setConfig := func() Message { return &SetConfig{SwitchConfig: SwitchConfig{MissSendLen: 128}} }
	setAsync := func() Message {
		return &SetAsync{AsyncConfig: AsyncConfig{PortStatusMask: [2]uint32{AllPortStatus, AllPortStatus}}}
	}
	cases := []struct {
		name string
		ask  []func() Message
		want bool
	}{
		{"nothing", nil, false},
		{"set_config miss_send_len=128", []func() Message{setConfig}, true},
		{"set_async port status", []func() Message{setAsync}, true},
		{"both", []func() Message{setConfig, setAsync}, true},
	}
	conns := make([]*switchConn, len(cases))
	for i, c := range cases {
		sw := dialSwitch(t, filepath.Join(o.Dir(), br+".mgmt"))
		sw.send(NewHello(Version13))
		sw.read()
		for _, ask := range c.ask {
			sw.send(ask())
		}
		if errs := errorsIn(sw.barrier()); len(errs) != 0 {
			t.Fatalf("%s: %v", c.name, errs)
		}
		conns[i] = sw
	}
	o.Vsctl("add-port", br, "ofc-p1", "--", "set", "interface", "ofc-p1", "type=internal")
	for i, c := range cases {
		sw := conns[i]
		sw.barrier()
		got := false
		for _, m := range sw.takeAsync() {
			if ps, ok := m.(*PortStatus); ok && ps.Port.Name == "ofc-p1" {
				got = true
			}
		}
		t.Logf("observed: %s -> PORT_STATUS received: %v", c.name, got)
		if got != c.want {
			t.Errorf("%s: PORT_STATUS received %v, want %v", c.name, got, c.want)
		}
	}
}

// TestBundleAddXIDOnOVS checks the rule BundleAdd's encoding exists for:
// OVS refuses an inner message whose xid differs from the bundle add's.
func TestBundleAddXIDOnOVS(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	const br = "br-ofc"
	o.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "protocols=OpenFlow13")
	sw := dialSwitch(t, filepath.Join(o.Dir(), br+".mgmt"))
	sw.send(NewHello(Version13))
	sw.read()

	sw.send(&BundleControl{BundleID: 3, CtrlType: BundleOpenRequest})
	add := &BundleAdd{Header: Header{Xid: sw.nextXID()}, BundleID: 3,
		Message: AddFlow(0, 1, NewMatch(EthType(EthTypeARP)), Apply(Output{Port: PortNormal}))}
	raw, err := Encode(add)
	if err != nil {
		t.Fatal(err)
	}
	// Break the rule on purpose: inner header starts after the 16-byte
	// experimenter header and 8 bytes of bundle fields.
	raw[24+7]++
	if err := sw.c.SetWriteDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.c.Write(raw); err != nil {
		t.Fatal(err)
	}
	errs := errorsIn(sw.barrier())
	if len(errs) != 1 || errs[0].Name() != "OFPBFC_MSG_BAD_XID" || errs[0].Xid != add.Xid {
		t.Fatalf("errors %v, want OFPBFC_MSG_BAD_XID for xid 0x%x", errs, add.Xid)
	}
	t.Logf("observed: inner xid != outer xid -> %v", errs[0])
	sw.send(&BundleControl{BundleID: 3, CtrlType: BundleDiscardRequest})
	sw.barrier()
}

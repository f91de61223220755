package openflow

import (
	"net"
	"net/netip"
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	ip4  = netip.MustParseAddr
	pfx  = netip.MustParsePrefix
	mac1 = mustMAC("00:11:22:33:44:55")
)

func samplePort(no uint32, name string, state PortState) Port {
	return Port{
		PortNo: no, HWAddr: [6]byte{0xaa, 0xbb, 0xcc, 0x00, 0x00, byte(no)}, Name: name,
		State: state, Curr: PortFeature10GbFD | PortFeatureCopper, Supported: PortFeature10GbFD,
		CurrSpeed: 10000000, MaxSpeed: 10000000,
	}
}

// flowSample is a flow mod and the text `ovs-ofctl ofp-print` prints for it
// after "OFPT_FLOW_MOD (OF1.3) (xid=0x10): ". Unless ovsOnly is set,
// FlowMod.String must print the same text.
type flowSample struct {
	name    string
	fm      *FlowMod
	text    string
	ovsOnly bool
}

func flowSamples() []flowSample {
	x := func(fm *FlowMod) *FlowMod { fm.Xid = 0x10; return fm }
	ip := EthType(EthTypeIPv4)
	return []flowSample{
		{name: "basic", fm: x(AddFlow(0, 100, NewMatch(ip, InPort(3), IPv4Src(ip4("10.0.0.2"))),
			Apply(Output{Port: 2}))),
			text: "ADD priority=100,ip,in_port=3,nw_src=10.0.0.2 actions=output:2"},
		{name: "many fields", fm: x(AddFlow(0, 7, NewMatch(
			ip, IPProto(IPProtoTCP), InPort(3), Reg(0, 5), Reg(9, 3),
			CTState(CTStateTracked, 0), CTZone(3), CTMark(1), CTLabel(0, 3),
			TunnelID(5), TunIPv4Src(ip4("1.1.1.1")), TunIPv4Dst(ip4("2.2.2.2")), PktMark(1),
			Metadata(5), EthSrc(mac1), EthDstMasked(mustMAC("01:00:00:00:00:00"), mustMAC("01:00:00:00:00:00")),
			VLANVID(5), IPv4SrcPrefix(pfx("10.0.0.0/8")), IPv4Dst(ip4("10.1.1.1")),
			TCPSrc(80), TCPDstMasked(0x100, 0xff00)))),
			text: "ADD priority=7,pkt_mark=0x1,ct_state=+trk,ct_zone=3,ct_mark=0x1,ct_label=0x3,tcp,reg0=0x5,reg9=0x3,tun_id=0x5,tun_src=1.1.1.1,tun_dst=2.2.2.2,metadata=0x5,in_port=3,dl_vlan=5,dl_src=00:11:22:33:44:55,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,nw_src=10.0.0.0/8,nw_dst=10.1.1.1,tp_src=80,tp_dst=0x100/0xff00 actions=drop"},
		{name: "masked", fm: x(AddFlow(0, 10, NewMatch(ip, IPProto(IPProtoUDP), RegMasked(1, 7, 0xff),
			UDPSrcMasked(0x1000, 0xf000), MetadataMasked(0x10, 0xf0), PktMarkMasked(1, 3),
			CTMarkMasked(3, 0xf), CTLabelMasked(0, 1, 0, 0xff), TunnelIDMasked(0x10, 0xff),
			TunIPv4SrcPrefix(pfx("1.2.0.0/16")), EthSrcMasked(mac1, mustMAC("ff:ff:ff:00:00:00")),
			IPv4DstPrefix(pfx("10.1.0.0/16"))), Apply(Output{Port: 1}))),
			text: "ADD priority=10,pkt_mark=0x1/0x3,ct_mark=0x3/0xf,ct_label=0x1/0xff,udp,reg1=0x7/0xff,tun_id=0x10/0xff,tun_src=1.2.0.0/16,metadata=0x10/0xf0,dl_src=00:11:22:00:00:00/ff:ff:ff:00:00:00,nw_dst=10.1.0.0/16,tp_src=0x1000/0xf000 actions=output:1"},
		{name: "arp", fm: x(AddFlow(0, 200, NewMatch(EthType(EthTypeARP), ARPOp(ARPRequest), ARPSPA(ip4("1.1.1.1")),
			ARPTPAPrefix(pfx("1.1.1.0/24")), ARPSHA(mac1), ARPTHA(mustMAC("00:00:00:00:00:00"))),
			Apply(Output{Port: PortNormal}))),
			text: "ADD priority=200,arp,arp_spa=1.1.1.1,arp_tpa=1.1.1.0/24,arp_op=1,arp_sha=00:11:22:33:44:55,arp_tha=00:00:00:00:00:00 actions=NORMAL"},
		{name: "icmp", fm: x(AddFlow(0, 10, NewMatch(ip, IPProto(IPProtoICMP), ICMPv4Type(8), ICMPv4Code(0)),
			Apply(Output{Port: PortLocal}, Output{Port: PortController, MaxLen: 0xffff}, Output{Port: PortInPort}))),
			text: "ADD priority=10,icmp,icmp_type=8,icmp_code=0 actions=LOCAL,CONTROLLER:65535,IN_PORT"},
		{name: "icmp6", fm: x(AddFlow(0, 10, NewMatch(EthType(EthTypeIPv6), IPProto(IPProtoICMPv6),
			IPv6Src(ip4("fe80::1")), IPv6DstPrefix(pfx("fe80::/64")), ICMPv6Type(135), ICMPv6Code(0)),
			Apply(Output{Port: PortFlood}))),
			text: "ADD priority=10,icmp6,ipv6_src=fe80::1,ipv6_dst=fe80::/64,icmp_type=135,icmp_code=0 actions=FLOOD"},
		{name: "udp6", fm: x(AddFlow(0, 10, NewMatch(EthType(EthTypeIPv6), IPProto(IPProtoUDP), UDPDst(53)),
			Apply(Output{Port: PortAll}))),
			text: "ADD priority=10,udp6,tp_dst=53 actions=ALL"},
		{name: "tagged any vlan", fm: x(AddFlow(0, 10, NewMatch(VLANVIDMasked(VLANPresent, VLANPresent), EthType(0x1234)))),
			text: "ADD priority=10,vlan_tci=0x1000/0x1000,dl_type=0x1234 actions=drop"},
		{name: "untagged", fm: x(AddFlow(0, 10, NewMatch(NoVLAN(), ip, IPProto(47)))),
			text: "ADD priority=10,ip,vlan_tci=0x0000/0x1fff,nw_proto=47 actions=drop"},
		{name: "ct_state", fm: x(AddFlow(0, 10, NewMatch(CTState(CTStateTracked, CTStateNew), ip))),
			text: "ADD priority=10,ct_state=-new+trk,ip actions=drop"},
		{name: "nicira register actions", fm: x(AddFlow(0, 10, NewMatch(ip), Apply(
			Resubmit{Table: 5},
			RegLoad{Dst: Whole(RegField(0)), Value: 5},
			RegLoad{Dst: Slice(RegField(1), 0, 8), Value: 7},
			RegMove{Src: Slice(RegField(0), 0, 16), Dst: Slice(RegField(2), 16, 16)},
			SetField{Field: RegMasked(3, 0x10, 0xf0)},
			Resubmit{Port: 7, Table: ResubmitCurrentTable},
			Resubmit{Port: 7, Table: 3},
		))),
			text: "ADD priority=10,ip actions=resubmit(,5),load:0x5->NXM_NX_REG0[],load:0x7->NXM_NX_REG1[0..7],move:NXM_NX_REG0[0..15]->NXM_NX_REG2[16..31],set_field:0x10/0xf0->reg3,resubmit:7,resubmit(7,3)"},
		{name: "ct commit nat", fm: x(AddFlow(0, 10, NewMatch(ip, IPProto(IPProtoTCP)), Apply(
			CT{Commit: true, ZoneField: &FieldSlice{Field: RegField(3), Ofs: 0, NBits: 16}, Recirc: true, Table: 10,
				Alg: CTAlgFTP, Actions: []Action{
					SetField{Field: CTMark(1)},
					NAT{Src: true, IPMin: ip4("10.0.0.1"), IPMax: ip4("10.0.0.5"), PortMin: 1000, PortMax: 2000, ProtoRandom: true},
				}}))),
			text: "ADD priority=10,tcp actions=ct(commit,table=10,zone=NXM_NX_REG3[0..15],exec(set_field:0x1->ct_mark,nat(src=10.0.0.1-10.0.0.5:1000-2000,random)),alg=ftp)"},
		{name: "ct nat ipv6", fm: x(AddFlow(0, 10, NewMatch(EthType(EthTypeIPv6)), Apply(
			CT{Commit: true, Actions: []Action{NAT{Dst: true, IPMin: ip4("fe80::1"), IPMax: ip4("fe80::2"), Persistent: true}}}))),
			text: "ADD priority=10,ipv6 actions=ct(commit,nat(dst=fe80::1-fe80::2,persistent))"},
		{name: "ct nat only", fm: x(AddFlow(0, 10, NewMatch(ip), Apply(CT{Actions: []Action{NAT{}}}))),
			text: "ADD priority=10,ip actions=ct(nat)"},
		{name: "instructions", fm: x(AddFlow(0, 10, NewMatch(ip),
			Apply(CT{Zone: 7, Recirc: true, Table: 3}), ClearActions{},
			WriteActions{Actions: []Action{Output{Port: 3}}}, WriteMetadata{Metadata: 5, Mask: 0xff}, GotoTable{Table: 4})),
			text: "ADD priority=10,ip actions=ct(table=3,zone=7),clear_actions,write_actions(output:3),write_metadata:0x5/0xff,goto_table:4"},
		{name: "conjunction", fm: x(AddFlow(0, 10, NewMatch(ip, IPv4SrcPrefix(pfx("10.0.0.0/24"))),
			Apply(Conjunction{ID: 7, Clause: 1, NClauses: 2}, Note{Data: []byte{0xaa}}))),
			text: "ADD priority=10,ip,nw_src=10.0.0.0/24 actions=conjunction(7,1/2),note:aa.00.00.00.00.00"},
		{name: "misc actions", fm: x(AddFlow(0, 10, NewMatch(ip), Apply(
			Note{Data: []byte{1, 2, 3}}, DecNwTTL{}, Controller{Reason: ReasonNoMatch, MaxLen: 128, ID: 3},
			Group{ID: 4}, PushVLAN{}, SetField{Field: VLANVID(100)}, PopVLAN{}, Output{Port: 2},
			SetNwTTL{TTL: 3}, SetField{Field: EthSrc(mac1)},
			SetField{Field: TunnelID(5)}, SetField{Field: IPv4Dst(ip4("10.0.0.1"))},
		))),
			text: "ADD priority=10,ip actions=note:01.02.03.00.00.00,dec_ttl,controller(reason=no_match,max_len=128,id=3),group:4,push_vlan:0x8100,set_field:4196->vlan_vid,pop_vlan,output:2,mod_nw_ttl:3,set_field:00:11:22:33:44:55->eth_src,set_field:0x5->tun_id,set_field:10.0.0.1->ip_dst"},
		{name: "controller action", fm: x(AddFlow(0, 10, NewMatch(), Apply(Controller{Reason: ReasonAction, MaxLen: 200}))),
			text: "ADD priority=10 actions=CONTROLLER:200"},
		{name: "table cookie timeouts", fm: func() *FlowMod {
			fm := AddFlow(3, 9, NewMatch(ip))
			fm.Cookie, fm.IdleTimeout, fm.HardTimeout, fm.Flags = 0x10, 5, 7, FlowSendFlowRem
			return x(fm)
		}(), text: "ADD table:3 priority=9,ip cookie:0x10 idle:5 hard:7 send_flow_rem actions=drop", ovsOnly: true},
		{name: "delete", fm: func() *FlowMod {
			fm := DeleteFlows(3, NewMatch(ip), 0x10, 0xff)
			fm.OutPort = 5
			return x(fm)
		}(), text: "DEL table:3 ip cookie:0x10/0xff out_port:5 actions=drop", ovsOnly: true},
		{name: "delete all", fm: x(DeleteFlows(TableAll, NewMatch(), 0, 0)), text: "DEL table:255 actions=drop", ovsOnly: true},
		{name: "modify strict", fm: func() *FlowMod {
			fm := AddFlow(0, 5, NewMatch(ip), Apply(Output{Port: 1}))
			fm.Command = FlowModifyStrict
			return x(fm)
		}(), text: "MOD_STRICT priority=5,ip actions=output:1"},
		{name: "delete strict", fm: func() *FlowMod {
			fm := NewFlowMod(FlowDeleteStrict)
			fm.Priority, fm.Match = 5, NewMatch(ip)
			return x(fm)
		}(), text: "DEL_STRICT priority=5,ip actions=drop", ovsOnly: true},
		{name: "xreg", fm: x(AddFlow(0, 10, NewMatch(XReg(4, 3), XRegMasked(1, 0x100000000, 0xffffffff00000000)))),
			text: "ADD priority=10,reg2=0x1,reg8=0,reg9=0x3 actions=drop", ovsOnly: true},
	}
}

// sample is any message, with substrings `ovs-ofctl ofp-print` must print
// for it.
type sample struct {
	name string
	msg  Message
	ovs  []string
}

func hdr(xid uint32) Header { return Header{Xid: xid} }

func messageSamples() []sample {
	innerFlow := AddFlow(0, 100, NewMatch(EthType(EthTypeIPv4), InPort(3)), Apply(Output{Port: 2}))
	innerFlow.Xid = 0x99 // replaced by the bundle add's xid on the wire
	return []sample{
		{"hello", NewHello(Version13), []string{"OFPT_HELLO (OF1.3) (xid=0x0):", "version bitmap: 0x04"}},
		{"hello multi", &Hello{Header: hdr(3), Version: 6, Versions: []uint8{1, 4, 6}}, []string{"OFPT_HELLO (OF1.5) (xid=0x3):", "version bitmap: 0x01, 0x04, 0x06"}},
		{"echo request", &EchoRequest{Header: hdr(5), Data: []byte("abc")}, []string{"OFPT_ECHO_REQUEST (OF1.3) (xid=0x5): 3 bytes of payload"}},
		{"echo reply", &EchoReply{Header: hdr(5)}, []string{"OFPT_ECHO_REPLY (OF1.3) (xid=0x5): 0 bytes of payload"}},
		{"features request", &FeaturesRequest{Header: hdr(6)}, []string{"OFPT_FEATURES_REQUEST (OF1.3) (xid=0x6):"}},
		{"features reply", &FeaturesReply{Header: hdr(6), DatapathID: 0xabc, NTables: 254,
			Capabilities: CapFlowStats | CapTableStats | CapPortStats | CapGroupStats | CapQueueStats},
			[]string{"OFPT_FEATURES_REPLY (OF1.3) (xid=0x6): dpid:0000000000000abc", "n_tables:254, n_buffers:0", "capabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS QUEUE_STATS"}},
		{"get config request", &GetConfigRequest{Header: hdr(7)}, []string{"OFPT_GET_CONFIG_REQUEST (OF1.3) (xid=0x7):"}},
		{"get config reply", &GetConfigReply{Header: hdr(7), SwitchConfig: SwitchConfig{MissSendLen: 128}}, []string{"OFPT_GET_CONFIG_REPLY (OF1.3) (xid=0x7): frags=normal miss_send_len=128"}},
		{"set config", &SetConfig{Header: hdr(8), SwitchConfig: SwitchConfig{Flags: FragDrop, MissSendLen: MissSendLenNoBuffer}}, []string{"OFPT_SET_CONFIG (OF1.3) (xid=0x8): frags=drop miss_send_len=65535"}},
		{"set async", &SetAsync{Header: hdr(9), AsyncConfig: AsyncConfig{PortStatusMask: [2]uint32{AllPortStatus, AllPortStatus}, PacketInMask: [2]uint32{1 << ReasonAction, 0}}},
			[]string{"OFPT_SET_ASYNC (OF1.3) (xid=0x9):", "PACKET_IN: action", "PORT_STATUS: add delete modify"}},
		{"get async request", &GetAsyncRequest{Header: hdr(9)}, []string{"OFPT_GET_ASYNC_REQUEST (OF1.3) (xid=0x9):"}},
		{"get async reply", &GetAsyncReply{Header: hdr(9), AsyncConfig: AsyncConfig{FlowRemovedMask: [2]uint32{1 << FlowRemovedDelete, 0}}},
			[]string{"OFPT_GET_ASYNC_REPLY (OF1.3) (xid=0x9):", "FLOW_REMOVED: delete"}},
		{"barrier request", &BarrierRequest{Header: hdr(10)}, []string{"OFPT_BARRIER_REQUEST (OF1.3) (xid=0xa):"}},
		{"barrier reply", &BarrierReply{Header: hdr(10)}, []string{"OFPT_BARRIER_REPLY (OF1.3) (xid=0xa):"}},
		{"role request", &RoleRequest{Header: hdr(11), Role: Role{Role: RolePrimary, GenerationID: 7}}, []string{"OFPT_ROLE_REQUEST (OF1.3) (xid=0xb): role=primary generation_id=7"}},
		{"role reply", &RoleReply{Header: hdr(11), Role: Role{Role: RoleSecondary, GenerationID: 8}}, []string{"OFPT_ROLE_REPLY (OF1.3) (xid=0xb): role=secondary generation_id=8"}},
		{"error", &ErrorMsg{Header: hdr(12), ErrType: ErrBadMatch, Code: 6, Data: failedFlowMod(12)},
			[]string{"OFPT_ERROR (OF1.3) (xid=0xc): OFPBMC_BAD_FIELD", "OFPT_FLOW_MOD (OF1.3) (xid=0xc): ADD priority=100,ip,in_port=3 actions=output:2"}},
		{"bundle error", &ErrorMsg{Header: hdr(13), ErrType: ErrExperimenter, Code: BundleErrMsgFailed, Experimenter: ONFExperimenter, Data: failedFlowMod(13)},
			[]string{"OFPT_ERROR (OF1.3) (xid=0xd): OFPBFC_MSG_FAILED"}},
		{"nicira error", &ErrorMsg{Header: hdr(14), ErrType: ErrExperimenter, Code: 2, Experimenter: NiciraExperimenter, Data: failedFlowMod(14)},
			[]string{"OFPT_ERROR (OF1.3) (xid=0xe): NXBRC_NXM_INVALID"}},
		{"port status", &PortStatus{Reason: PortReasonModify, Port: samplePort(7, "veth1", PortStateLive)},
			[]string{"OFPT_PORT_STATUS (OF1.3) (xid=0x0): MOD: 7(veth1): addr:aa:bb:cc:00:00:07", "config:     0", "state:      LIVE", "current:    10GB-FD COPPER", "speed: 10000 Mbps now, 10000 Mbps max"}},
		{"port status add link down", &PortStatus{Reason: PortReasonAdd, Port: Port{PortNo: 8, Name: "gw0", State: PortStateLinkDown, Config: PortConfigDown}},
			[]string{"ADD: 8(gw0): addr:00:00:00:00:00:00", "config:     PORT_DOWN", "state:      LINK_DOWN"}},
		{"port status delete", &PortStatus{Reason: PortReasonDelete, Port: samplePort(9, "veth9", PortStateBlocked)},
			[]string{"DEL: 9(veth9)", "state:      BLOCKED"}},
		{"port desc request", &PortDescRequest{Header: hdr(15)}, []string{"OFPST_PORT_DESC request (OF1.3) (xid=0xf): port=ANY"}},
		{"port desc reply", &PortDescReply{Header: hdr(15), Flags: MultipartMore, Ports: []Port{
			samplePort(1, "p1", PortStateLive), samplePort(PortLocal, "br-int", PortStateLinkDown)}},
			[]string{"OFPST_PORT_DESC reply (OF1.3) (xid=0xf): flags=[more]", " 1(p1): addr:aa:bb:cc:00:00:01", " LOCAL(br-int): addr:aa:bb:cc:00:00:fe"}},
		{"flow stats request", func() Message {
			m := NewFlowStatsRequest(1, NewMatch(EthType(EthTypeIPv4)))
			m.Xid, m.OutPort, m.Cookie, m.CookieMask = 16, 5, 0x10, 0xff
			return m
		}(), []string{"OFPST_FLOW request (OF1.3) (xid=0x10): table=1 out_port=5 ip"}},
		{"flow stats reply", &FlowStatsReply{Header: hdr(17), Flows: []FlowStats{
			{Table: 0, DurationSec: 1, DurationNsec: 500000000, Priority: 100, Cookie: 5, PacketCount: 3, ByteCount: 180,
				Match: NewMatch(EthType(EthTypeIPv4), InPort(3)), Instructions: []Instruction{Apply(Output{Port: 2})}},
			{Table: 2, Priority: DefaultPriority, IdleTimeout: 10,
				Instructions: []Instruction{GotoTable{Table: 3}}},
		}}, []string{"OFPST_FLOW reply (OF1.3) (xid=0x11):",
			"cookie=0x5, duration=1.500s, table=0, n_packets=3, n_bytes=180, priority=100,ip,in_port=3 actions=output:2",
			"cookie=0x0, duration=0s, table=2, n_packets=0, n_bytes=0, idle_timeout=10, actions=goto_table:3"}},
		{"group add", &GroupMod{Header: hdr(18), Command: GroupAdd, GroupType: GroupTypeSelect, GroupID: 1, Buckets: []Bucket{
			NewBucket(10, Output{Port: 1}), NewBucket(20, Output{Port: 2})}},
			[]string{"OFPT_GROUP_MOD (OF1.3) (xid=0x12):", "ADD group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=weight:20,actions=output:2"}},
		{"group ff", &GroupMod{Header: hdr(19), Command: GroupModify, GroupType: GroupTypeFastFailover, GroupID: 2, Buckets: []Bucket{
			{WatchPort: 3, WatchGroup: GroupAny, Actions: []Action{Output{Port: 3}}}}},
			[]string{"MOD group_id=2,type=ff,bucket=watch_port:3,actions=output:3"}},
		{"group delete", &GroupMod{Header: hdr(20), Command: GroupDelete, GroupID: GroupAll},
			[]string{"DEL group_id=4294967292,type=all"}},
		{"packet out", func() Message {
			m := NewPacketOut([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0}, Output{Port: 1})
			m.Xid = 21
			return m
		}(), []string{"OFPT_PACKET_OUT (OF1.3) (xid=0x15): in_port=CONTROLLER actions=output:1 data_len=14"}},
		{"packet in", &PacketIn{Header: hdr(22), BufferID: NoBuffer, TotalLen: 14, Reason: ReasonAction, Table: 3, Cookie: 9,
			Match: NewMatch(InPort(2), Reg(0, 5)), Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0}},
			[]string{"OFPT_PACKET_IN (OF1.3) (xid=0x16): table_id=3 cookie=0x9 total_len=14 reg0=0x5,in_port=2 (via action) data_len=14"}},
		{"flow removed", &FlowRemoved{Header: hdr(23), Cookie: 4, Priority: 100, Reason: FlowRemovedIdleTimeout, Table: 2,
			DurationSec: 3, IdleTimeout: 5, PacketCount: 7, ByteCount: 700, Match: NewMatch(EthType(EthTypeIPv4))},
			[]string{"OFPT_FLOW_REMOVED (OF1.3) (xid=0x17): priority=100,ip reason=idle table_id=2 cookie:0x4 duration3s idle5 pkts7 bytes700"}},
		{"bundle open", &BundleControl{Header: hdr(24), BundleID: 1, CtrlType: BundleOpenRequest, Flags: BundleAtomic | BundleOrdered},
			[]string{"ONFT_BUNDLE_CONTROL (OF1.3) (xid=0x18):", "bundle_id=0x1 type=OPEN_REQUEST flags=atomic ordered"}},
		{"bundle commit reply", &BundleControl{Header: hdr(25), BundleID: 1, CtrlType: BundleCommitReply},
			[]string{"bundle_id=0x1 type=COMMIT_REPLY"}},
		{"bundle discard", &BundleControl{Header: hdr(26), BundleID: 2, CtrlType: BundleDiscardRequest},
			[]string{"bundle_id=0x2 type=DISCARD_REQUEST"}},
		{"bundle close", &BundleControl{Header: hdr(27), BundleID: 2, CtrlType: BundleCloseRequest},
			[]string{"bundle_id=0x2 type=CLOSE_REQUEST"}},
		{"bundle add", &BundleAdd{Header: hdr(28), BundleID: 1, Flags: BundleAtomic, Message: innerFlow},
			[]string{"ONFT_BUNDLE_ADD_MESSAGE (OF1.3) (xid=0x1c):", "bundle_id=0x1 flags=atomic",
				"OFPT_FLOW_MOD (OF1.3) (xid=0x1c): ADD priority=100,ip,in_port=3 actions=output:2"}},
	}
}

// failedFlowMod is the request the sample errors point at.
func failedFlowMod(xid uint32) []byte {
	fm := AddFlow(0, 100, NewMatch(EthType(EthTypeIPv4), InPort(3)), Apply(Output{Port: 2}))
	fm.Xid = xid
	b, err := Encode(fm)
	if err != nil {
		panic(err)
	}
	return b
}

package openflow

import (
	"bytes"
	"strings"
	"testing"
)

// TestDecodeOVSFlowMods has ovs-ofctl encode flows written in its own
// syntax, decodes the bytes, and checks that the decoded flow prints as OVS
// prints it and re-encodes to the same bytes.
func TestDecodeOVSFlowMods(t *testing.T) {
	flows := []string{
		"priority=100,ip,in_port=3,nw_src=10.0.0.2 actions=output:2",
		"reg0=5,reg8=0x7/0xff,tun_id=0x10,ct_state=+trk+est,ct_zone=5,ct_mark=3/0xf,ct_label=0x1/0xff,tun_src=1.2.3.4,tun_dst=5.6.7.8,pkt_mark=0x42 actions=drop",
		"ip actions=resubmit(,5),load:0x5->NXM_NX_REG0[],set_field:0x7/0xff->reg1,move:NXM_NX_REG0[0..15]->NXM_NX_REG2[16..31],resubmit:4,resubmit(4,7)",
		"tcp actions=ct(commit,zone=NXM_NX_REG3[0..15],table=10,alg=ftp,exec(set_field:1->ct_mark,nat(src=10.0.0.1-10.0.0.5:1000-2000,random)))",
		"ipv6 actions=ct(commit,nat(dst=[fe80::1]-[fe80::2],persistent))",
		"ip actions=ct(nat)",
		"ip actions=ct(commit,force,zone=9,exec(set_field:0x5->ct_label))",
		"ip actions=ct(zone=7,table=3),clear_actions,write_actions(output:3),write_metadata:0x5/0xff,goto_table:4",
		"ip,nw_src=10.0.0.0/24 actions=conjunction(7,1/2),note:aa",
		"ip actions=note:01.02.03,dec_ttl,controller(reason=no_match,max_len=128,id=3),group:4,push_vlan:0x8100,set_field:4196->vlan_vid,pop_vlan,output:2,mod_nw_ttl:3,set_field:00:11:22:33:44:55->eth_src",
		"arp,arp_op=1,arp_spa=1.1.1.1,arp_tpa=1.1.1.0/24,arp_sha=00:11:22:33:44:55,arp_tha=00:00:00:00:00:00 actions=NORMAL",
		"icmp6,ipv6_src=fe80::1,ipv6_dst=fe80::/64,icmp_type=135 actions=drop",
		"tcp,in_port=LOCAL actions=LOCAL,CONTROLLER:65535,IN_PORT,NORMAL,FLOOD,ALL",
		"dl_type=0x1234,vlan_tci=0x1000/0x1000 actions=drop",
		"ct_state=-new+trk,ip actions=drop",
		"udp,udp_src=5 actions=drop",
		"ip actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:00:11:22:33:44:55,output:IN_PORT",
		"tun_id=0x5/0xff,tun_src=1.1.1.0/24 actions=drop",
		"priority=5,tcp6,ipv6_src=2001:db8::/32,tp_dst=443 actions=output:1",
		"ip,nw_dst=10.0.0.0/255.0.255.0 actions=drop",
		"metadata=0x5/0xff,reg15=0x1 actions=goto_table:2",
		"priority=0 actions=CONTROLLER:128",
		"ip,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,dl_vlan=12 actions=strip_vlan,output:3",
	}
	for _, text := range flows {
		t.Run(text, func(t *testing.T) {
			printed, raw := ovsEncode(t, "parse-flow", text)
			m, err := Decode(raw)
			if err != nil {
				t.Fatalf("decode OVS's encoding %x: %v", raw, err)
			}
			fm, ok := m.(*FlowMod)
			if !ok {
				t.Fatalf("decoded %T, want *FlowMod", m)
			}
			const prefix = "OFPT_FLOW_MOD (OF1.3) (xid=0x1): "
			if got := prefix + fm.String(); got != printed {
				t.Errorf("decoded flow prints\n%s\nOVS printed\n%s", got, printed)
			}
			again, err := Encode(fm)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if !bytes.Equal(again, raw) {
				t.Errorf("re-encoding differs from OVS's bytes:\n got %x\nwant %x", again, raw)
			}
		})
	}
}

// TestDecodeOVSFlowModHeaderFields checks the flow mod fields ovs-ofctl
// prints in its own layout.
func TestDecodeOVSFlowModHeaderFields(t *testing.T) {
	_, raw := ovsEncode(t, "parse-flow", "table=3,cookie=0x10,idle_timeout=5,hard_timeout=7,priority=9,send_flow_rem,ip actions=drop")
	m, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	fm := m.(*FlowMod)
	if fm.Table != 3 || fm.Cookie != 0x10 || fm.IdleTimeout != 5 || fm.HardTimeout != 7 || fm.Priority != 9 ||
		fm.Flags != FlowSendFlowRem || fm.Command != FlowAdd || fm.BufferID != NoBuffer || fm.OutPort != PortAny || fm.OutGroup != GroupAny {
		t.Errorf("decoded %+v", fm)
	}
	if got, want := fm.String(), "ADD table=3,cookie=0x10,idle_timeout=5,hard_timeout=7,priority=9,send_flow_rem,ip actions=drop"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestDecodeOVSUnknownAction: an action this codec does not know (learn)
// is kept raw and the message re-encodes unchanged.
func TestDecodeOVSUnknownAction(t *testing.T) {
	_, raw := ovsEncode(t, "parse-flow", "ip actions=learn(table=5,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),output:2")
	m, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	fm := m.(*FlowMod)
	acts := fm.Instructions[0].(ApplyActions).Actions
	if _, ok := acts[0].(UnknownAction); !ok || acts[1] != (Output{Port: 2}) {
		t.Fatalf("actions %#v: want an UnknownAction then output:2", acts)
	}
	if !strings.HasPrefix(acts[0].String(), "unknown_action(ffff") {
		t.Errorf("unknown action prints %q", acts[0])
	}
	again, err := Encode(fm)
	if err != nil || !bytes.Equal(again, raw) {
		t.Errorf("re-encode: %v\n got %x\nwant %x", err, again, raw)
	}
}

func TestDecodeOVSGroupMods(t *testing.T) {
	groups := []string{
		"group_id=1,type=select,bucket=weight:10,actions=output:1,bucket=weight:20,actions=output:2",
		"group_id=2,type=ff,bucket=watch_port:3,actions=output:3,bucket=watch_port:4,actions=output:4",
		"group_id=3,type=all,bucket=actions=output:1,bucket=actions=resubmit(,3)",
		"group_id=4,type=indirect,bucket=actions=set_field:00:11:22:33:44:55->eth_dst,output:5",
	}
	for _, text := range groups {
		t.Run(text, func(t *testing.T) {
			printed, raw := ovsEncode(t, "parse-group", text)
			m, err := Decode(raw)
			if err != nil {
				t.Fatalf("decode %x: %v", raw, err)
			}
			gm, ok := m.(*GroupMod)
			if !ok {
				t.Fatalf("decoded %T", m)
			}
			want := strings.TrimSpace(printed[strings.Index(printed, "\n")+1:])
			if got := gm.String(); got != want {
				t.Errorf("decoded group prints\n%s\nOVS printed\n%s", got, want)
			}
			again, err := Encode(gm)
			if err != nil || !bytes.Equal(again, raw) {
				t.Errorf("re-encode: %v\n got %x\nwant %x", err, again, raw)
			}
		})
	}
}

func TestDecodeOVSHello(t *testing.T) {
	for _, tc := range []struct {
		bitmap string
		want   []uint8
	}{{"0x10", []uint8{4}}, {"0x5e", []uint8{1, 2, 3, 4, 6}}} {
		raw := parseHexDump(t, ofctl(t, "encode-hello", tc.bitmap))
		m, err := Decode(raw)
		if err != nil {
			t.Fatalf("decode %x: %v", raw, err)
		}
		h := m.(*Hello)
		if !bytesEqual(h.Versions, tc.want) || !h.Supports(Version13) {
			t.Errorf("hello %s: versions %v, want %v", tc.bitmap, h.Versions, tc.want)
		}
	}
}

func bytesEqual(a, b []uint8) bool { return bytes.Equal(a, b) }

func TestDecodeOVSErrors(t *testing.T) {
	req := failedFlowMod(0x42)
	for _, tc := range []struct {
		name string
		typ  ErrorType
		exp  uint32
	}{
		{"OFPBFC_MSG_FAILED", ErrExperimenter, ONFExperimenter},
		{"OFPBFC_BAD_ID", ErrExperimenter, ONFExperimenter},
		{"NXBRC_NXM_INVALID", ErrExperimenter, NiciraExperimenter},
		{"OFPBAC_BAD_OUT_PORT", ErrBadAction, 0},
		{"OFPBMC_BAD_PREREQ", ErrBadMatch, 0},
		{"OFPFMFC_TABLE_FULL", ErrFlowModFailed, 0},
		{"OFPBRC_BAD_TYPE", ErrBadRequest, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := parseHexDump(t, ofctl(t, "-O", "OpenFlow13", "encode-error-reply", tc.name, hexString(req)))
			m, err := Decode(raw)
			if err != nil {
				t.Fatalf("decode %x: %v", raw, err)
			}
			e := m.(*ErrorMsg)
			if e.Name() != tc.name || e.ErrType != tc.typ || e.Experimenter != tc.exp || e.Xid != 0x42 {
				t.Errorf("decoded %s (type %v, experimenter 0x%x, xid 0x%x), want %s", e.Name(), e.ErrType, e.Experimenter, e.Xid, tc.name)
			}
			if h, ok := e.Offending(); !ok || h.Type != TypeFlowMod || h.Xid != 0x42 {
				t.Errorf("offending request %+v %v", h, ok)
			}
			if !strings.Contains(e.Error(), tc.name) || !strings.Contains(e.Error(), "OFPT_FLOW_MOD xid 0x42") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}

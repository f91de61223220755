package openflow_test

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// A flow in table 0 that sends a pod's IPv4 traffic to conntrack and on to
// table 10, built and printed in ovs-ofctl syntax.
func ExampleAddFlow() {
	fm := openflow.AddFlow(0, 200,
		openflow.NewMatch(
			openflow.InPort(3),
			openflow.EthType(openflow.EthTypeIPv4),
			openflow.IPv4Src(netip.MustParseAddr("10.10.0.5")),
		),
		openflow.Apply(
			openflow.SetField{Field: openflow.Reg(0, 3)},
			openflow.CT{Zone: 1, Recirc: true, Table: 10},
		),
	)
	fmt.Println(fm)
	// Output: ADD priority=200,ip,in_port=3,nw_src=10.10.0.5 actions=set_field:0x3->reg0,ct(table=10,zone=1)
}

// Flow mods sent as one atomic bundle; the caller supplies xids.
func ExampleBundle() {
	next := uint32(0)
	xid := func() uint32 { next++; return next }
	msgs := openflow.Bundle(1, openflow.BundleAtomic, xid,
		openflow.AddFlow(0, 10, openflow.NewMatch(openflow.InPort(1)), openflow.Apply(openflow.Output{Port: 2})),
		openflow.AddFlow(0, 10, openflow.NewMatch(openflow.InPort(2)), openflow.Apply(openflow.Output{Port: 1})),
	)
	var wire bytes.Buffer
	for _, m := range msgs {
		if err := openflow.WriteMessage(&wire, m); err != nil {
			panic(err)
		}
	}
	r := openflow.NewReader(&wire)
	for range msgs {
		m, err := r.ReadMessage()
		if err != nil {
			panic(err)
		}
		switch m := m.(type) {
		case *openflow.BundleControl:
			fmt.Printf("xid %d: bundle %d %v\n", m.XID(), m.BundleID, m.CtrlType)
		case *openflow.BundleAdd:
			fmt.Printf("xid %d: add %v (inner xid %d)\n", m.XID(), m.Message.(*openflow.FlowMod), m.Message.XID())
		}
	}
	// Output:
	// xid 1: bundle 1 OPEN_REQUEST
	// xid 2: add ADD priority=10,in_port=1 actions=output:2 (inner xid 2)
	// xid 3: add ADD priority=10,in_port=2 actions=output:1 (inner xid 3)
	// xid 4: bundle 1 COMMIT_REQUEST
}

package pipeline_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// TestInstalledFlows installs the whole pipeline on a real OVS and compares
// what OVS reports with the flows documented in docs/pipeline.md.
func TestInstalledFlows(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	o.Vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
		"protocols=OpenFlow13", "fail_mode=secure")
	conn, err := ofconn.New(ofconn.Config{Bridge: "br-int", RunDir: o.Dir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = conn.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	sess, err := conn.WaitSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := pipeline.Network{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), GatewayIP: netip.MustParseAddr("10.244.0.1"),
		GatewayMAC: net.HardwareAddr{0x0a, 0x58, 10, 244, 0, 1}}
	m := pipeline.NewManager(nil)
	for owner, flows := range map[pipeline.Owner][]pipeline.Flow{
		pipeline.OwnerBase:    pipeline.BaseFlows(),
		pipeline.OwnerGateway: pipeline.GatewayFlows(n, pipeline.Endpoint{OFPort: 1, IP: n.GatewayIP, MAC: n.GatewayMAC}),
		pipeline.PodOwner("c", "eth0"): pipeline.PodFlows(pipeline.Endpoint{OFPort: 2,
			IP: netip.MustParseAddr("10.244.0.2"), MAC: net.HardwareAddr{0x0a, 0x58, 10, 244, 0, 2}}),
	} {
		_ = m.Set(ctx, owner, flows)
	}
	if err := m.Resync(ctx, sess); err != nil {
		t.Fatal(err)
	}
	got := normalize(o.Ofctl("-O", "OpenFlow13", "--no-stats", "dump-flows", "br-int"))
	want := normalize(`
 table=0, priority=200,in_port=2 actions=goto_table:10
 table=0, priority=200,in_port=1 actions=goto_table:20
 table=0, priority=0 actions=drop
 table=10, priority=200,ip,in_port=2,dl_src=0a:58:0a:f4:00:02,nw_src=10.244.0.2 actions=goto_table:20
 table=10, priority=200,arp,in_port=2,dl_src=0a:58:0a:f4:00:02,arp_spa=10.244.0.2,arp_sha=0a:58:0a:f4:00:02 actions=goto_table:20
 table=10, priority=0 actions=drop
 table=20, priority=200,arp,arp_tpa=10.244.0.1,arp_op=1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:0a:58:0a:f4:00:01->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:0a:58:0a:f4:00:01->arp_sha,set_field:10.244.0.1->arp_spa,IN_PORT
 table=20, priority=190,arp,arp_tpa=10.244.0.1 actions=output:1
 table=20, priority=190,arp,arp_tpa=10.244.0.2 actions=output:2
 table=20, priority=100,arp actions=drop
 table=20, priority=0 actions=goto_table:30
 table=30, priority=200,ip,nw_dst=10.244.0.2 actions=set_field:0a:58:0a:f4:00:02->eth_dst,output:2
 table=30, priority=200,ip,nw_dst=10.244.0.1 actions=output:1
 table=30, priority=100,ip,nw_dst=10.244.0.0/24 actions=drop
 table=30, priority=50,ip actions=output:1
 table=30, priority=0 actions=drop
`)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("installed flows differ from docs/pipeline.md:\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Verify reads each owner's flows back from OVS and finds them equal
	// to the desired ones, in OVS's own rendering of them.
	pod := pipeline.PodOwner("c", "eth0")
	for _, owner := range []pipeline.Owner{pipeline.OwnerBase, pipeline.OwnerGateway, pod} {
		if err := m.Verify(ctx, owner); err != nil {
			t.Fatalf("Verify %s right after install: %v", owner, err)
		}
	}
	// A flow deleted behind the agent's back is missing; one added under
	// the owner's cookie is unexpected.
	o.Ofctl("-O", "OpenFlow13", "del-flows", "br-int", "table=10,ip,in_port=2")
	var drift *pipeline.DriftError
	if err := m.Verify(ctx, pod); !errors.As(err, &drift) || len(drift.Missing) != 1 || len(drift.Extra) != 0 {
		t.Fatalf("Verify after a deleted flow: %v, want one missing", err)
	}
	if m.Installed(pod) {
		t.Fatal("an owner with a missing flow still counts as installed")
	}
	if err := m.Set(ctx, pod, pipeline.PodFlows(pipeline.Endpoint{OFPort: 2,
		IP: netip.MustParseAddr("10.244.0.2"), MAC: net.HardwareAddr{0x0a, 0x58, 10, 244, 0, 2}})); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(ctx, pod); err != nil {
		t.Fatalf("Verify after the repair: %v", err)
	}
	cookie := ""
	for _, l := range strings.Split(o.Ofctl("-O", "OpenFlow13", "dump-flows", "br-int", "table=20,arp,arp_tpa=10.244.0.2"), "\n") {
		if m := regexp.MustCompile(`cookie=(0x[0-9a-f]+)`).FindStringSubmatch(l); m != nil {
			cookie = m[1]
		}
	}
	o.Ofctl("-O", "OpenFlow13", "add-flow", "br-int", "cookie="+cookie+",table=20,priority=5,arp actions=drop")
	if err := m.Verify(ctx, pod); !errors.As(err, &drift) || len(drift.Extra) != 1 {
		t.Fatalf("Verify with a foreign flow under the owner's cookie: %v, want one unexpected", err)
	}
}

var cookieRE = regexp.MustCompile(`cookie=0x[0-9a-f]+, `)

// normalize drops cookies and the "table=0, " OVS leaves out, and sorts, so
// the comparison is about the flows.
func normalize(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(cookieRE.ReplaceAllString(l, ""))
		l = strings.TrimPrefix(l, "table=0, ")
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

package pipeline_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
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
		pipeline.OwnerTunnel: pipeline.TunnelFlows(n, 10),
		"policy/exempt": pipeline.PolicyExemptFlows(n, []netip.Addr{netip.MustParseAddr("192.0.2.10")},
			[]netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}),
		"policy/web/ingress/0": pipeline.PolicyRuleFlows(pipeline.PolicyRule{Direction: pipeline.Ingress, ConjID: 1, Priority: 1000,
			Pods:  []netip.Addr{netip.MustParseAddr("10.244.0.2")},
			Peers: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
			Ports: []pipeline.PolicyPort{{Proto: 6, Port: 80}}}),
		"policy/web/egress/0": pipeline.PolicyRuleFlows(pipeline.PolicyRule{Direction: pipeline.Egress, ConjID: 2, Priority: 1001,
			Pods:  []netip.Addr{netip.MustParseAddr("10.244.0.2")},
			Peers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			Ports: []pipeline.PolicyPort{{Proto: 17, Port: 53}, {Proto: 6, Port: 8000, EndPort: 8004}}}),
		"isolation/10.244.0.2": append(pipeline.IsolationFlows(pipeline.Ingress, netip.MustParseAddr("10.244.0.2")),
			pipeline.IsolationFlows(pipeline.Egress, netip.MustParseAddr("10.244.0.2"))...),
		pipeline.PeerOwner("node-b"): pipeline.PeerFlows(n, 10, pipeline.Peer{NodeIP: netip.MustParseAddr("172.31.213.2"),
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}),
	} {
		_ = m.Set(ctx, owner, flows)
	}
	if err := m.Resync(ctx, sess); err != nil {
		t.Fatal(err)
	}
	got := normalize(o.Ofctl("-O", "OpenFlow13", "--no-stats", "dump-flows", "br-int"))
	want := documentedFlows(t)
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

// documentedFlows returns the flows docs/pipeline.md shows: every line of
// it that starts with "table=", without the comment after a "#".
func documentedFlows(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "table=") {
			continue
		}
		if i := strings.Index(l, "#"); i >= 0 {
			l = l[:i]
		}
		lines = append(lines, l)
	}
	return normalize(strings.Join(lines, "\n"))
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

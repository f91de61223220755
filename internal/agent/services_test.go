package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/cnitest"
)

// Services the way kube-proxy makes them: NAT on the host (here nftables in
// the node's namespace, as kube-proxy's nftables mode writes it): a
// ClusterIP DNATed to a pod of this node, a NodePort on the node's address,
// and kube-proxy's masquerade of a pod reaching itself through its own
// Service (hairpin). The client pod must get its answers from the Service's
// address: the endpoint's reply has to go back through the host, which
// reverses the DNAT, instead of straight to the client over the bridge.
func TestServicesThroughTheHost(t *testing.T) {
	e := newPodEnv(t, nil)
	client, server := e.newPod(), e.newPod()
	e.add(client)
	e.add(server)
	const nodeIP = "192.0.2.10"
	node := e.o.Netns()
	// The node's own address, not the gateway's (on lo: this kernel may
	// lack the dummy device). The node's default route leads to an
	// "outside" namespace that answers for an address of the Service
	// range, as whatever sits behind a real node's default route may: the
	// place where untranslated Service traffic must not arrive.
	outside, err := cnitest.NewNetns(e.ctx, "ovsnet-out-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = outside.Delete() })
	up := fmt.Sprintf("ovsnup%d", os.Getpid()%100000)
	for _, args := range [][]string{
		{"ip", "-n", node, "addr", "add", nodeIP + "/32", "dev", "lo"},
		{"ip", "-n", node, "link", "add", up, "type", "veth", "peer", "name", "eth0", "netns", outside.Name},
		{"ip", "-n", node, "addr", "add", "198.51.100.1/24", "dev", up},
		{"ip", "-n", node, "link", "set", up, "up"},
		{"ip", "-n", node, "route", "add", "default", "via", "198.51.100.2"},
		{"ip", "-n", outside.Name, "addr", "add", "198.51.100.2/24", "dev", "eth0"},
		{"ip", "-n", outside.Name, "addr", "add", "10.96.0.99/32", "dev", "lo"},
		{"ip", "-n", outside.Name, "link", "set", "eth0", "up"},
		{"ip", "-n", outside.Name, "link", "set", "lo", "up"},
	} {
		if out, err := runCmd(e.ctx, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	echo, err := cnitest.StartEcho(server.ns.Path, server.ip, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	rules := fmt.Sprintf(`table ip e2e-services {
	chain pre {
		type nat hook prerouting priority dstnat;
		ip daddr 10.96.0.10 tcp dport 80 dnat to %[1]s:8080
		ip daddr 10.96.0.10 udp dport 53 dnat to %[1]s:8080
		ip daddr %[2]s tcp dport 30080 dnat to %[1]s:8080
		ip daddr 198.51.100.1 tcp dport 30081 dnat to %[1]s:8080
		ip daddr 198.51.100.1 tcp dport 30082 meta mark set 0x4000 dnat to %[1]s:8080
	}
	chain out {
		type nat hook output priority -100;
		ip daddr 10.96.0.10 tcp dport 80 dnat to %[1]s:8080
	}
	chain post {
		type nat hook postrouting priority srcnat;
		ip saddr %[1]s ip daddr %[1]s masquerade
		meta mark 0x4000 masquerade
	}
}
`, server.ip, nodeIP)
	file := filepath.Join(t.TempDir(), "services.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	e.o.InNetns("nft", "-f", file)
	t.Cleanup(func() {
		_, _ = runCmd(context.Background(), "ip", "netns", "exec", node, "nft", "delete", "table", "ip", "e2e-services")
	})

	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	expect := func(what, got string, err error, want string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !strings.HasPrefix(got, want) {
			t.Fatalf("%s: answer %q, want it to start with %q", what, got, want)
		}
	}
	got, err := cnitest.TCPEcho(ctx, client.ns.Path, "10.96.0.10:80", "clusterip-tcp")
	// The server sees the client's own address: no masquerade in between.
	expect("pod -> ClusterIP (TCP), endpoint on the same node", got, err, "clusterip-tcp from "+client.ip)
	got, err = cnitest.UDPEcho(ctx, client.ns.Path, "10.96.0.10:53", "clusterip-udp")
	expect("pod -> ClusterIP (UDP), endpoint on the same node", got, err, "clusterip-udp")
	got, err = cnitest.TCPEcho(ctx, client.ns.Path, nodeIP+":30080", "nodeport")
	expect("pod -> NodePort on the node's address", got, err, "nodeport from "+client.ip)
	got, err = cnitest.TCPEcho(ctx, server.ns.Path, "10.96.0.10:80", "hairpin")
	expect("pod -> its own Service (hairpin)", got, err, "hairpin from ")
	// A client outside the node, through the node's address on its way
	// in: with externalTrafficPolicy Local (port 30081) kube-proxy keeps
	// the client's address, so the endpoint's reply is addressed outside
	// the pod CIDR and must still go back through the host's un-DNAT; with
	// Cluster (30082) kube-proxy masquerades to the gateway's address.
	got, err = cnitest.TCPEcho(ctx, outside.Path, "198.51.100.1:30081", "nodeport-local")
	expect("outside -> NodePort, externalTrafficPolicy Local", got, err, "nodeport-local from 198.51.100.2")
	got, err = cnitest.TCPEcho(ctx, outside.Path, "198.51.100.1:30082", "nodeport-cluster")
	expect("outside -> NodePort, externalTrafficPolicy Cluster", got, err, "nodeport-cluster from 10.244.7.1")
	// The node itself, through the Service (kube-proxy's OUTPUT rules); a
	// host-network pod is a process of the node's namespace like this one.
	got, err = cnitest.TCPEcho(ctx, e.o.NetnsPath(), "10.96.0.10:80", "node")
	expect("node -> ClusterIP", got, err, "node from ")
	// Pod -> the node's address: the node answers from it, and so ARPs
	// for the pod from it. A fresh pod, and a node that forgot every
	// neighbour, so the pod's reply to that ARP is what decides.
	fresh := e.newPod()
	e.add(fresh)
	e.o.InNetns("ip", "neigh", "flush", "dev", e.cfg.GatewayName)
	if err := fresh.ping(t, ctx, nodeIP); err != nil {
		t.Fatal(err)
	}
	// A Service address no Service translates (here: no rule for
	// 10.96.0.99) is refused on the node: TCP gets a reset, and neither
	// TCP nor UDP reaches the outside namespace that holds the address.
	rogue, err := cnitest.StartEcho(outside.Path, "10.96.0.99", 80)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	rogueUDP, err := cnitest.ListenUDP(outside.Path, "10.96.0.99", 53)
	if err != nil {
		t.Fatal(err)
	}
	defer rogueUDP.Close()
	fence, err := cnitest.ListenUDP(outside.Path, "198.51.100.2", 53)
	if err != nil {
		t.Fatal(err)
	}
	defer fence.Close()
	if got, err := cnitest.TCPEcho(ctx, client.ns.Path, "10.96.0.99:80", "leak"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("pod -> an untranslated Service address: answer %q, err %v; want the connection refused on the node", got, err)
	}
	if err := cnitest.SendUDP(client.ns.Path, client.ip, "10.96.0.99", 53, 5); err != nil {
		t.Fatal(err)
	}
	if err := cnitest.SendUDP(client.ns.Path, client.ip, "198.51.100.2", 53, 5); err != nil {
		t.Fatal(err)
	}
	// Masqueraded to the address of the node's way out.
	if err := fence.WaitFrom(ctx, "198.51.100.1", 5); err != nil {
		t.Fatalf("pod -> an address outside the node: %v", err)
	}
	if n := rogueUDP.From("198.51.100.1") + rogueUDP.From(client.ip); n != 0 {
		t.Fatalf("%d datagrams to an untranslated Service address left the node", n)
	}
	// Pod -> pod is unchanged.
	got, err = cnitest.TCPEcho(ctx, client.ns.Path, server.ip+":8080", "direct")
	expect("pod -> pod", got, err, "direct from "+client.ip)
}

func runCmd(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

//go:build e2e

package suite

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ovsnet/ovsnet/e2e/framework"
	"github.com/ovsnet/ovsnet/internal/agentapi"
)

const (
	replicas = 20
	scaledTo = 10
	webPort  = 8080
)

// webPodSpec serves the pod's own name on webPort, so a TCP check proves it
// reached the pod it aimed at. Ready once the port accepts connections from
// the node (kubelet's probe crosses the gateway).
func webPodSpec(c *framework.Cluster) corev1.PodSpec {
	spec := c.BusyboxPodSpec("/bin/sh", "-c",
		fmt.Sprintf("mkdir -p /www && hostname > /www/index.html && exec httpd -f -p %d -h /www", webPort))
	spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(webPort)}},
		PeriodSeconds: 1,
	}
	return spec
}

// A 20-replica Deployment: every pod gets an address of the node's pod CIDR
// (the one the agent recorded), every pod reaches every other pod and the
// node by ICMP and TCP, the node reaches every pod; scaling down frees the
// removed pods' addresses, OVS ports and host interfaces.
func TestDeployment(t *testing.T) {
	c, o := env(t)
	ctx := deadline(t, 8*time.Minute)
	ns := namespace(t, ctx, c, "ovsnet-e2e-deploy")
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: webPodSpec(c)},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods map[string]*corev1.Pod
	err := c.WatchPods(ctx, ns, "app=web", func(cur map[string]*corev1.Pod) (bool, error) {
		pods = cur
		return framework.AllReady(replicas)(cur)
	})
	if err != nil {
		t.Fatalf("%d pods Ready: %v", replicas, err)
	}

	var attached map[string]agentapi.Pod
	t.Run("addresses", func(t *testing.T) {
		attached = checkAddresses(t, ctx, c, o, ns, pods)
	})
	if t.Failed() {
		return
	}
	t.Run("connectivity", func(t *testing.T) {
		checkConnectivity(t, ctx, c, ns, pods)
	})
	t.Run("scale-down-frees-addresses-and-ports", func(t *testing.T) {
		checkScaleDown(t, ctx, c, o, ns, attached)
	})
}

// checkAddresses returns the agent's attachments by pod name.
func checkAddresses(t *testing.T, ctx context.Context, c *framework.Cluster, o *framework.Ovsnet, ns string, pods map[string]*corev1.Pod) map[string]agentapi.Pod {
	st, err := o.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := netip.ParseAddr(st.Gateway)
	if err != nil {
		t.Fatalf("agent status gateway %q: %v", st.Gateway, err)
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodeCIDR, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil {
		t.Fatalf("node %s pod CIDR %q: %v", c.NodeName, node.Spec.PodCIDR, err)
	}
	if !nodeCIDR.Contains(gw) {
		t.Errorf("gateway %s outside the node's pod CIDR %s", gw, nodeCIDR)
	}
	agentPods, err := o.Pods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	attached := map[string]agentapi.Pod{}
	for _, a := range agentPods {
		if a.Namespace == ns {
			attached[a.Name] = a
		}
	}
	seen := map[netip.Addr]string{}
	for name, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil {
			t.Errorf("pod %s: IP %q: %v", name, p.Status.PodIP, err)
			continue
		}
		if !nodeCIDR.Contains(ip) || ip == gw {
			t.Errorf("pod %s: IP %s is not a pod address of the node's pod CIDR %s (gateway %s)", name, ip, nodeCIDR, gw)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("pods %s and %s share IP %s", name, other, ip)
		}
		seen[ip] = name
		a, ok := attached[name]
		switch {
		case !ok:
			t.Errorf("pod %s (%s) has no attachment in the agent", name, ip)
		case a.IP != ip.String()+"/"+fmt.Sprint(nodeCIDR.Bits()) && a.IP != ip.String():
			t.Errorf("pod %s: API says %s, agent says %s", name, ip, a.IP)
		case !a.FlowsIn || a.State != "LIVE":
			t.Errorf("pod %s: agent attachment not live with flows: %+v", name, a)
		}
	}
	return attached
}

// hostAddress is the node's address towards the outside (the source of its
// route to a TEST-NET-1 address): traffic from a pod to it crosses the
// gateway into the host's stack.
func hostAddress(t *testing.T) netip.Addr {
	conn, err := net.Dial("udp4", "192.0.2.1:9") // a UDP connect only picks the route: nothing is sent
	if err != nil {
		t.Fatalf("finding the node's address (default route): %v", err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// serveHost answers "node" over HTTP on addr:0 of the host until the test ends.
func serveHost(t *testing.T, addr netip.Addr) string {
	return serveOnNode(t, framework.Node{Name: "host"}, addr)
}

// serveOnNode answers "node" over HTTP on addr:0 in the node's network
// namespace until the test ends.
func serveOnNode(t *testing.T, n framework.Node, addr netip.Addr) string {
	ln, err := n.Listen(t.Context(), "tcp4", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("listen on %s of node %s: %v", addr, n.Name, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "node") }),
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// probeScript runs in a pod: for each "IP=NAME" argument, one ping and one
// HTTP GET of http://IP:8080/ (webPort) that must answer NAME; for each "url=URL",
// a GET that must answer "node"; for each "ping=IP", one ping. All checks run
// at once; the output lists the failures only.
const probeScript = `
for t in "$@"; do
	case $t in
	url=*) u=${t#url=}; ( b=$(timeout 5 wget -q -O - "$u" 2>&1); [ "$b" = node ] || echo "GET $u: '$b'" ) & ;;
	ping=*) ip=${t#ping=}; ( ping -c 1 -W 3 "$ip" >/dev/null 2>&1 || echo "ping $ip: no reply" ) & ;;
	*) ip=${t%%=*}; name=${t#*=}
	   ( ping -c 1 -W 3 "$ip" >/dev/null 2>&1 || echo "ping $ip ($name): no reply" ) &
	   ( b=$(timeout 5 wget -q -O - "http://$ip:8080/" 2>&1); [ "$b" = "$name" ] || echo "GET $ip:8080 ($name): '$b'" ) & ;;
	esac
done
wait
`

func checkConnectivity(t *testing.T, ctx context.Context, c *framework.Cluster, ns string, pods map[string]*corev1.Pod) {
	host := hostAddress(t)
	gwAddr := netip.MustParseAddr(firstAddress(c.PodCIDR))
	targets := []string{"ping=" + host.String(), "ping=" + gwAddr.String(),
		"url=http://" + serveHost(t, host) + "/", "url=http://" + serveHost(t, gwAddr) + "/"}
	names := slices.Sorted(maps.Keys(pods))
	for _, n := range names {
		targets = append(targets, pods[n].Status.PodIP+"="+n)
	}

	// Node -> pod, from the test process on the host.
	for _, n := range names {
		body, err := httpGet(ctx, "http://"+net.JoinHostPort(pods[n].Status.PodIP, fmt.Sprint(webPort))+"/")
		if err != nil || strings.TrimSpace(body) != n {
			t.Errorf("node -> pod %s (%s): %q, %v", n, pods[n].Status.PodIP, body, err)
		}
	}

	// Pod -> every pod (itself included) and the node, five pods at a time.
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 5)
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := c.Exec(ctx, ns, n, append([]string{"sh", "-c", probeScript, "probe"}, targets...)...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("pod %s: %v", n, err)
			}
			if s := strings.TrimSpace(out); s != "" {
				t.Errorf("pod %s (%s) cannot reach:\n%s", n, pods[n].Status.PodIP, s)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d pods: each reached %d pods and the node (%s, gateway %s) by ICMP and HTTP", len(names), len(names), host, gwAddr)
}

func checkScaleDown(t *testing.T, ctx context.Context, c *framework.Cluster, o *framework.Ovsnet, ns string, before map[string]agentapi.Pod) {
	_, err := c.Client.AppsV1().Deployments(ns).UpdateScale(ctx, "web",
		&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: scaledTo}},
		metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var remaining map[string]*corev1.Pod
	err = c.WatchPods(ctx, ns, "app=web", func(cur map[string]*corev1.Pod) (bool, error) {
		remaining = cur
		return framework.AllReady(scaledTo)(cur)
	})
	if err != nil {
		t.Fatalf("scaling down to %d: %v", scaledTo, err)
	}
	var gone []agentapi.Pod
	for name, a := range before {
		if _, ok := remaining[name]; !ok {
			gone = append(gone, a)
		}
	}
	if len(gone) != replicas-scaledTo {
		t.Fatalf("%d pods gone, want %d", len(gone), replicas-scaledTo)
	}
	// kubelet removes the pod object after the sandbox is stopped, so DEL
	// has normally run; the agent's and OVS's state are still awaited.
	err = framework.Eventually(ctx, "addresses and ports of deleted pods freed", func(ctx context.Context) error {
		return freed(ctx, o, gone)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pods that stay keep theirs.
	ports, err := o.OVSPorts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name := range remaining {
		if a, ok := before[name]; ok && !slices.Contains(ports, a.Port) {
			t.Errorf("pod %s lost its OVS port %s", name, a.Port)
		}
	}
	t.Logf("scaled %d -> %d: %d addresses, OVS ports and host interfaces freed", replicas, scaledTo, len(gone))
}

// freed is nil once none of the attachments is known to the agent, has an
// OVS port, a host interface or an IPAM allocation.
func freed(ctx context.Context, o *framework.Ovsnet, gone []agentapi.Pod) error {
	agentPods, err := o.Pods(ctx)
	if err != nil {
		return err
	}
	ports, err := o.OVSPorts(ctx)
	if err != nil {
		return err
	}
	allocated, err := o.IPAMAddresses()
	if err != nil {
		return err
	}
	var left []string
	for _, g := range gone {
		ip := addrOf(g.IP)
		for _, a := range agentPods {
			if a.ContainerID == g.ContainerID || addrOf(a.IP) == ip {
				left = append(left, fmt.Sprintf("agent attachment %s/%s %s", a.Namespace, a.Name, a.IP))
			}
		}
		if slices.Contains(ports, g.Port) {
			left = append(left, "OVS port "+g.Port)
		}
		if slices.Contains(allocated, ip) {
			left = append(left, "IPAM allocation "+ip.String())
		}
		if _, err := net.InterfaceByName(g.Port); err == nil {
			left = append(left, "host interface "+g.Port)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("still there: %s", strings.Join(left, ", "))
	}
	return nil
}

// addrOf parses "10.244.0.5" or "10.244.0.5/24".
func addrOf(s string) netip.Addr {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr()
	}
	a, _ := netip.ParseAddr(s)
	return a
}

func firstAddress(p netip.Prefix) string { return p.Masked().Addr().Next().String() }

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return string(b), err
}

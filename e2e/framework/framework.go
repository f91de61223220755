// Package framework is what ovsnet's end-to-end tests (e2e/suite) and the
// pod latency benchmark (e2e/podbench) share: the settings of the running
// e2e cluster, a Kubernetes client, waits on pods expressed as watches,
// kubectl, and the node side of ovsnet (agent API, its OVS, its plugin).
//
// Everything is read from the environment that e2e/run.sh exports from
// $E2E_LAB/cluster.env and $E2E_LAB/ovsnet/ovsnet.env, so a test binary
// runs against whichever cluster those files describe.
package framework

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is the running e2e cluster.
type Cluster struct {
	Lab          string
	Kubeconfig   string
	KubectlPath  string
	NodeName     string
	PodCIDR      netip.Prefix
	BusyboxImage string
	// NettoolImage runs e2e/cluster/e2e-nettool (server and clients of the
	// Service tests).
	NettoolImage string
	// NodeIP is the node's InternalIP, where kube-apiserver, kubelet and
	// NodePorts listen.
	NodeIP netip.Addr
	// DNSServiceIP is Service kube-system/kube-dns (CoreDNS); ClusterDomain
	// the cluster's DNS domain.
	DNSServiceIP  netip.Addr
	ClusterDomain string
	// CNI is "custom" (ovsnet) or "bridge" (the reference plugins).
	CNI    string
	Client kubernetes.Interface
	Rest   *rest.Config
	// Layout is LayoutHost (one node, this machine) or LayoutNetns (every
	// node in namespaces of its own; NodeName, NodeIP and PodCIDR are then
	// those of the first node).
	Layout                        string
	nodesDir, mountNSDir, nodeCtl string
	// APIServerIP is the address kube-apiserver advertises (the endpoint of
	// Service default/kubernetes): NodeIP in the host layout, the control
	// plane's in the netns layout.
	APIServerIP netip.Addr
}

// errNoCluster says how to get the environment a test binary needs.
var errNoCluster = errors.New("run through e2e/run.sh (make e2e), or source $E2E_LAB/cluster.env (and $E2E_LAB/ovsnet/ovsnet.env) of a cluster started with e2e/run.sh up")

// env returns the named variables, or an error naming the missing ones.
func env(names ...string) (map[string]string, error) {
	out := map[string]string{}
	var missing []string
	for _, n := range names {
		v := os.Getenv(n)
		if v == "" {
			missing = append(missing, n)
		}
		out[n] = v
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s not set: %w", strings.Join(missing, ", "), errNoCluster)
	}
	return out, nil
}

// LoadCluster reads the cluster's settings and builds a client. The client
// is allowed bursts well above client-go's defaults: tests create tens of
// pods at once, and client-side throttling would be measured as latency.
func LoadCluster() (*Cluster, error) {
	e, err := env("KUBECONFIG", "E2E_KUBECTL", "E2E_NODE_NAME", "E2E_POD_CIDR", "E2E_BUSYBOX_IMAGE", "E2E_CNI", "E2E_LAB",
		"E2E_NETTOOL_IMAGE", "E2E_NODE_IP", "E2E_DNS_SERVICE_IP", "E2E_CLUSTER_DOMAIN")
	if err != nil {
		return nil, err
	}
	cidr, err := netip.ParsePrefix(e["E2E_POD_CIDR"])
	if err != nil {
		return nil, fmt.Errorf("E2E_POD_CIDR %q: %w", e["E2E_POD_CIDR"], err)
	}
	nodeIP, err := netip.ParseAddr(e["E2E_NODE_IP"])
	if err != nil {
		return nil, fmt.Errorf("E2E_NODE_IP %q: %w", e["E2E_NODE_IP"], err)
	}
	dnsIP, err := netip.ParseAddr(e["E2E_DNS_SERVICE_IP"])
	if err != nil {
		return nil, fmt.Errorf("E2E_DNS_SERVICE_IP %q: %w", e["E2E_DNS_SERVICE_IP"], err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", e["KUBECONFIG"])
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", e["KUBECONFIG"], err)
	}
	rc.QPS, rc.Burst = 200, 400
	rc.UserAgent = "ovsnet-e2e"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c := &Cluster{
		Lab: e["E2E_LAB"], Kubeconfig: e["KUBECONFIG"], KubectlPath: e["E2E_KUBECTL"], NodeName: e["E2E_NODE_NAME"],
		PodCIDR: cidr, BusyboxImage: e["E2E_BUSYBOX_IMAGE"], CNI: e["E2E_CNI"], Client: cs, Rest: rc,
		NettoolImage: e["E2E_NETTOOL_IMAGE"], NodeIP: nodeIP, DNSServiceIP: dnsIP, ClusterDomain: e["E2E_CLUSTER_DOMAIN"],
		Layout: LayoutHost, APIServerIP: nodeIP,
	}
	if u, err := url.Parse(os.Getenv("E2E_APISERVER_URL")); err == nil {
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
			c.APIServerIP = ip
		}
	}
	if os.Getenv("E2E_LAYOUT") == LayoutNetns {
		ne, err := env("E2E_NODES_DIR", "E2E_NODE_MOUNTNS_DIR", "E2E_NODE_CTL")
		if err != nil {
			return nil, err
		}
		c.Layout, c.nodesDir, c.mountNSDir, c.nodeCtl = LayoutNetns, ne["E2E_NODES_DIR"], ne["E2E_NODE_MOUNTNS_DIR"], ne["E2E_NODE_CTL"]
	}
	return c, nil
}

// FirstNode is the node of NodeName, the one single-node tests use.
func (c *Cluster) FirstNode(ctx context.Context) (Node, error) {
	return c.Node(ctx, c.NodeName)
}

// Eventually runs check until it returns nil, backing off from 20 ms to 1 s
// between tries, and gives up when ctx ends. It is for conditions nothing
// can watch (the agent's API, OVS, the file system); pods are watched. The
// error names what was awaited and why the last try failed.
func Eventually(ctx context.Context, what string, check func(context.Context) error) error {
	delay := 20 * time.Millisecond
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last check: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

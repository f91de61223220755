package framework

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovsnet/ovsnet/e2e/netns"
)

// Layouts of the e2e cluster (e2e/cluster/lib.sh): the one node is this
// machine, or every node has namespaces of its own.
const (
	LayoutHost  = "host"
	LayoutNetns = "netns"
)

// Node is one node of the e2e cluster as a test on this machine reaches
// it: its address and pod CIDR (from its Node object) and, in the netns
// layout, its namespaces and the directory that holds its fixed paths.
type Node struct {
	Name    string
	IP      netip.Addr
	PodCIDR netip.Prefix
	// Netns and MountNS are the node's namespace files; empty in the host
	// layout, where the node is this machine.
	Netns, MountNS string
	// HostDir is where the node's /run, /var/lib, /etc/cni, ... paths of
	// e2e/cluster's NODE_HOST_PATHS are on this machine ("" in the host
	// layout: the paths themselves).
	HostDir string
}

// Dialer dials from the node's network namespace.
func (n Node) Dialer() netns.Dialer { return netns.Dialer{Path: n.Netns} }

// HTTPClient sends requests from the node's network namespace, as a
// process of the node would.
func (n Node) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: n.Dialer().DialContext, DisableKeepAlives: true}}
}

// Listen listens in the node's network namespace.
func (n Node) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	return netns.Listen(ctx, n.Netns, network, addr)
}

// HostPath is where the node's path p (an absolute path such as
// /var/lib/ovsnet) is on this machine.
func (n Node) HostPath(p string) string {
	if n.HostDir == "" {
		return p
	}
	return filepath.Join(n.HostDir, p)
}

// Command runs name in the node's namespaces (nsenter), or on this machine
// in the host layout.
func (n Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if n.Netns == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Netns, "--mount=" + n.MountNS, "--", name}, args...)...)
}

// Run is Command's combined output; a failure carries it.
func (n Node) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("node %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// HTTPGet fetches url from the node and returns the body (at most 1 MiB).
func (n Node) HTTPGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := n.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		return "", fmt.Errorf("node %s: GET %s: %w", n.Name, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// Nodes lists the cluster's nodes as they are now (a test may add or
// remove one), in the order of their names.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) {
	list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []Node
	for i := range list.Items {
		n, err := c.node(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Node is the named node as it is now.
func (c *Cluster) Node(ctx context.Context, name string) (Node, error) {
	obj, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Node{}, fmt.Errorf("node %s: %w", name, err)
	}
	return c.node(obj)
}

func (c *Cluster) node(obj *corev1.Node) (Node, error) {
	n := Node{Name: obj.Name}
	for _, a := range obj.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				n.IP = ip
				break
			}
		}
	}
	if !n.IP.IsValid() {
		return Node{}, fmt.Errorf("node %s has no IPv4 InternalIP", obj.Name)
	}
	if obj.Spec.PodCIDR != "" {
		p, err := netip.ParsePrefix(obj.Spec.PodCIDR)
		if err != nil {
			return Node{}, fmt.Errorf("node %s: pod CIDR %q: %w", obj.Name, obj.Spec.PodCIDR, err)
		}
		n.PodCIDR = p
	}
	if c.Layout == LayoutNetns {
		n.Netns = "/run/netns/" + obj.Name
		n.MountNS = filepath.Join(c.mountNSDir, obj.Name)
		n.HostDir = filepath.Join(c.nodesDir, obj.Name, "host")
		if _, err := os.Stat(n.MountNS); err != nil {
			return Node{}, fmt.Errorf("node %s is not one of this lab's (%w)", obj.Name, err)
		}
	}
	return n, nil
}

// NodeCtl runs e2e/cluster/node.sh (add [NAME] | remove NAME) of a netns
// cluster and returns its standard output.
func (c *Cluster) NodeCtl(ctx context.Context, args ...string) (string, error) {
	if c.nodeCtl == "" {
		return "", fmt.Errorf("the cluster in %s cannot add or remove nodes (E2E_NODE_CTL not set: not the netns layout)", c.Lab)
	}
	cmd := exec.CommandContext(ctx, c.nodeCtl, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", c.nodeCtl, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

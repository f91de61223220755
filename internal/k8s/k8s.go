// Package k8s is the agent's view of Kubernetes: its own Node (for the pod
// CIDR), the pods scheduled to it (to garbage-collect attachments of pods
// that are gone), and Events on pods whose network could not be set up.
// Informers only: nothing polls the API server, and a lost connection only
// delays news; what already runs keeps running.
package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/ovsnet/ovsnet/internal/nodes"
)

// Config says how to reach the API server and which node this is.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty: in-cluster configuration.
	Kubeconfig string
	// NodeName is this node's name.
	NodeName string
	Logger   *slog.Logger
}

// InCluster reports whether the process runs in a pod with a service
// account (the in-cluster configuration is usable).
func InCluster() bool {
	return os.Getenv("KUBERNETES_SERVICE_HOST") != "" && os.Getenv("KUBERNETES_SERVICE_PORT") != ""
}

// Cluster watches this node and its pods.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
	nodes    cache.SharedIndexInformer
	pods     cache.SharedIndexInformer
	recorder record.EventRecorder
	bcast    record.EventBroadcaster

	mu      sync.Mutex
	changed chan struct{}
	// nodesChanged is closed and replaced on every Node event.
	nodesChanged chan struct{}
	onDelete     []func(namespace, name string, uid types.UID)
}

// New builds the client and informers; Run starts them.
func New(cfg Config) (*Cluster, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name unknown: set --node-name or the NODE_NAME environment variable (the DaemonSet passes spec.nodeName)")
	}
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w (give --kubeconfig, or run in a pod with a service account)", err)
	}
	rc.UserAgent = "ovsnet-agent"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return newCluster(cfg, client), nil
}

func newCluster(cfg Config, client kubernetes.Interface) *Cluster {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, log: log, client: client, changed: make(chan struct{}), nodesChanged: make(chan struct{})}
	// One factory per selector: every Node (this one for the pod CIDR and
	// address, the others are the peers), the pods by node. No periodic
	// resync: GC runs on sync, on pod deletions and on sandbox removal; a
	// resync would only re-deliver what handlers already saw.
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(client, 0)
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
		}))
	c.nodes = nodeFactory.Core().V1().Nodes().Informer()
	c.pods = podFactory.Core().V1().Pods().Informer()
	c.factory = podFactory
	_, _ = c.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.notify(); c.notifyNodes() },
		UpdateFunc: func(any, any) { c.notify(); c.notifyNodes() },
		DeleteFunc: func(any) { c.notify(); c.notifyNodes() },
	})
	_, _ = c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				c.mu.Lock()
				hooks := c.onDelete
				c.mu.Unlock()
				for _, h := range hooks {
					h(p.Namespace, p.Name, p.UID)
				}
			}
			c.notify()
		},
		AddFunc:    func(any) { c.notify() },
		UpdateFunc: func(any, any) { c.notify() },
	})
	c.bcast = record.NewBroadcaster()
	c.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	c.recorder = c.bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ovsnet-agent", Host: cfg.NodeName})
	return c
}

func (c *Cluster) notifyNodes() {
	c.mu.Lock()
	close(c.nodesChanged)
	c.nodesChanged = make(chan struct{})
	c.mu.Unlock()
}

func (c *Cluster) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// OnPodDelete registers f for every pod of this node that disappears.
func (c *Cluster) OnPodDelete(f func(namespace, name string, uid types.UID)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onDelete = append(c.onDelete, f)
}

// Run starts the informers and blocks until ctx ends.
func (c *Cluster) Run(ctx context.Context) {
	go c.nodes.Run(ctx.Done())
	go c.pods.Run(ctx.Done())
	// Peers answers "not listed" until the node informer has synced, and
	// its last Add may come before that: becoming synced is a change too.
	if cache.WaitForCacheSync(ctx.Done(), c.nodes.HasSynced) {
		c.notify()
		c.notifyNodes()
	}
	<-ctx.Done()
	c.bcast.Shutdown()
}

// PodCIDR waits until this node's Node object has an IPv4 pod CIDR
// (spec.podCIDRs, allocated by kube-controller-manager) and returns it.
// report is told why it is still waiting.
func (c *Cluster) PodCIDR(ctx context.Context, report func(why string)) (netip.Prefix, error) {
	// Handlers see the initial list before the informer counts as synced,
	// so wait for the sync itself first; after it every change is an event.
	report("waiting for the API server (Node " + c.cfg.NodeName + " not listed yet)")
	if !cache.WaitForCacheSync(ctx.Done(), c.nodes.HasSynced) {
		return netip.Prefix{}, fmt.Errorf("listing Node %s: %w", c.cfg.NodeName, ctx.Err())
	}
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		why := ""
		if obj, ok, _ := c.nodes.GetStore().GetByKey(c.cfg.NodeName); !ok {
			why = "Node " + c.cfg.NodeName + " does not exist (yet)"
		} else {
			if node, ok := obj.(*corev1.Node); ok {
				if cidrs := podCIDRs(node); len(cidrs) > 0 {
					return cidrs[0], nil
				}
			}
			why = "Node " + c.cfg.NodeName + " has no IPv4 spec.podCIDRs yet (is kube-controller-manager running with --allocate-node-cidrs?)"
		}
		report(why)
		select {
		case <-ch:
		case <-ctx.Done():
			return netip.Prefix{}, fmt.Errorf("%s: %w", why, ctx.Err())
		}
	}
}

// WaitPodsSynced blocks until the pod informer has listed this node's pods.
func (c *Cluster) WaitPodsSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced)
}

// MirrorPodAnnotation is set by the kubelet on the API's mirror of a static
// pod; its value is the static pod's own UID, the one the runtime passes to
// CNI (K8S_POD_UID), while the mirror pod has a UID of its own.
const MirrorPodAnnotation = "kubernetes.io/config.mirror"

// PodExists reports whether a pod with that namespace, name and (if given)
// UID is on this node according to the synced cache. For a static pod the
// UID the runtime knows is the mirror pod's annotation, not its UID.
func (c *Cluster) PodExists(namespace, name, uid string) bool {
	obj, ok, _ := c.pods.GetStore().GetByKey(namespace + "/" + name)
	if !ok {
		return false
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	return uid == "" || string(p.UID) == uid || p.Annotations[MirrorPodAnnotation] == uid
}

// PodEvent records a Warning event on a pod (best effort, asynchronous).
func (c *Cluster) PodEvent(namespace, name, uid, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: namespace, Name: name, UID: types.UID(uid)}
	c.recorder.Event(ref, corev1.EventTypeWarning, reason, message)
}

// NodeIP returns this node's first IPv4 InternalIP, once the Node is known.
func (c *Cluster) NodeIP() (netip.Addr, bool) {
	obj, ok, _ := c.nodes.GetStore().GetByKey(c.cfg.NodeName)
	if !ok {
		return netip.Addr{}, false
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return netip.Addr{}, false
	}
	return internalIP(node)
}

func internalIP(node *corev1.Node) (netip.Addr, bool) {
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func podCIDRs(node *corev1.Node) []netip.Prefix {
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range cidrs {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Peers is a nodes.Source of every other Node with an IPv4 InternalIP and
// pod CIDR (a Node that has neither yet is not a peer yet), from the Node
// informer: complete once the informer has synced, changed on every Node
// event.
func (c *Cluster) Peers() nodes.Source { return peerSource{c} }

type peerSource struct{ c *Cluster }

func (p peerSource) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (p peerSource) Changed() <-chan struct{} {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.c.nodesChanged
}

func (p peerSource) Peers() ([]nodes.Peer, bool) {
	if !p.c.nodes.HasSynced() {
		return nil, false
	}
	var out []nodes.Peer
	for _, obj := range p.c.nodes.GetStore().List() {
		node, ok := obj.(*corev1.Node)
		if !ok || node.Name == p.c.cfg.NodeName {
			continue
		}
		ip, ok := internalIP(node)
		cidrs := podCIDRs(node)
		if !ok || len(cidrs) == 0 {
			continue
		}
		out = append(out, nodes.Peer{Name: node.Name, NodeIP: ip, PodCIDRs: cidrs})
	}
	nodes.Sort(out)
	return out, true
}

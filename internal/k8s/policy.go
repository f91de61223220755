package k8s

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/ovsnet/ovsnet/internal/policy"
)

// PolicySource is the cluster as NetworkPolicy needs it: every
// NetworkPolicy, Namespace and Pod (peers live anywhere), from informers
// started by Run. It implements policy.Source.
type PolicySource struct {
	c          *Cluster
	policies   cache.SharedIndexInformer
	namespaces cache.SharedIndexInformer
	pods       cache.SharedIndexInformer

	mu      sync.Mutex
	changed chan struct{}
}

var _ policy.Source = (*PolicySource)(nil)

// NewPolicySource builds the informers; Run starts them.
func (c *Cluster) NewPolicySource() *PolicySource {
	f := informers.NewSharedInformerFactoryWithOptions(c.client, 0)
	s := &PolicySource{c: c, changed: make(chan struct{}),
		policies:   f.Networking().V1().NetworkPolicies().Informer(),
		namespaces: f.Core().V1().Namespaces().Informer(),
		pods:       f.Core().V1().Pods().Informer(),
	}
	// Only what policy reads is kept of a pod: the cache of every pod in
	// the cluster stays small.
	_ = s.pods.SetTransform(func(obj any) (any, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil
		}
		slim := &corev1.Pod{}
		slim.ObjectMeta = p.ObjectMeta
		slim.ManagedFields = nil
		slim.Annotations = nil
		if m, ok := p.Annotations[MirrorPodAnnotation]; ok {
			slim.Annotations = map[string]string{MirrorPodAnnotation: m}
		}
		slim.Spec.NodeName = p.Spec.NodeName
		slim.Spec.HostNetwork = p.Spec.HostNetwork
		for _, ctr := range p.Spec.Containers {
			c := corev1.Container{Name: ctr.Name, Ports: ctr.Ports}
			slim.Spec.Containers = append(slim.Spec.Containers, c)
		}
		slim.Status.Phase = p.Status.Phase
		slim.Status.PodIP = p.Status.PodIP
		slim.Status.PodIPs = p.Status.PodIPs
		return slim, nil
	})
	for _, inf := range []cache.SharedIndexInformer{s.policies, s.namespaces, s.pods} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.notify() },
			UpdateFunc: func(oldObj, newObj any) { s.update(oldObj, newObj) },
			DeleteFunc: func(any) { s.notify() },
		})
	}
	return s
}

func (s *PolicySource) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// update ignores updates that change nothing policy reads: most updates in
// a cluster are of pods' status, and a relist replays every object.
func (s *PolicySource) update(oldObj, newObj any) {
	switch o := oldObj.(type) {
	case *corev1.Pod:
		if n, ok := newObj.(*corev1.Pod); ok && samePolicyPod(o, n) {
			return
		}
	case *corev1.Namespace:
		if n, ok := newObj.(*corev1.Namespace); ok && maps.Equal(o.Labels, n.Labels) {
			return
		}
	case *networkingv1.NetworkPolicy:
		if n, ok := newObj.(*networkingv1.NetworkPolicy); ok && o.ResourceVersion != "" && o.ResourceVersion == n.ResourceVersion {
			return
		}
	}
	s.notify()
}

// samePolicyPod: what Snapshot and Pod make of the two is the same.
func samePolicyPod(o, n *corev1.Pod) bool {
	terminal := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	return o.UID == n.UID && o.Spec.HostNetwork == n.Spec.HostNetwork && terminal(o) == terminal(n) &&
		o.Annotations[MirrorPodAnnotation] == n.Annotations[MirrorPodAnnotation] &&
		reflect.DeepEqual(policyPod(o), policyPod(n))
}

// Run starts the informers and blocks until ctx ends.
func (s *PolicySource) Run(ctx context.Context) error {
	for _, inf := range []cache.SharedIndexInformer{s.policies, s.namespaces, s.pods} {
		go inf.Run(ctx.Done())
	}
	// The informers' last Add can reach the handlers before every one of
	// them reports synced, and nothing else changes on a quiet cluster: a
	// waiter that saw "not synced" would wait for the next change for ever.
	// Becoming synced is itself a change.
	if cache.WaitForCacheSync(ctx.Done(), s.policies.HasSynced, s.namespaces.HasSynced, s.pods.HasSynced) {
		s.notify()
	}
	<-ctx.Done()
	return nil
}

// Changed implements policy.Source.
func (s *PolicySource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Synced reports whether every informer has listed.
func (s *PolicySource) Synced() bool {
	return s.policies.HasSynced() && s.namespaces.HasSynced() && s.pods.HasSynced()
}

// Snapshot implements policy.Source: the pods carry their API address and
// are not marked local (the controller does that from its attachments).
func (s *PolicySource) Snapshot() (policy.Snapshot, bool) {
	if !s.Synced() {
		return policy.Snapshot{}, false
	}
	snap := policy.Snapshot{Namespaces: map[string]map[string]string{}}
	for _, obj := range s.policies.GetStore().List() {
		if p, ok := obj.(*networkingv1.NetworkPolicy); ok {
			snap.Policies = append(snap.Policies, p)
		}
	}
	for _, obj := range s.namespaces.GetStore().List() {
		if ns, ok := obj.(*corev1.Namespace); ok {
			snap.Namespaces[ns.Name] = ns.Labels
		}
	}
	for _, obj := range s.pods.GetStore().List() {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		snap.Pods = append(snap.Pods, policyPod(p))
	}
	return snap, true
}

// Pod returns one pod as policy sees it, if the cache has it (with the UID
// given, that very pod; a static pod's UID is its mirror's annotation).
func (s *PolicySource) Pod(namespace, name, uid string) (policy.Pod, bool) {
	obj, ok, _ := s.pods.GetStore().GetByKey(namespace + "/" + name)
	if !ok {
		return policy.Pod{}, false
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || (uid != "" && string(p.UID) != uid && p.Annotations[MirrorPodAnnotation] != uid) {
		return policy.Pod{}, false
	}
	return policyPod(p), true
}

// NetworkPolicy returns the object of a policy, for Events.
func (s *PolicySource) NetworkPolicy(namespace, name string) (runtime.Object, bool) {
	obj, ok, _ := s.policies.GetStore().GetByKey(namespace + "/" + name)
	if !ok {
		return nil, false
	}
	ro, ok := obj.(runtime.Object)
	return ro, ok
}

func policyPod(p *corev1.Pod) policy.Pod {
	out := policy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
			out.IP = a
			break
		}
	}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == "" {
				continue
			}
			proto := uint8(6)
			switch port.Protocol {
			case corev1.ProtocolUDP:
				proto = 17
			case corev1.ProtocolSCTP:
				proto = 132
			}
			out.Ports = append(out.Ports, policy.NamedPort{Name: port.Name, Proto: proto, Port: uint16(port.ContainerPort)})
		}
	}
	return out
}

// PolicyEvent records a Warning Event on a NetworkPolicy.
func (c *Cluster) PolicyEvent(obj runtime.Object, reason, message string) {
	c.recorder.Event(obj, corev1.EventTypeWarning, reason, message)
}

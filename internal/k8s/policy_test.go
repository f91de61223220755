package k8s

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/ovsnet/ovsnet/internal/policy"
)

// waitSnapshot waits, on the source's change notifications, until its
// snapshot satisfies cond.
func waitSnapshot(t *testing.T, ctx context.Context, s *PolicySource, cond func(policy.Snapshot) bool) policy.Snapshot {
	t.Helper()
	for {
		ch := s.Changed()
		if snap, ok := s.Snapshot(); ok && cond(snap) {
			return snap
		}
		select {
		case <-ch:
		case <-ctx.Done():
			snap, ok := s.Snapshot()
			t.Fatalf("snapshot (synced %v) never got there: %+v", ok, snap)
		}
	}
}

func TestPolicySource(t *testing.T) {
	c, client, ctx := start(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"team": "red"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "web", UID: "u1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n2", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 9}}}}},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "fd00::5"}, {IP: "10.244.2.5"}}}}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "hostnet", UID: "u2"}, Spec: corev1.PodSpec{HostNetwork: true}}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "deny"}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{pod, host} {
		if _, err := client.CoreV1().Pods("ns1").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.NetworkingV1().NetworkPolicies("ns1").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := c.NewPolicySource()
	go func() { _ = s.Run(ctx) }()
	snap := waitSnapshot(t, ctx, s, func(s policy.Snapshot) bool { return len(s.Policies) == 1 && len(s.Pods) == 1 })
	if snap.Namespaces["ns1"]["team"] != "red" {
		t.Fatalf("namespace labels: %v", snap.Namespaces)
	}
	p := snap.Pods[0]
	want := []policy.NamedPort{{Name: "http", Proto: 6, Port: 8080}, {Name: "dns", Proto: 17, Port: 53}}
	if p.Name != "web" || p.IP != netip.MustParseAddr("10.244.2.5") || p.Local || len(p.Ports) != 2 || p.Ports[0] != want[0] || p.Ports[1] != want[1] {
		t.Fatalf("pod as policy sees it (host-network pods left out, IPv4 address, named ports): %+v", snap.Pods)
	}
	if _, ok := s.Pod("ns1", "web", "other-uid"); ok {
		t.Fatal("Pod with another incarnation's UID found")
	}
	if got, ok := s.Pod("ns1", "web", "u1"); !ok || got.Labels["app"] != "web" {
		t.Fatalf("Pod(ns1/web, u1): %+v %v", got, ok)
	}

	pod.Labels = map[string]string{"app": "db"}
	if _, err := client.CoreV1().Pods("ns1").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ctx, s, func(s policy.Snapshot) bool { return len(s.Pods) == 1 && s.Pods[0].Labels["app"] == "db" })

	// A policy that cannot be realised gets a Warning Event.
	w, err := client.CoreV1().Events("ns1").Watch(ctx, metav1.ListOptions{FieldSelector: fields.Everything().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	obj, ok := s.NetworkPolicy("ns1", "deny")
	if !ok {
		t.Fatal("NetworkPolicy ns1/deny not in the cache")
	}
	c.PolicyEvent(obj, "PolicyNotRealised", "ovsnet: ingress rule 0: unknown protocol")
	for {
		select {
		case ev := <-w.ResultChan():
			e, ok := ev.Object.(*corev1.Event)
			if !ok {
				continue
			}
			if e.Type != corev1.EventTypeWarning || e.Reason != "PolicyNotRealised" || e.InvolvedObject.Kind != "NetworkPolicy" || e.InvolvedObject.Name != "deny" {
				t.Fatalf("event: %+v", e)
			}
			return
		case <-ctx.Done():
			t.Fatal("no Event recorded")
		}
	}
}

func TestPolicySourceIgnoresStatusUpdates(t *testing.T) {
	o := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u", Labels: map[string]string{"a": "b"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2"}}
	n := o.DeepCopy()
	n.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if !samePolicyPod(o, n) {
		t.Fatal("a condition change counted as a change for policy")
	}
	for what, edit := range map[string]func(*corev1.Pod){
		"labels":   func(p *corev1.Pod) { p.Labels = map[string]string{"a": "c"} },
		"address":  func(p *corev1.Pod) { p.Status.PodIP = "10.0.0.3" },
		"finished": func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"uid":      func(p *corev1.Pod) { p.UID = "v" },
	} {
		n := o.DeepCopy()
		edit(n)
		if samePolicyPod(o, n) {
			t.Errorf("a change of %s did not count", what)
		}
	}
}

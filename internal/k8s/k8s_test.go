package k8s

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func start(t *testing.T, objs ...any) (*Cluster, *fake.Clientset, context.Context) {
	t.Helper()
	client := fake.NewClientset()
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Node:
			if _, err := client.CoreV1().Nodes().Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case *corev1.Pod:
			if _, err := client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := newCluster(Config{NodeName: "n1"}, client)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, client, ctx
}

func TestPodCIDRWaitsForTheNode(t *testing.T) {
	c, client, ctx := start(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	var mu sync.Mutex
	var reasons []string
	waiting := make(chan struct{}, 1)
	got := make(chan error, 1)
	go func() {
		p, err := c.PodCIDR(ctx, func(why string) {
			mu.Lock()
			reasons = append(reasons, why)
			mu.Unlock()
			if strings.Contains(why, "no IPv4 spec.podCIDRs") {
				select {
				case waiting <- struct{}{}:
				default:
				}
			}
		})
		if err == nil && p.String() != "10.244.3.0/24" {
			err = context.DeadlineExceeded
		}
		got <- err
	}()
	select {
	case <-waiting:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("never reported waiting for the pod CIDR: %v", reasons)
	}
	node, _ := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	node.Spec.PodCIDRs = []string{"fd00::/64", "10.244.3.0/24"}
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("PodCIDR: %v", err)
	}
}

func TestPodsAndDeletion(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"}, Spec: corev1.PodSpec{NodeName: "n1"}}
	c, client, ctx := start(t, pod)
	deleted := make(chan string, 1)
	c.OnPodDelete(func(ns, name string, uid types.UID) { deleted <- ns + "/" + name + "/" + string(uid) })
	if !c.WaitPodsSynced(ctx) {
		t.Fatal("pods never synced")
	}
	if !c.PodExists("ns", "p", "u1") || !c.PodExists("ns", "p", "") {
		t.Fatal("existing pod not found")
	}
	if c.PodExists("ns", "p", "other-uid") || c.PodExists("ns", "q", "") {
		t.Fatal("a pod that does not exist was found")
	}
	if err := client.CoreV1().Pods("ns").Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-deleted:
		if got != "ns/p/u1" {
			t.Fatalf("deletion hook got %q", got)
		}
	case <-ctx.Done():
		t.Fatal("deletion hook never called")
	}
}

// A static pod runs under the UID the kubelet derived from its manifest;
// the API holds a mirror pod with another UID and the static one in an
// annotation. The runtime's K8S_POD_UID is the static UID, and the pod
// exists.
func TestStaticPodFoundThroughItsMirror(t *testing.T) {
	mirror := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "etcd-n1", UID: "mirror-uid",
		Annotations: map[string]string{MirrorPodAnnotation: "static-uid"}}, Spec: corev1.PodSpec{NodeName: "n1"}}
	c, _, _ := start(t, mirror)
	if !c.WaitPodsSynced(context.Background()) {
		t.Fatal("pods never synced")
	}
	if !c.PodExists("kube-system", "etcd-n1", "static-uid") {
		t.Fatal("static pod judged gone: its UID is only in the mirror's annotation")
	}
	if !c.PodExists("kube-system", "etcd-n1", "mirror-uid") {
		t.Fatal("mirror pod's own UID not found")
	}
	if c.PodExists("kube-system", "etcd-n1", "another-uid") {
		t.Fatal("a pod with another UID was found")
	}
}

func TestNodeNameRequired(t *testing.T) {
	if _, err := New(Config{Kubeconfig: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("New without a node name: %v", err)
	}
	if _, err := New(Config{NodeName: "n", Kubeconfig: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("New with a missing kubeconfig: %v", err)
	}
}

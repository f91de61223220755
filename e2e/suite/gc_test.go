//go:build e2e

package suite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ovsnet/ovsnet/e2e/framework"
	"github.com/ovsnet/ovsnet/internal/agentapi"
)

// netns creates a network namespace with a unique e2ek- name and removes it
// when the test ends; it returns its path.
func netns(t *testing.T) string {
	t.Helper()
	name := "e2ek-" + randomHex(5)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return "/run/netns/" + name
}

// An attachment whose pod does not exist in the API (a sandbox set up
// through the plugin for a made-up pod, its namespace still there) is
// removed by the agent once its pod informer has synced: here, after a
// restart. Its port, address and host interface go with it.
func TestGarbageCollectsAttachmentOfMissingPod(t *testing.T) {
	_, o := env(t)
	ctx := deadline(t, 3*time.Minute)
	cni, err := o.CNI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sb := framework.PodSandbox{
		ContainerID: "e2ek" + randomHex(30), Netns: netns(t),
		Namespace: "ovsnet-e2e-nowhere", Name: "ghost-" + randomHex(4), PodUID: randomHex(16),
	}
	ip, err := cni.Add(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cni.Del(cctx, sb); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	a := attachmentOf(t, ctx, o, sb.ContainerID)
	t.Logf("sandbox %s of missing pod %s/%s attached: %s on port %s", sb.ContainerID[:12], sb.Namespace, sb.Name, ip, a.Port)

	if err := o.KillAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.RestartAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if err := framework.Eventually(ctx, "attachment of the missing pod collected", func(ctx context.Context) error {
		return freed(ctx, o, []agentapi.Pod{a})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.Netns); err != nil {
		t.Fatalf("the sandbox's namespace must still exist (the pod check, not the namespace watch, collects it): %v", err)
	}
	expectGCLog(t, o, sb.ContainerID, "pod no longer exists on this node")
}

// A pod sandbox whose network namespace is removed behind the agent's back
// (no CNI DEL: the runtime crashed, or someone unmounted it) is collected:
// port, address and host interface freed. Deleting the pod afterwards
// still completes: DEL of a sandbox whose namespace is gone succeeds.
func TestGarbageCollectsRemovedSandbox(t *testing.T) {
	c, o := env(t)
	ctx := deadline(t, 3*time.Minute)
	ns := namespace(t, ctx, c, "ovsnet-e2e-sandbox")
	startPods(t, ctx, c, ns, "victim")
	a, ok, err := o.PodAttachment(ctx, ns, "victim")
	if err != nil || !ok {
		t.Fatalf("attachment of pod victim: found %v, %v", ok, err)
	}
	if a.Netns == "" {
		t.Fatalf("attachment without a namespace path: %+v", a)
	}
	// What the runtime does when it removes a sandbox's namespace, minus
	// CNI DEL: unmount the bind mount and unlink the file.
	if err := unix.Unmount(a.Netns, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", a.Netns, err)
	}
	if err := os.Remove(a.Netns); err != nil {
		t.Fatal(err)
	}
	if err := framework.Eventually(ctx, "attachment of the removed sandbox collected", func(ctx context.Context) error {
		return freed(ctx, o, []agentapi.Pod{a})
	}); err != nil {
		t.Fatal(err)
	}
	expectGCLog(t, o, a.ContainerID, "sandbox network namespace removed")

	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "victim", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = c.WatchPods(ctx, ns, "", func(cur map[string]*corev1.Pod) (bool, error) {
		_, ok := cur["victim"]
		return !ok, nil
	})
	if err != nil {
		t.Fatalf("deleting the pod whose namespace is gone: %v; events: %s", err, c.PodEvents(ctx, ns, "victim"))
	}
}

// A failed ADD for a pod is reported on the pod as a Warning Event
// NetworkSetupFailed (through the ServiceAccount's RBAC).
func TestAddFailureRecordsEvent(t *testing.T) {
	c, o := env(t)
	ctx := deadline(t, 2*time.Minute)
	ns := namespace(t, ctx, c, "ovsnet-e2e-event")
	startPods(t, ctx, c, ns, "target")
	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, "target", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cni, err := o.CNI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	events := c.Client.CoreV1().Events(ns)
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.name", "target"),
		fields.OneTermEqualSelector("reason", "NetworkSetupFailed")).String()
	list, err := events.List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	w, err := events.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// A second sandbox for the pod, in a namespace that does not exist.
	sb := framework.PodSandbox{ContainerID: "e2ek" + randomHex(30), Netns: "/run/netns/e2ek-missing-" + randomHex(5),
		Namespace: ns, Name: "target", PodUID: string(pod.UID)}
	_, addErr := cni.Add(ctx, sb)
	if addErr == nil {
		t.Fatal("ADD into a namespace that does not exist succeeded")
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = cni.Del(cctx, sb)
	})
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("event watch closed")
			}
			e, isEvent := ev.Object.(*corev1.Event)
			if ev.Type != watch.Added || !isEvent {
				continue
			}
			if e.Type != corev1.EventTypeWarning || e.InvolvedObject.UID != pod.UID || e.Source.Component != "ovsnet-agent" {
				t.Errorf("event %+v: want a Warning from ovsnet-agent on pod UID %s", e, pod.UID)
			}
			t.Logf("ADD failed (%v); event: %s %s: %s", addErr, e.Type, e.Reason, e.Message)
			return
		case <-ctx.Done():
			t.Fatalf("no NetworkSetupFailed event after the failed ADD (%v): %v", addErr, ctx.Err())
		}
	}
}

// attachmentOf waits until the agent lists the attachment of containerID.
func attachmentOf(t *testing.T, ctx context.Context, o *framework.Ovsnet, containerID string) agentapi.Pod {
	t.Helper()
	var found agentapi.Pod
	err := framework.Eventually(ctx, "attachment "+containerID, func(ctx context.Context) error {
		pods, err := o.Pods(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(pods, func(p agentapi.Pod) bool { return p.ContainerID == containerID })
		if i < 0 {
			return errors.New("not listed")
		}
		found = pods[i]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(found.Port); err != nil {
		t.Fatalf("host interface %s of the attachment: %v", found.Port, err)
	}
	return found
}

// expectGCLog checks that the agent logged collecting containerID for reason.
func expectGCLog(t *testing.T, o *framework.Ovsnet, containerID, reason string) {
	t.Helper()
	b, err := os.ReadFile(o.AgentLog)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "garbage-collecting pod attachment") && strings.Contains(line, containerID) {
			if !strings.Contains(line, fmt.Sprintf("%q", reason)) {
				t.Errorf("collected for another reason than %q: %s", reason, line)
			}
			return
		}
	}
	t.Errorf("agent log %s has no garbage collection of %s", o.AgentLog, containerID)
}

//go:build e2e

package suite

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ovsnet/ovsnet/e2e/framework"
)

// Rolling restarts replace every pod of a Deployment while new pods start:
// pod deletions (each one a garbage collection pass in the agent) race with
// ADDs of new pods. With a grace period of 0 the API drops a deleted pod
// before its sandbox is stopped, so the agent's collection, not CNI DEL,
// tears the old pods down. Afterwards every running pod has its attachment
// and the agent holds none of a pod that is gone.
func TestRolloutChurnKeepsAttachments(t *testing.T) {
	c, o := env(t)
	ctx := deadline(t, 6*time.Minute)
	ns := namespace(t, ctx, c, "ovsnet-e2e-churn")
	const n, restarts = 20, 2
	labels := map[string]string{"app": "churn"}
	spec := c.BusyboxPodSpec(framework.SleepCommand...)
	spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "churn", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intOrPercent("50%")), MaxUnavailable: ptr.To(intOrPercent("50%")),
			}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods map[string]*corev1.Pod
	waitRolledOut := func(old map[string]bool) {
		t.Helper()
		err := c.WatchPods(ctx, ns, "app=churn", func(cur map[string]*corev1.Pod) (bool, error) {
			pods = cur
			for name := range cur {
				if old[name] {
					return false, nil
				}
			}
			return framework.AllReady(n)(cur)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitRolledOut(nil)
	for i := range restarts {
		old := map[string]bool{}
		for name := range pods {
			old[name] = true
		}
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"ovsnet.io/e2e-restart":"%d"}}}}}`, i)
		if _, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, "churn", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRolledOut(old)
	}

	// Every pod has its attachment, live with flows, at its address.
	agentPods, err := o.Pods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	attached := map[string]string{}
	for _, a := range agentPods {
		if a.Namespace == ns && a.FlowsIn && a.State == "LIVE" {
			attached[a.Name] = addrOf(a.IP).String()
		}
	}
	for name, p := range pods {
		if attached[name] != p.Status.PodIP {
			t.Errorf("pod %s (%s) has no live attachment in the agent (agent: %q)", name, p.Status.PodIP, attached[name])
		}
	}
	// Nothing is left of the replaced pods.
	err = framework.Eventually(ctx, "attachments of replaced pods collected", func(ctx context.Context) error {
		agentPods, err := o.Pods(ctx)
		if err != nil {
			return err
		}
		var stale []string
		for _, a := range agentPods {
			if _, ok := pods[a.Name]; a.Namespace == ns && !ok {
				stale = append(stale, a.Name)
			}
		}
		if len(stale) > 0 {
			return fmt.Errorf("attachments of gone pods: %v", stale)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// And the last generation talks.
	names := slices.Sorted(maps.Keys(pods))
	if out, err := c.Exec(ctx, ns, names[0], "ping", "-c", "2", "-W", "3", pods[names[len(names)-1]].Status.PodIP); err != nil {
		t.Errorf("ping %s -> %s: %v\n%s", names[0], names[len(names)-1], err, out)
	}
	t.Logf("%d rolling restarts of %d pods: every pod attached, nothing stale", restarts, n)
}

func intOrPercent(s string) intstr.IntOrString { return intstr.FromString(s) }

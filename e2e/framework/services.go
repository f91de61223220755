package framework

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// NettoolPod is a pod on the cluster's node running the nettool image
// (e2e/cluster/e2e-nettool) with args, e.g. "serve". Its service account
// token is mounted only when serviceAccount is not empty.
func (c *Cluster) NettoolPod(namespace, name, serviceAccount string, labels map[string]string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      c.NodeName,
			ServiceAccountName:            serviceAccount,
			AutomountServiceAccountToken:  ptr.To(serviceAccount != ""),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           c.NettoolImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
			}},
		},
	}
}

// WaitEndpoints watches the EndpointSlices of a Service until they hold
// exactly n ready endpoints, and returns their addresses.
func (c *Cluster) WaitEndpoints(ctx context.Context, namespace, service string, n int) ([]string, error) {
	slices := c.Client.DiscoveryV1().EndpointSlices(namespace)
	sel := discoveryv1.LabelServiceName + "=" + service
	ready := func(items map[string]*discoveryv1.EndpointSlice) []string {
		var out []string
		for _, s := range items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					out = append(out, e.Addresses...)
				}
			}
		}
		return out
	}
	for {
		list, err := slices.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("list EndpointSlices of service %s/%s: %w", namespace, service, err)
		}
		cur := map[string]*discoveryv1.EndpointSlice{}
		for i := range list.Items {
			cur[list.Items[i].Name] = &list.Items[i]
		}
		if r := ready(cur); len(r) == n {
			return r, nil
		}
		w, err := slices.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return nil, fmt.Errorf("watch EndpointSlices of service %s/%s: %w", namespace, service, err)
		}
		for again := true; again; {
			select {
			case <-ctx.Done():
				w.Stop()
				return nil, fmt.Errorf("service %s/%s: want %d ready endpoints, have %v: %w", namespace, service, n, ready(cur), ctx.Err())
			case ev, ok := <-w.ResultChan():
				if !ok || ev.Type == watch.Error {
					again = false // list again
					break
				}
				s, isSlice := ev.Object.(*discoveryv1.EndpointSlice)
				if !isSlice {
					continue
				}
				if ev.Type == watch.Deleted {
					delete(cur, s.Name)
				} else {
					cur[s.Name] = s
				}
				if r := ready(cur); len(r) == n {
					w.Stop()
					return r, nil
				}
			}
		}
		w.Stop()
	}
}

// WaitPodDone watches a pod until it has succeeded or failed and returns it.
func (c *Cluster) WaitPodDone(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var done *corev1.Pod
	err := c.WatchPods(ctx, namespace, "", func(pods map[string]*corev1.Pod) (bool, error) {
		p, ok := pods[name]
		if ok && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
			done = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s to finish: %w", namespace, name, err)
	}
	return done, nil
}

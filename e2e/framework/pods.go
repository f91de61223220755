package framework

import (
	"context"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// PodReady reports whether the pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// BusyboxPod is a pod on the cluster's node running the busybox image with
// command. It stops within a second of deletion (the shell traps TERM where
// the command is a shell loop; the grace period is 1 s otherwise).
func (c *Cluster) BusyboxPod(namespace, name string, labels map[string]string, command ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec:       c.BusyboxPodSpec(command...),
	}
}

// BusyboxPodSpec is BusyboxPod's spec, for Deployments.
func (c *Cluster) BusyboxPodSpec(command ...string) corev1.PodSpec {
	return corev1.PodSpec{
		NodeName:                      c.NodeName,
		AutomountServiceAccountToken:  ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To[int64](1),
		Containers: []corev1.Container{{
			Name:            "main",
			Image:           c.BusyboxImage,
			ImagePullPolicy: corev1.PullNever,
			Command:         command,
		}},
	}
}

// SleepCommand keeps a pod running until it is deleted.
var SleepCommand = []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"}

// CreateNamespace creates a namespace named prefix-XXXXX and waits until its
// default ServiceAccount exists (pods are rejected before).
func (c *Cluster) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: map[string]string{"ovsnet.io/e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace %s-*: %w", prefix, err)
	}
	sas := c.Client.CoreV1().ServiceAccounts(ns.Name)
	sel := fields.OneTermEqualSelector("metadata.name", "default").String()
	list, err := sas.List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return "", fmt.Errorf("list service accounts of %s: %w", ns.Name, err)
	}
	if len(list.Items) > 0 {
		return ns.Name, nil
	}
	w, err := sas.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return "", fmt.Errorf("watch service accounts of %s: %w", ns.Name, err)
	}
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return "", fmt.Errorf("watch on the service accounts of %s closed", ns.Name)
			}
			if ev.Type == watch.Added {
				return ns.Name, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for the default service account of %s: %w", ns.Name, ctx.Err())
		}
	}
}

// DeleteNamespace deletes a namespace and waits until its pods are gone, so
// that their networks have been torn down through CNI DEL when it returns.
func (c *Cluster) DeleteNamespace(ctx context.Context, name string) error {
	err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return c.WatchPods(ctx, name, "", func(pods map[string]*corev1.Pod) (bool, error) { return len(pods) == 0, nil })
}

// WatchPods lists the pods of namespace matching selector, then watches
// them, calling cond with the current set (by name) after the list and
// after every event, until it returns true or an error, or ctx ends. An
// expired watch is resumed from a fresh list.
func (c *Cluster) WatchPods(ctx context.Context, namespace, selector string, cond func(map[string]*corev1.Pod) (bool, error)) error {
	pods := c.Client.CoreV1().Pods(namespace)
	for {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return fmt.Errorf("list pods in %s: %w", namespace, err)
		}
		cur := map[string]*corev1.Pod{}
		for i := range list.Items {
			cur[list.Items[i].Name] = &list.Items[i]
		}
		if done, err := cond(cur); done || err != nil {
			return err
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
		if err != nil {
			return fmt.Errorf("watch pods in %s: %w", namespace, err)
		}
		done, err := consume(ctx, w, cur, cond)
		w.Stop()
		if done || err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pods in %s: %w; last seen: %s", namespace, ctx.Err(), Describe(cur))
		}
	}
}

// consume applies watch events to cur until cond holds, the watch ends
// (false, nil: list again) or ctx ends.
func consume(ctx context.Context, w watch.Interface, cur map[string]*corev1.Pod, cond func(map[string]*corev1.Pod) (bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if p, ok := ev.Object.(*corev1.Pod); ok {
					cur[p.Name] = p
				}
			case watch.Deleted:
				if p, ok := ev.Object.(*corev1.Pod); ok {
					delete(cur, p.Name)
				}
			case watch.Error:
				// Usually "resource version too old": list again.
				return false, nil
			default:
				continue
			}
			if done, err := cond(cur); done || err != nil {
				return done, err
			}
		}
	}
}

// AllReady is a WatchPods condition: exactly n pods, all Ready, none being
// deleted. A pod that failed (and is not being deleted, which may fail its
// containers) is an error at once rather than a wait into the deadline.
func AllReady(n int) func(map[string]*corev1.Pod) (bool, error) {
	return func(pods map[string]*corev1.Pod) (bool, error) {
		ready := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodFailed && p.DeletionTimestamp == nil {
				return false, fmt.Errorf("pod %s failed: %s", p.Name, Describe(map[string]*corev1.Pod{p.Name: p}))
			}
			if p.DeletionTimestamp == nil {
				if err := stuck(p); err != nil {
					return false, err
				}
			}
			if PodReady(p) && p.DeletionTimestamp == nil {
				ready++
			}
		}
		return ready == n && len(pods) == n, nil
	}
}

// stuck is an error for a pod whose container cannot start without a
// change to the pod or the node (a crashing command, a missing image):
// waiting for it would only run into the deadline.
func stuck(p *corev1.Pod) error {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "CrashLoopBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError":
				return fmt.Errorf("pod %s cannot start: container %s %s: %s (last exit: %s)",
					p.Name, cs.Name, w.Reason, w.Message, lastExit(cs))
			}
		}
	}
	return nil
}

func lastExit(cs corev1.ContainerStatus) string {
	if t := cs.LastTerminationState.Terminated; t != nil {
		return fmt.Sprintf("code %d %s %s", t.ExitCode, t.Reason, t.Message)
	}
	return "none"
}

// Describe summarises pods for error messages: phase, readiness and the
// reasons of waiting containers.
func Describe(pods map[string]*corev1.Pod) string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(pods)) {
		p := pods[name]
		s := fmt.Sprintf("%s: %s ready=%v ip=%s", name, p.Status.Phase, PodReady(p), p.Status.PodIP)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				s += fmt.Sprintf(" waiting=%s(%s)", w.Reason, w.Message)
			}
		}
		out = append(out, s)
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... and %d more", len(out)-20))
	}
	return fmt.Sprint(out)
}

// PodEvents returns the events recorded on a pod, for failure messages.
func (c *Cluster) PodEvents(ctx context.Context, namespace, name string) string {
	evs, err := c.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		return "events: " + err.Error()
	}
	var out []string
	for _, e := range evs.Items {
		out = append(out, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
	}
	return fmt.Sprint(out)
}

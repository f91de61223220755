//go:build e2e

package suite

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovsnet/ovsnet/e2e/framework"
)

// pingSeq matches a busybox ping reply line.
var pingSeq = regexp.MustCompile(`^\d+ bytes from [0-9.]+: seq=(\d+) `)

// Killing the agent with SIGKILL and starting it again with the same flags
// loses no packet of a ping running between two pods (10 per second, from
// before the kill until well after the new agent is ready); the restarted
// agent restores the pods from OVSDB and new pods still start.
func TestAgentRestartKeepsTraffic(t *testing.T) {
	c, o := env(t)
	ctx := deadline(t, 5*time.Minute)
	ns := namespace(t, ctx, c, "ovsnet-e2e-restart")
	ips := startPods(t, ctx, c, ns, "a", "b")
	before, err := o.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}

	pctx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	ping := c.ExecCommand(pctx, ns, "a", "ping", "-i", "0.1", "-w", "240", ips["b"])
	stdout, err := ping.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	replies := make(chan int, 4096)
	go func() {
		defer close(replies)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := pingSeq.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.Atoi(m[1])
				replies <- n
			}
		}
	}()
	received := map[int]bool{}
	// awaitSeq collects replies until one with a sequence number >= n.
	awaitSeq := func(n int, what string) int {
		t.Helper()
		for {
			select {
			case s, ok := <-replies:
				if !ok {
					t.Fatalf("ping ended before %s (replies so far %d): %v", what, len(received), ping.Wait())
				}
				received[s] = true
				if s >= n {
					return s
				}
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v (%d replies)", what, ctx.Err(), len(received))
			}
		}
	}
	first := awaitSeq(0, "the first reply")
	awaitSeq(first+10, "ten replies")

	if err := o.KillAgent(ctx); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if err := o.RestartAgent(ctx); err != nil {
		t.Fatal(err)
	}
	if err := o.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	readyAfter := time.Since(killedAt)
	// Three more seconds of ping with the new agent in charge.
	last := awaitSeq(maxSeq(received)+30, "30 replies after the restart")
	stopPing()
	_ = ping.Wait()

	var lost []int
	for s := first; s <= last; s++ {
		if !received[s] {
			lost = append(lost, s)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d pings lost across the agent restart: seq %v", len(lost), last-first+1, lost)
	}
	t.Logf("agent killed and ready again in %v; %d pings (seq %d-%d), none lost", readyAfter.Round(time.Millisecond), last-first+1, first, last)

	after, err := o.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.FlowRound == before.FlowRound {
		t.Errorf("flow round still %d after the restart: flows were not reinstalled", after.FlowRound)
	}
	for _, name := range []string{"a", "b"} {
		a, ok, err := o.PodAttachment(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || !a.Restored || !a.FlowsIn {
			t.Errorf("pod %s after the restart: attachment %+v (found %v), want restored with flows", name, a, ok)
		}
	}

	// New pods start, and reach the old ones.
	newIPs := startPods(t, ctx, c, ns, "c")
	if out, err := c.Exec(ctx, ns, "c", "ping", "-c", "3", "-W", "3", ips["a"]); err != nil {
		t.Errorf("new pod c (%s) -> a (%s): %v\n%s", newIPs["c"], ips["a"], err, out)
	}
}

func maxSeq(m map[int]bool) int {
	n := -1
	for s := range m {
		n = max(n, s)
	}
	return n
}

// startPods creates sleeping busybox pods and waits until they are Ready;
// it returns their IPs by name.
func startPods(t *testing.T, ctx context.Context, c *framework.Cluster, ns string, names ...string) map[string]string {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
		p := c.BusyboxPod(ns, n, map[string]string{"ovsnet.io/e2e-pod": n}, framework.SleepCommand...)
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ips := map[string]string{}
	err := c.WatchPods(ctx, ns, "", func(cur map[string]*corev1.Pod) (bool, error) {
		for n := range want {
			p, ok := cur[n]
			if !ok || !framework.PodReady(p) {
				return false, nil
			}
			ips[n] = p.Status.PodIP
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(fmt.Errorf("pods %v Ready: %w", names, err))
	}
	return ips
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ovsnet/ovsnet/e2e/framework"
)

// Bench creates pods on the cluster and times them.
type Bench struct {
	Cluster *framework.Cluster
	// Agent, if set, is asked for the ADD timeline of the measured pods.
	Agent   *framework.Ovsnet
	Pods    int
	Timeout time.Duration
	Log     *slog.Logger
}

// Result is one CNI's measurement.
type Result struct {
	Label   string    `json:"label"`
	Machine string    `json:"machine"`
	When    time.Time `json:"when"`
	Pods    int       `json:"pods"`
	Rounds  int       `json:"rounds"`
	// LatencyMS is creation -> Ready of every measured pod, in milliseconds.
	LatencyMS []float64 `json:"latencyMs"`
	// RoundMS is, per round, first creation -> last pod Ready.
	RoundMS []float64 `json:"roundMs"`
	// RoundP50MS is, per round, the p50 of LatencyMS: the spread between
	// rounds shows how much of a difference is noise.
	RoundP50MS []float64 `json:"roundP50Ms"`
	// Stages split each pod's latency with containerd's log (same clock):
	// created -> RunPodSandbox begins (API, scheduler, kubelet), the sandbox
	// (network namespace, CNI ADD, pause container), sandbox -> container
	// started, started -> Ready seen (kubelet status, API, watch).
	Stages map[string][]float64 `json:"stagesMs,omitempty"`
	// APILatencyS is Ready's lastTransitionTime - creationTimestamp (whole
	// seconds: the API's resolution), for comparison with the local figure.
	APILatencyS []float64 `json:"apiLatencyS"`
	// AddPhasesMS is, per ADD phase of the agent, every measured pod's
	// duration; AddTotalMS the agent's whole ADD (declared -> ready).
	AddPhasesMS map[string][]float64 `json:"addPhasesMs,omitempty"`
	AddTotalMS  []float64            `json:"addTotalMs,omitempty"`
}

// Stage names, in order.
var stageNames = []string{"kubelet", "sandbox", "container", "status"}

// Run runs warmup rounds, then rounds measured rounds, adding to res (nil:
// a new result).
func (b *Bench) Run(ctx context.Context, res *Result, label string, warmup, rounds int) (*Result, error) {
	if res == nil {
		res = &Result{Label: label, Machine: machine(), When: time.Now().UTC(), Pods: b.Pods}
	}
	if res.Label != label || res.Pods != b.Pods {
		return nil, fmt.Errorf("cannot add %d-pod rounds of %s to a result of %d-pod rounds of %s", b.Pods, label, res.Pods, res.Label)
	}
	res.Rounds += rounds
	for i := range warmup + rounds {
		measured := i >= warmup
		if err := b.round(ctx, res, measured); err != nil {
			return nil, fmt.Errorf("round %d: %w", i+1, err)
		}
	}
	return res, nil
}

// round creates b.Pods pods at once in a fresh namespace, waits until all
// are Ready, records their latencies if measured, and deletes them.
func (b *Bench) round(ctx context.Context, res *Result, measured bool) (err error) {
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	c := b.Cluster
	ns, err := c.CreateNamespace(ctx, "ovsnet-e2e-bench")
	if err != nil {
		return err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if derr := c.DeleteNamespace(dctx, ns); derr != nil && err == nil {
			err = derr
		}
	}()
	podsAPI := c.Client.CoreV1().Pods(ns)
	list, err := podsAPI.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	// Started before the first creation, so no Ready can be missed.
	w, err := podsAPI.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	defer w.Stop()

	created := make([]time.Time, b.Pods)
	var wg sync.WaitGroup
	// Also on an early return: no creation outlives the round.
	defer wg.Wait()
	errs := make(chan error, b.Pods)
	start := time.Now()
	for i := range b.Pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.BusyboxPod(ns, fmt.Sprintf("bench-%02d", i), map[string]string{"app": "bench"}, framework.SleepCommand...)
			created[i] = time.Now()
			if _, err := podsAPI.Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- fmt.Errorf("create %s: %w", p.Name, err)
			}
		}()
	}
	readyAt := map[string]time.Time{}
	final := map[string]*corev1.Pod{}
	for len(readyAt) < b.Pods {
		select {
		case err := <-errs:
			return err
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("pod watch closed with %d of %d Ready", len(readyAt), b.Pods)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if ev.Type == watch.Error || !isPod {
				return fmt.Errorf("pod watch: %v", ev.Object)
			}
			if _, seen := readyAt[p.Name]; !seen && framework.PodReady(p) {
				readyAt[p.Name] = time.Now()
				final[p.Name] = p
			}
		case <-ctx.Done():
			return fmt.Errorf("%d of %d pods Ready: %w", len(readyAt), b.Pods, ctx.Err())
		}
	}
	wg.Wait()
	if !measured {
		b.Log.Info("warm-up round done", "pods", b.Pods, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	var last time.Time
	var round []float64
	uids := map[string]bool{}
	for _, p := range final {
		uids[string(p.UID)] = true
	}
	stages := b.containerdTimes(uids)
	for i := range b.Pods {
		name := fmt.Sprintf("bench-%02d", i)
		r := readyAt[name]
		round = append(round, ms(r.Sub(created[i])))
		last = maxTime(last, r)
		if st := stages[string(final[name].UID)]; st != nil && !st.Started.IsZero() && !st.RunStart.IsZero() {
			if res.Stages == nil {
				res.Stages = map[string][]float64{}
			}
			for j, d := range []time.Duration{st.RunStart.Sub(created[i]), st.RunDone.Sub(st.RunStart), st.Started.Sub(st.RunDone), r.Sub(st.Started)} {
				res.Stages[stageNames[j]] = append(res.Stages[stageNames[j]], ms(d))
			}
		}
		if p := final[name]; p != nil {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady {
					res.APILatencyS = append(res.APILatencyS, cond.LastTransitionTime.Sub(p.CreationTimestamp.Time).Seconds())
				}
			}
		}
	}
	res.LatencyMS = append(res.LatencyMS, round...)
	res.RoundP50MS = append(res.RoundP50MS, Percentile(round, 50))
	res.RoundMS = append(res.RoundMS, ms(last.Sub(start)))
	b.Log.Info("round done", "pods", b.Pods, "first_create_to_last_ready", last.Sub(start).Round(time.Millisecond))
	if b.Agent != nil {
		if err := b.addTimeline(ctx, res, ns); err != nil {
			return err
		}
	}
	return nil
}

// containerdTimes reads the e2e cluster's containerd log for the pods with
// the given UIDs; nil when it cannot (the figures are then only end to end).
func (b *Bench) containerdTimes(uids map[string]bool) map[string]*sandboxTimes {
	path := filepath.Join(b.Cluster.Lab, "logs", "containerd.log")
	f, err := os.Open(path)
	if err != nil {
		b.Log.Warn("no containerd log: latency not split into stages", "err", err)
		return nil
	}
	defer f.Close()
	st, err := parseContainerdLog(f, uids)
	if err != nil {
		b.Log.Warn("reading the containerd log", "path", path, "err", err)
	}
	return st
}

func (b *Bench) addTimeline(ctx context.Context, res *Result, ns string) error {
	pods, err := b.Agent.Pods(ctx)
	if err != nil {
		return err
	}
	if res.AddPhasesMS == nil {
		res.AddPhasesMS = map[string][]float64{}
	}
	n := 0
	for _, p := range pods {
		if p.Namespace != ns {
			continue
		}
		n++
		for _, ph := range p.Timeline {
			res.AddPhasesMS[ph.Name] = append(res.AddPhasesMS[ph.Name], ph.Milliseconds)
		}
		if p.ReadyAt != nil {
			res.AddTotalMS = append(res.AddTotalMS, ms(p.ReadyAt.Sub(p.Created)))
		}
	}
	if n != b.Pods {
		return fmt.Errorf("the agent lists %d attachments in %s, want %d", n, ns, b.Pods)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Percentile is the nearest-rank percentile p (0-100) of xs; NaN for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(k, 1), len(s))-1]
}

// machine describes where the figures come from.
func machine() string {
	var u unix.Utsname
	kernel := "?"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var load string
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, load %s", runtime.NumCPU(), model, kernel, load)
}

// Print writes a human summary.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d pods at once x %d rounds on %s\n", r.Label, r.Pods, r.Rounds, r.Machine)
	fmt.Fprintf(w, "  creation -> Ready (local watch): p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
		Percentile(r.LatencyMS, 50), Percentile(r.LatencyMS, 99), Percentile(r.LatencyMS, 100))
	fmt.Fprintf(w, "  per round: p50 %s; first create -> last Ready %s\n", fmtList(r.RoundP50MS, "ms"), fmtList(r.RoundMS, "ms"))
	if len(r.Stages) > 0 {
		fmt.Fprintf(w, "  stages p50 (containerd log):")
		for _, name := range stageNames {
			fmt.Fprintf(w, " %s %.0f", name, Percentile(r.Stages[name], 50))
		}
		fmt.Fprintln(w, " ms")
	}
	fmt.Fprintf(w, "  API timestamps (1 s resolution): p50 %.0f s, p99 %.0f s\n", Percentile(r.APILatencyS, 50), Percentile(r.APILatencyS, 99))
	if len(r.AddTotalMS) > 0 {
		fmt.Fprintf(w, "  agent ADD (declared -> ready): p50 %.1f ms, p99 %.1f ms; phases p50:", Percentile(r.AddTotalMS, 50), Percentile(r.AddTotalMS, 99))
		for _, name := range slices.Sorted(maps.Keys(r.AddPhasesMS)) {
			fmt.Fprintf(w, " %s %.1f", name, Percentile(r.AddPhasesMS[name], 50))
		}
		fmt.Fprintln(w, " ms")
	}
}

func fmtList(xs []float64, unit string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ") + " " + unit
}

// Compare prints the CNI under test beside the floor and reports whether it
// adds at most targetMS at p50.
func Compare(w io.Writer, test, floor Result, targetMS float64) bool {
	fmt.Fprintf(w, "pod creation -> Ready, %d pods created at once, %d+%d measured pods\n", test.Pods, len(test.LatencyMS), len(floor.LatencyMS))
	fmt.Fprintf(w, "machine: %s\n", test.Machine)
	fmt.Fprintf(w, "%-8s %8s %8s %8s  %-32s %s\n", "CNI", "p50", "p99", "max", "p50 per round", "stages p50: "+strings.Join(stageNames, " / "))
	for _, r := range []Result{test, floor} {
		var st []string
		for _, name := range stageNames {
			st = append(st, fmt.Sprintf("%.0f", Percentile(r.Stages[name], 50)))
		}
		fmt.Fprintf(w, "%-8s %5.0f ms %5.0f ms %5.0f ms  %-32s %s ms\n", r.Label,
			Percentile(r.LatencyMS, 50), Percentile(r.LatencyMS, 99), Percentile(r.LatencyMS, 100),
			fmtList(r.RoundP50MS, ""), strings.Join(st, " / "))
	}
	d50 := Percentile(test.LatencyMS, 50) - Percentile(floor.LatencyMS, 50)
	d99 := Percentile(test.LatencyMS, 99) - Percentile(floor.LatencyMS, 99)
	ok := d50 <= targetMS
	verdict := "met"
	if !ok {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "%s - %s: %+.0f ms at p50 (target <= %+.0f ms: %s), %+.0f ms at p99\n", test.Label, floor.Label, d50, targetMS, verdict, d99)
	return ok
}

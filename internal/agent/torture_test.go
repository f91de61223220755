package agent_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/agentapi"
	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

var tortureFor = flag.Duration("torture", 20*time.Second, "how long TestTortureAgainstOVS runs its random operations (CI runs the default)")

// TestTortureAgainstOVS runs random ADD, DEL, GC and CHECK calls through
// the real plugin on a small set of containers, from several workers at
// once, while ovs-vswitchd is killed and restarted in the foreground
// against its kept conf.db, stopped (SIGSTOP) for up to seven seconds (past
// the OpenFlow dead-peer timeout), and told to drop its OpenFlow
// connections. Then it lets the agent recover and checks:
//   - every flow on the bridge is of the current cookie round and belongs
//     to the pipeline, the gateway, or a pod attachment the agent has;
//   - no address is held by two attachments, and IPAM's file agrees with
//     the attachments;
//   - after deleting every container: no pod port, no pod veth, no
//     address and no pod flow is left.
//
// -torture=5m runs it for minutes. The seed is logged.
func TestTortureAgainstOVS(t *testing.T) {
	e := newPodEnv(t, nil)
	seed := time.Now().UnixNano()
	t.Logf("seed %d, %s of random operations", seed, *tortureFor)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	const nPods = 10
	pods := make([]*testPod, nPods)
	for i := range pods {
		pods[i] = e.newPod()
	}
	var rngMu sync.Mutex
	rnd := func(n int) int {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.IntN(n)
	}

	ctx, stop := context.WithTimeout(e.ctx, *tortureFor)
	defer stop()
	var wg sync.WaitGroup
	var countMu sync.Mutex
	outcomes := map[string]int{}
	count := func(verb string, err error) {
		countMu.Lock()
		defer countMu.Unlock()
		if err == nil {
			outcomes[verb+" ok"]++
		} else {
			outcomes[verb+" failed"]++
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				p := pods[rnd(nPods)]
				opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				switch op := rnd(10); {
				case op < 4:
					_, err := e.rt.Add(opCtx, p.Pod)
					count("ADD", err)
				case op < 7:
					count("DEL", e.rt.Del(opCtx, p.Pod))
				case op < 9:
					count("CHECK", e.rt.Check(opCtx, p.Pod))
				default:
					var keep []cnitest.Pod
					for _, q := range pods {
						if rnd(3) > 0 {
							keep = append(keep, q.Pod)
						}
					}
					count("GC", e.rt.GC(opCtx, keep...))
				}
				cancel()
			}
			_ = w
		}()
	}
	// Chaos: OVS misbehaves every half second to two seconds.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pause := time.Duration(500+rnd(1500)) * time.Millisecond
			select {
			case <-time.After(pause): // pacing of the fault injector, not a wait for a condition
			case <-ctx.Done():
				return
			}
			switch rnd(3) {
			case 0:
				countOp(&countMu, outcomes, "fault: vswitchd killed and restarted")
				if err := e.o.Sandbox.KillVswitchd(ctx); err != nil {
					t.Error(err)
					return
				}
				if err := e.o.Sandbox.StartVswitchd(e.ctx, ovssandbox.Foreground); err != nil {
					t.Error(err)
					return
				}
			case 1:
				d := time.Duration(500+rnd(6500)) * time.Millisecond
				countOp(&countMu, outcomes, "fault: vswitchd stopped")
				if err := e.o.PauseVswitchd(); err != nil {
					t.Error(err)
					return
				}
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				if err := e.o.ResumeVswitchd(); err != nil {
					t.Error(err)
					return
				}
			case 2:
				countOp(&countMu, outcomes, "fault: OpenFlow connections dropped")
				if _, err := e.o.Sandbox.Appctl(ctx, "bridge/reconnect", "br-int"); err != nil && ctx.Err() == nil {
					t.Logf("bridge/reconnect: %v", err)
				}
			}
		}
	}()
	wg.Wait()
	t.Logf("outcomes: %v", outcomes)

	// Recovery: OVS left running, the agent ready again.
	if err := e.a.Status().WaitReady(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	e.checkTortureInvariants(t)

	for _, p := range pods {
		if err := e.rt.Del(e.ctx, p.Pod); err != nil {
			t.Fatalf("final DEL %s: %v", p.Name, err)
		}
	}
	e.settle(t)
	e.checkNothingLeft(t)
}

func countOp(mu *sync.Mutex, m map[string]int, k string) {
	mu.Lock()
	m[k]++
	mu.Unlock()
}

// settle waits until every attachment has converged (declared ones with
// their flows in, tombstones with theirs out).
func (e *podEnv) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	svc := e.a.Pods()
	err := svc.WaitAttachments(ctx, func(list []attachments.Attachment) bool {
		for _, a := range list {
			switch a.State.String() {
			case "plumbed", "ready":
				if !a.FlowsIn() {
					return false
				}
			case "deleting":
				if !a.FlowsOut() {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		var stuck []string
		for _, a := range svc.Attachments() {
			stuck = append(stuck, fmt.Sprintf("%s %s gen %d flows %+v", a.Key, a.State, a.Gen, a.Flows))
		}
		t.Fatalf("attachments did not settle: %v\n%s", err, strings.Join(stuck, "\n"))
	}
}

func (e *podEnv) apiFlows(t *testing.T) []agentapi.Flow {
	t.Helper()
	addr, err := e.a.HealthAddr(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + agentapi.PathFlows)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", agentapi.PathFlows, resp.Status)
	}
	var fs []agentapi.Flow
	if err := json.NewDecoder(resp.Body).Decode(&fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

func (e *podEnv) checkTortureInvariants(t *testing.T) {
	t.Helper()
	var problems []string
	live := map[string]bool{}
	seen := map[netip.Addr]string{}
	for _, a := range e.a.Pods().Attachments() {
		live["pod/"+a.ContainerID+"/"+a.IfName] = true
		if other, dup := seen[a.IP.Addr()]; dup {
			problems = append(problems, fmt.Sprintf("address %s held by %s and %s", a.IP.Addr(), other, a.Key))
		}
		seen[a.IP.Addr()] = a.Key.String()
	}
	for _, f := range e.apiFlows(t) {
		switch {
		case f.Owner == "":
			problems = append(problems, "flow of no owner of the current round: "+f.Text)
		case strings.HasPrefix(f.Owner, "pod/") && !live[f.Owner]:
			problems = append(problems, fmt.Sprintf("flow of %s, which has no attachment: %s", f.Owner, f.Text))
		}
	}
	onDisk := e.ipamOnDisk(t)
	for ip, owner := range onDisk {
		if k, ok := seen[ip]; !ok || k != owner {
			problems = append(problems, fmt.Sprintf("IPAM file holds %s for %s; attachments say %q", ip, owner, k))
		}
	}
	for _, a := range e.a.Pods().Attachments() {
		if owner, ok := onDisk[a.IP.Addr()]; !ok || owner != a.Key.String() {
			problems = append(problems, fmt.Sprintf("attachment %s (%s) has %s, which the IPAM file gives to %q", a.Key, a.State, a.IP, owner))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("invariants violated:\n  %s", strings.Join(problems, "\n  "))
	}
}

// ipamOnDisk reads the IPAM state file: address -> "container/ifname".
func (e *podEnv) ipamOnDisk(t *testing.T) map[netip.Addr]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.cfg.StateDir, "ipam-v4.json"))
	if os.IsNotExist(err) {
		return map[netip.Addr]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Allocations []ipam.Allocation `json:"allocations"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("IPAM state file: %v", err)
	}
	out := map[netip.Addr]string{}
	for _, al := range st.Allocations {
		out[al.IP] = al.Owner.String()
	}
	return out
}

func (e *podEnv) checkNothingLeft(t *testing.T) {
	t.Helper()
	var problems []string
	if n := len(e.a.Pods().Attachments()); n != 0 {
		problems = append(problems, fmt.Sprintf("%d attachments left", n))
	}
	if n := e.podPorts(); n != 0 {
		problems = append(problems, fmt.Sprintf("%d pod ports left: %s", n, e.o.Vsctl("list-ports", "br-int")))
	}
	for _, l := range strings.Split(e.o.InNetns("ip", "-o", "link", "show"), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "ovsn") && !strings.HasPrefix(f[1], e.cfg.GatewayName) {
			problems = append(problems, "veth left: "+f[1])
		}
	}
	if n := len(e.ipamOnDisk(t)); n != 0 {
		problems = append(problems, fmt.Sprintf("%d addresses left in the IPAM file", n))
	}
	for _, f := range e.apiFlows(t) {
		if f.Owner == "" || strings.HasPrefix(f.Owner, "pod/") {
			problems = append(problems, "pod or stale flow left: "+f.Text)
		}
	}
	if len(problems) > 0 {
		t.Fatalf("after deleting everything:\n  %s", strings.Join(problems, "\n  "))
	}
}

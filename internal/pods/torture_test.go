package pods_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

var tortureRounds = flag.Int("torture-rounds", 40, "rounds of the randomized lifecycle test")

// TestRandomInterleavings runs random ADD, DEL, CHECK and GC calls on a
// dozen containers, concurrently, while OVS renumbers and loses ports, the
// OpenFlow session drops and comes back, and bundles fail; after every
// round it lets the agent settle and checks the invariants (every flow of a
// live attachment of the current round, no address held twice, each
// address the one IPAM holds), and at the end that deleting everything
// leaves nothing behind. The seed is logged; -torture-rounds runs longer.
func TestRandomInterleavings(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	e := newEnv(t, nil)
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%02d", i)
	}
	var failMu sync.Mutex
	fails := 0
	e.sw.SetBeforeBundle(func(context.Context, []of.Message) error {
		failMu.Lock()
		defer failMu.Unlock()
		if fails > 0 {
			fails--
			return errInjected
		}
		return nil
	})
	var opsMu sync.Mutex
	ops := map[string]int{}
	count := func(k string) {
		opsMu.Lock()
		ops[k]++
		opsMu.Unlock()
	}
	for round := range *tortureRounds {
		var wg sync.WaitGroup
		n := 4 + rng.IntN(8)
		picks := make([]int, n)
		args := make([]string, n)
		for i := range n {
			picks[i] = rng.IntN(8)
			args[i] = ids[rng.IntN(len(ids))]
		}
		for i := range n {
			op, id, sub := picks[i], args[i], rng.Uint64()
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(e.ctx, 500*time.Millisecond)
				defer cancel()
				switch op {
				case 0, 1, 2:
					_, err := e.add(ctx, id)
					count(fmt.Sprintf("add:%d", cniCode(err)))
				case 3, 4:
					err := e.del(ctx, id)
					count(fmt.Sprintf("del:%d", cniCode(err)))
				case 5:
					err := e.check(ctx, id, nil)
					count(fmt.Sprintf("check:%d", cniCode(err)))
				case 6:
					var valid []types.GCAttachment
					for j, v := range ids {
						if (sub>>j)&1 == 0 {
							valid = append(valid, types.GCAttachment{ContainerID: v, IfName: "eth0"})
						}
					}
					_ = e.svc.GC(ctx, &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "ovsnet", ValidAttachments: valid})
					count("gc")
				case 7:
					// OVS misbehaves.
					host := podnet.HostIfName(id, "eth0")
					switch sub % 5 {
					case 0:
						if e.ovs.ofportOf(host) != 0 {
							e.ovs.renumber(host)
						}
					case 1:
						e.ovs.lose(host)
					case 2:
						failMu.Lock()
						fails += 1 + int(sub%3)
						failMu.Unlock()
					case 4:
						e.ovs.injectDeleteFailures(1 + int(sub%2))
					case 3:
						e.flows.SessionLost()
						e.table.Disconnected()
						e.table.Reset(e.table.Ports())
						if err := e.svc.Sync(ctx); err == nil {
							_ = e.flows.Resync(ctx, e.sw)
						}
					}
					count("fault")
				}
			}()
		}
		wg.Wait()
		failMu.Lock()
		fails = 0
		failMu.Unlock()
		e.ovs.injectDeleteFailures(0)
		e.settle(round)
		e.checkInvariants()
	}
	t.Logf("operations by outcome (verb:code): %v", ops)
	for _, id := range ids {
		if err := e.del(e.ctx, id); err != nil {
			t.Fatalf("final DEL %s: %v", id, err)
		}
	}
	e.checkEmpty()
}

// settle stops injecting faults, makes sure a session is up, and waits
// until every attachment has converged: declared ones have their port and
// their flows in, tombstones have their flows out.
func (e *env) settle(round int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if !e.flows.Connected() {
		// The session was dropped and its resync failed: bring it back.
		if err := e.svc.Sync(ctx); err != nil {
			e.t.Fatal(err)
		}
		if err := e.flows.Resync(ctx, e.sw); err != nil {
			e.t.Fatal(err)
		}
	}
	err := e.svc.Store().WaitAll(ctx, func(list []attachments.Attachment) bool {
		for _, a := range list {
			switch a.State {
			case attachments.Plumbed, attachments.Ready:
				if e.ovs.ofportOf(a.HostIfName) == 0 || !a.FlowsIn() {
					return false
				}
			case attachments.Deleting:
				if !a.FlowsOut() {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		var stuck []string
		for _, a := range e.svc.Attachments() {
			stuck = append(stuck, fmt.Sprintf("%s %s gen %d flows %+v port %d", a.Key, a.State, a.Gen, a.Flows, e.ovs.ofportOf(a.HostIfName)))
		}
		e.t.Fatalf("round %d: attachments did not settle: %v\n%v", round, err, stuck)
	}
}

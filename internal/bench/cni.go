//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ipam"
	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
	"github.com/ovsnet/ovsnet/internal/pipeline"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// CNIConfig configures the CNI benchmark.
type CNIConfig struct {
	Pods        int
	Concurrency int
	// PluginDir holds the built plugin binary ("ovsnet").
	PluginDir string
	Out       io.Writer
	Log       *slog.Logger
}

// CNI measures CNI ADD and DEL through the real plugin binary (exec'd by
// libcni, as a runtime does) against an in-process agent, sequentially and
// concurrently, with the agent's per-phase breakdown; and beside it the
// floor: the same steps (IPAM, veth, OVSDB port, port live, flow bundle)
// called directly, back to back, on a second bridge of the same OVS.
func CNI(ctx context.Context, cfg CNIConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	sb, err := newSandbox(ctx, true)
	if err != nil {
		return err
	}
	defer sb.Close()
	dir := sb.Dir()
	acfg := agent.Defaults()
	acfg.OVSDB, acfg.OVSRunDir, acfg.DatapathType, acfg.HealthAddr = sb.DBEndpoint(), dir, "netdev", "127.0.0.1:0"
	acfg.PodCIDR, acfg.StateDir, acfg.CNISocket, acfg.HostNetns = "10.250.0.0/16", dir+"/state", dir+"/cni.sock", sb.NetnsPath()
	ag, err := agent.New(acfg, cfg.Log)
	if err != nil {
		return err
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ag.Run(actx) }()
	defer func() { stop(); <-done }()
	if err := ag.Status().WaitReady(ctx); err != nil {
		return err
	}
	rt, err := cnitest.NewRuntime(cfg.PluginDir, dir+"/cni-cache", acfg.CNISocket, "1.1.0")
	if err != nil {
		return err
	}
	fl, err := newFloor(ctx, sb, cfg.Log)
	if err != nil {
		return fmt.Errorf("floor setup: %w", err)
	}
	defer fl.close()

	for _, conc := range []int{1, cfg.Concurrency} {
		r, err := runCNI(ctx, rt, ag, conc, cfg.Pods)
		if err != nil {
			return err
		}
		f, err := fl.run(ctx, conc, cfg.Pods)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		execs, err := execFloor(ctx, cfg.PluginDir, conc, cfg.Pods)
		if err != nil {
			return err
		}
		title := fmt.Sprintf("CNI ADD/DEL, %d pods, concurrency %d", cfg.Pods, conc)
		rows := []Row{
			{"ovsnet ADD (plugin exec -> result)", r.add},
			{"  agent: ipam", r.phases["ipam"]},
			{"  agent: plumbing (veth)", r.phases["plumbing"]},
			{"  agent: ovsdb (port added)", r.phases["ovsdb"]},
			{"  agent: port ready (live)", r.phases["port-ready"]},
			{"  agent: flows installed", r.phases["flows"]},
			{"  plugin exec + API round trip", r.overhead},
			{"floor ADD (same steps, direct calls)", f.add},
			{"floor: exec of the plugin (VERSION, no agent)", execs},
			{"ovsnet DEL (plugin exec -> done)", r.del},
			{"floor DEL", f.del},
		}
		WriteTable(cfg.Out, title, rows)
		fmt.Fprintf(cfg.Out, "wall time for %d ADDs: ovsnet %s, floor %s; ADD p50 ovsnet/floor = %.2f\n",
			cfg.Pods, r.wall.Round(time.Millisecond), f.wall.Round(time.Millisecond),
			float64(r.add.Percentile(50))/float64(f.add.Percentile(50)))
	}
	return nil
}

// execFloor times exec'ing the plugin for VERSION, which touches neither the
// agent nor the network: what any CNI plugin process costs on this machine.
func execFloor(ctx context.Context, dir string, conc, n int) (Sample, error) {
	var mu sync.Mutex
	var out Sample
	err := forEach(n, conc, func(int) error {
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "ovsnet"))
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0"}`)
		t0 := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("exec plugin VERSION: %v: %s", err, b)
		}
		d := time.Since(t0)
		mu.Lock()
		out = append(out, d)
		mu.Unlock()
		return nil
	})
	return out, err
}

// newNetnses creates n pod namespaces; cleanup deletes them (also those
// made before a failure).
func newNetnses(ctx context.Context, prefix string, n int) ([]*cnitest.Netns, func(), error) {
	var nss []*cnitest.Netns
	cleanup := func() {
		for _, ns := range nss {
			_ = ns.Delete()
		}
	}
	for range n {
		ns, err := cnitest.NewNetns(ctx, prefix)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		nss = append(nss, ns)
	}
	return nss, cleanup, nil
}

type cniResult struct {
	add, del, overhead Sample
	phases             map[string]Sample
	wall               time.Duration
}

func forEach(n, conc int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func runCNI(ctx context.Context, rt *cnitest.Runtime, ag *agent.Agent, conc, n int) (*cniResult, error) {
	res := &cniResult{phases: map[string]Sample{}}
	nss, cleanup, err := newNetnses(ctx, "ovsnet-bench-", n)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	podsList := make([]cnitest.Pod, n)
	for i := range podsList {
		podsList[i] = cnitest.Pod{Name: fmt.Sprintf("bench-%d", i), Namespace: "bench",
			ContainerID: fmt.Sprintf("bench-%d-%d-%d", conc, i, time.Now().UnixNano()), Netns: nss[i].Path}
	}
	var mu sync.Mutex
	addDur := make([]time.Duration, n)
	start := time.Now()
	err = forEach(n, conc, func(i int) error {
		t0 := time.Now()
		if _, err := rt.Add(ctx, podsList[i]); err != nil {
			return fmt.Errorf("ADD: %w", err)
		}
		addDur[i] = time.Since(t0)
		return nil
	})
	res.wall = time.Since(start)
	if err != nil {
		return nil, err
	}
	res.add = append(res.add, addDur...)
	byID := map[string]attachments.Attachment{}
	for _, a := range ag.Pods().Attachments() {
		byID[a.ContainerID] = a
	}
	for i, p := range podsList {
		var inAgent time.Duration
		for _, ph := range byID[p.ContainerID].Timeline {
			res.phases[ph.Name] = append(res.phases[ph.Name], ph.Duration)
			inAgent += ph.Duration
		}
		// What the runtime waited beyond the agent's phases: plugin exec,
		// the API round trip, request decoding and queueing.
		res.overhead = append(res.overhead, addDur[i]-inAgent)
	}
	err = forEach(n, conc, func(i int) error {
		t0 := time.Now()
		if err := rt.Del(ctx, podsList[i]); err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
		d := time.Since(t0)
		mu.Lock()
		res.del = append(res.del, d)
		mu.Unlock()
		return nil
	})
	return res, err
}

// floor does what an ADD must do, directly and back to back: allocate an
// address (with its fsync), create the veth in the pod namespace, add the
// OVS port, wait until OpenFlow reports it live, install its flows in one
// bundle. No plugin process, no API hop, no reconciler.
type floor struct {
	sb      *ovssandbox.Sandbox
	db      *ovsdb.Client
	of      *ofconn.Conn
	table   *ports.Table
	plumber podnet.Plumber
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	dir     string
}

func newFloor(ctx context.Context, sb *ovssandbox.Sandbox, log *slog.Logger) (*floor, error) {
	if _, err := sb.Vsctl(ctx, "add-br", "br-floor", "--", "set", "bridge", "br-floor",
		"datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure"); err != nil {
		return nil, err
	}
	db, err := ovsdb.New(ovsdb.Config{Endpoint: sb.DBEndpoint()})
	if err != nil {
		return nil, err
	}
	table := ports.New(db)
	of, err := ofconn.New(ofconn.Config{Bridge: "br-floor", RunDir: sb.Dir(), Ports: table})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	f := &floor{sb: sb, db: db, of: of, table: table, cancel: cancel, dir: filepath.Join(sb.Dir(), "floor"),
		plumber: podnet.New(log, podnet.WithHostNetns(sb.NetnsPath()))}
	f.wg.Add(2)
	go func() { defer f.wg.Done(); _ = db.Run(rctx) }()
	go func() { defer f.wg.Done(); _ = of.Run(rctx) }()
	if err := db.WaitConnected(ctx); err != nil {
		f.close()
		return nil, err
	}
	if _, err := of.WaitSession(ctx); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (f *floor) close() {
	f.cancel()
	f.wg.Wait()
}

func (f *floor) run(ctx context.Context, conc, n int) (*cniResult, error) {
	_ = os.RemoveAll(f.dir)
	alloc, err := ipam.New(ipam.Config{CIDR: netip.MustParsePrefix("10.251.0.0/16"), StateDir: f.dir})
	if err != nil {
		return nil, err
	}
	nss, cleanup, err := newNetnses(ctx, "ovsnet-floor-", n)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res := &cniResult{}
	var mu sync.Mutex
	type made struct{ cfg podnet.Config }
	madeList := make([]made, n)
	gw := netip.MustParseAddr("10.251.0.1")
	start := time.Now()
	err = forEach(n, conc, func(i int) error {
		t0 := time.Now()
		id := fmt.Sprintf("floor-%d-%d", conc, i)
		al, err := alloc.Allocate(ipam.Owner{ContainerID: id, IfName: "eth0"}, ipam.Meta{})
		if err != nil {
			return err
		}
		pc := podnet.Config{NetnsPath: nss[i].Path, IfName: "eth0", HostIfName: podnet.HostIfName(id, "eth0"),
			MAC: podnet.MACFromIP(al.IP), Address: netip.PrefixFrom(al.IP, 16), Gateway: gw,
			DisableTxChecksumOffload: true, HostNetns: f.sb.NetnsPath()}
		if _, err := f.plumber.Setup(ctx, pc); err != nil {
			return err
		}
		ref := f.table.Expect(pc.HostIfName)
		added, err := f.db.AddPort(ctx, "br-floor", ovsdb.PortSpec{Name: pc.HostIfName})
		if err != nil {
			return err
		}
		ref.InterfaceUUID = added.InterfaceUUID
		r, err := f.table.WaitPort(ctx, ref, ports.Live)
		if err != nil {
			return err
		}
		sess, err := f.of.Session()
		if err != nil {
			return err
		}
		flows := pipeline.PodFlows(pipeline.Endpoint{OFPort: r.OFPort, IP: al.IP, MAC: pc.MAC})
		var msgs []of.Message
		for _, fl := range flows {
			fm := of.AddFlow(fl.Table, fl.Priority, fl.Match, fl.Instructions...)
			fm.Cookie = uint64(i + 1)
			msgs = append(msgs, fm)
		}
		if err := sess.Bundle(ctx, msgs); err != nil {
			return err
		}
		d := time.Since(t0)
		mu.Lock()
		res.add = append(res.add, d)
		madeList[i] = made{pc}
		mu.Unlock()
		return nil
	})
	res.wall = time.Since(start)
	if err != nil {
		return nil, err
	}
	err = forEach(n, conc, func(i int) error {
		t0 := time.Now()
		pc := madeList[i].cfg
		sess, err := f.of.Session()
		if err != nil {
			return err
		}
		if err := sess.Bundle(ctx, []of.Message{of.DeleteFlows(of.TableAll, of.Match{}, uint64(i+1), ^uint64(0))}); err != nil {
			return err
		}
		if err := f.db.DeletePorts(ctx, "br-floor", pc.HostIfName); err != nil {
			return err
		}
		if err := f.plumber.Teardown(ctx, pc.NetnsPath, pc.IfName, pc.HostIfName); err != nil {
			return err
		}
		if _, err := alloc.Release(ipam.Owner{ContainerID: fmt.Sprintf("floor-%d-%d", conc, i), IfName: "eth0"}); err != nil {
			return err
		}
		d := time.Since(t0)
		mu.Lock()
		res.del = append(res.del, d)
		mu.Unlock()
		return nil
	})
	return res, err
}

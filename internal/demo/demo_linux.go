//go:build linux

package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ovsnet/ovsnet/internal/agentapi"
	"github.com/ovsnet/ovsnet/internal/cnitest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
	"github.com/ovsnet/ovsnet/internal/podnet"
)

// Config configures the demo.
type Config struct {
	// BinDir holds ovsnet-agent, ovsnet (the plugin) and ovsnetctl.
	BinDir string
	Pods   int
	Out    io.Writer
}

type demo struct {
	cfg   Config
	out   io.Writer
	sb    *ovssandbox.Sandbox
	dir   string
	agent *exec.Cmd
	rt    *cnitest.Runtime
	pods  []*pod
}

type pod struct {
	cnitest.Pod
	ns    *cnitest.Netns
	ip    string
	addMS float64
}

// Run runs the demo and cleans up everything it made, also on failure.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Pods < 2 {
		cfg.Pods = 4
	}
	d := &demo{cfg: cfg, out: cfg.Out}
	defer func() {
		if cerr := d.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"start a local Open vSwitch (userspace datapath) in its own network namespace", d.startOVS},
		{"start ovsnet-agent (standalone, pod CIDR 10.244.0.0/24)", d.startAgent},
		{fmt.Sprintf("create %d pods through the ovsnet CNI plugin", cfg.Pods), d.addPods},
		{"pods as the agent sees them (ovsnetctl pods)", d.showPods},
		{"pod <-> pod, pod <-> gateway and host -> pod traffic (ping)", d.pings},
		{"TCP between pods", d.tcp},
		{"a pod forging another pod's IP is dropped (counted at the receiver)", d.spoof},
		{"flows of the SpoofGuard table (ovsnetctl flows --table 10)", d.flows},
		{"delete the pods (CNI DEL)", d.delPods},
	}
	for i, s := range steps {
		fmt.Fprintf(d.out, "\n==> [%d/%d] %s\n", i+1, len(steps), s.name)
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	fmt.Fprintln(d.out, "\ndemo complete: every check passed")
	return nil
}

func (d *demo) startOVS(ctx context.Context) error {
	sb, err := ovssandbox.New(ctx, ovssandbox.Config{})
	if err != nil {
		return err
	}
	d.sb, d.dir = sb, sb.Dir()
	if err := sb.StartDB(ctx); err != nil {
		return err
	}
	if err := sb.StartVswitchd(ctx, ovssandbox.Detached); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    run dir %s, namespace %s\n", d.dir, sb.Netns())
	return nil
}

func (d *demo) startAgent(ctx context.Context) error {
	logf, err := os.Create(filepath.Join(d.dir, "agent.log"))
	if err != nil {
		return err
	}
	// The agent runs in the namespace of ovs-vswitchd, as it would on a node.
	d.agent = exec.Command("ip", "netns", "exec", d.sb.Netns(), filepath.Join(d.cfg.BinDir, "ovsnet-agent"),
		"--ovsdb", d.sb.DBEndpoint(), "--ovs-rundir", d.dir, "--datapath-type", "netdev",
		"--pod-cidr", "10.244.0.0/24", "--state-dir", filepath.Join(d.dir, "state"),
		"--cni-socket", filepath.Join(d.dir, "cni.sock"), "--health-addr", "127.0.0.1:9364")
	d.agent.Stdout, d.agent.Stderr = logf, logf
	if err := d.agent.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start agent: %w", err)
	}
	logf.Close()
	d.rt, err = cnitest.NewRuntime(d.cfg.BinDir, filepath.Join(d.dir, "cni-cache"), filepath.Join(d.dir, "cni.sock"), "1.1.0")
	if err != nil {
		return err
	}
	// Like a container runtime, ask the plugin's STATUS until the network is
	// ready; the agent answers "not ready" (with why) until it is.
	start := time.Now()
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	backoff := 5 * time.Millisecond
	for {
		err := d.rt.Status(wait)
		if err == nil {
			break
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("agent not ready after a minute: %v (log: %s)", err, filepath.Join(d.dir, "agent.log"))
		case <-time.After(backoff):
			backoff = min(backoff*2, 200*time.Millisecond)
		}
	}
	fmt.Fprintf(d.out, "    agent ready after %s (STATUS answered by the plugin)\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func (d *demo) addPods(ctx context.Context) error {
	for i := range d.cfg.Pods {
		n, err := cnitest.NewNetns(ctx, "ovsnet-demo-")
		if err != nil {
			return err
		}
		p := &pod{Pod: cnitest.Pod{Name: fmt.Sprintf("demo-%d", i+1), Namespace: "default",
			ContainerID: fmt.Sprintf("demo%d-%d", i+1, time.Now().UnixNano()), Netns: n.Path}, ns: n}
		d.pods = append(d.pods, p)
		start := time.Now()
		res, err := d.rt.Add(ctx, p.Pod)
		if err != nil {
			return fmt.Errorf("ADD %s: %w", p.Name, err)
		}
		p.addMS = float64(time.Since(start).Microseconds()) / 1000
		p.ip = res.IPs[0].Address.IP.String()
		fmt.Fprintf(d.out, "    %s: %s in %.1f ms (plugin exec included)\n", p.Name, res.IPs[0].Address.String(), p.addMS)
	}
	return nil
}

func (d *demo) ctl(ctx context.Context, args ...string) (string, error) {
	out, err := d.sb.InNetns(ctx, filepath.Join(d.cfg.BinDir, "ovsnetctl"), args...)
	if err != nil {
		return "", err
	}
	return out, nil
}

func (d *demo) showPods(ctx context.Context) error {
	raw, err := d.ctl(ctx, "pods", "--json")
	if err != nil {
		return err
	}
	var ps []agentapi.Pod
	if err := json.Unmarshal([]byte(raw), &ps); err != nil {
		return err
	}
	addMS := map[string]float64{}
	for _, p := range d.pods {
		addMS[p.ContainerID] = p.addMS
	}
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    POD\tIP\tMAC\tOFPORT\tSTATE\tADD ms (runtime)\tADD ms (agent)")
	for _, p := range ps {
		agentMS := 0.0
		for _, ph := range p.Timeline {
			agentMS += ph.Milliseconds
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%d\t%s\t%.1f\t%.1f\n", p.Name, p.IP, p.MAC, p.OFPort, p.State, addMS[p.ContainerID], agentMS)
	}
	return tw.Flush()
}

func (d *demo) ping(ctx context.Context, from *pod, to string) error {
	out, err := from.ns.Exec(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "3", to)
	if err != nil {
		return fmt.Errorf("ping %s -> %s failed: %v\n%s", from.Name, to, err, out)
	}
	rtt := "?"
	if i := strings.LastIndex(out, "= "); i >= 0 {
		rtt = strings.Fields(out[i+2:])[0]
	}
	fmt.Fprintf(d.out, "    %-7s -> %-12s ok (rtt min/avg/max/mdev %s ms)\n", from.Name, to, rtt)
	return nil
}

func (d *demo) pings(ctx context.Context) error {
	for i, p := range d.pods {
		next := d.pods[(i+1)%len(d.pods)]
		if err := d.ping(ctx, p, next.ip); err != nil {
			return err
		}
	}
	if err := d.ping(ctx, d.pods[0], "10.244.0.1"); err != nil {
		return err
	}
	if out, err := d.sb.InNetns(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "3", d.pods[1].ip); err != nil {
		return fmt.Errorf("host -> %s failed: %v\n%s", d.pods[1].ip, err, out)
	}
	fmt.Fprintf(d.out, "    host    -> %-12s ok (through ovsnet-gw0)\n", d.pods[1].ip)
	return nil
}

func (d *demo) tcp(ctx context.Context) error {
	const n = 64 << 20
	start := time.Now()
	if err := cnitest.TCPTransfer(ctx, d.pods[0].Netns, d.pods[1].Netns, d.pods[1].ip, n); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(d.out, "    %s -> %s: %d MiB in %s (%.0f Mbit/s)\n", d.pods[0].Name, d.pods[1].Name, n>>20,
		el.Round(time.Millisecond), float64(n*8)/el.Seconds()/1e6)
	return nil
}

// spoof shows SpoofGuard where it matters, at the receiver: c counts UDP
// datagrams by source while a sends some as b (b's address), then some as
// itself; the truthful ones must arrive and the forged ones must not.
func (d *demo) spoof(ctx context.Context) error {
	a, b, c := d.pods[0], d.pods[1], d.pods[2%len(d.pods)]
	const port = 9999
	rx, err := cnitest.ListenUDP(c.Netns, c.ip, port)
	if err != nil {
		return err
	}
	defer rx.Close()
	if out, err := a.ns.Exec(ctx, "ip", "addr", "add", b.ip+"/32", "dev", "eth0"); err != nil {
		return fmt.Errorf("add forged address: %v %s", err, out)
	}
	// a must know c's MAC without an ARP of its own (its ARP would carry
	// the forged address too).
	cMAC := podnet.MACFromIP(netip.MustParseAddr(c.ip)).String()
	if out, err := a.ns.Exec(ctx, "ip", "neigh", "replace", c.ip, "lladdr", cMAC, "dev", "eth0", "nud", "permanent"); err != nil {
		return fmt.Errorf("neighbour entry: %v %s", err, out)
	}
	if err := cnitest.SendUDP(a.Netns, b.ip, c.ip, port, 10); err != nil {
		return err
	}
	if err := cnitest.SendUDP(a.Netns, a.ip, c.ip, port, 10); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rx.WaitFrom(wctx, a.ip, 10); err != nil {
		return fmt.Errorf("datagrams from %s's own address did not arrive: %w", a.Name, err)
	}
	if n := rx.From(b.ip); n != 0 {
		return fmt.Errorf("%d datagrams forged by %s as %s arrived at %s", n, a.Name, b.ip, c.Name)
	}
	fmt.Fprintf(d.out, "    %s sent 10 UDP datagrams as %s and 10 as itself to %s: %s received 10 from %s and 0 from %s (SpoofGuard dropped the forged ones)\n",
		a.Name, b.ip, c.ip, c.Name, a.ip, b.ip)
	if out, err := a.ns.Exec(ctx, "ip", "addr", "del", b.ip+"/32", "dev", "eth0"); err != nil {
		return fmt.Errorf("remove forged address: %v %s", err, out)
	}
	if out, err := a.ns.Exec(ctx, "ip", "neigh", "del", c.ip, "dev", "eth0"); err != nil {
		return fmt.Errorf("remove neighbour entry: %v %s", err, out)
	}
	return d.ping(ctx, a, c.ip)
}

func (d *demo) flows(ctx context.Context) error {
	out, err := d.ctl(ctx, "flows", "--table", "10")
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		fmt.Fprintln(d.out, "    "+line)
	}
	return nil
}

func (d *demo) delPods(ctx context.Context) error {
	for _, p := range d.pods {
		if err := d.rt.Del(ctx, p.Pod); err != nil {
			return fmt.Errorf("DEL %s: %w", p.Name, err)
		}
	}
	ports, err := d.sb.Vsctl(ctx, "list-ports", "br-int")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    %d pods deleted; ports left on br-int: %s\n", len(d.pods), strings.Join(strings.Fields(ports), " "))
	return nil
}

func (d *demo) cleanup() error {
	var errs []error
	for _, p := range d.pods {
		if p.ns != nil {
			if err := p.ns.Delete(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if d.agent != nil && d.agent.Process != nil {
		_ = d.agent.Process.Signal(os.Interrupt)
		_ = d.agent.Wait()
	}
	if d.sb != nil {
		if err := d.sb.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		fmt.Fprintln(d.out, "\ncleaned up: OVS, agent, namespaces and files removed")
	}
	return errors.Join(errs...)
}

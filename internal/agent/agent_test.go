package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/agent"
	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type runningAgent struct {
	*agent.Agent
	exited chan error
	cancel context.CancelFunc
	once   sync.Once
}

func startAgent(t *testing.T, o *ovstest.OVS) *runningAgent {
	t.Helper()
	cfg := agent.Defaults()
	cfg.OVSDB = o.DBEndpoint()
	cfg.OVSRunDir = o.Dir()
	cfg.DatapathType = "netdev"
	cfg.HealthAddr = "127.0.0.1:0"
	a, err := agent.New(cfg, logger())
	if err != nil {
		t.Fatal(err)
	}
	ra := runAgent(t, a)
	return ra
}

// waitReadyFor waits until the agent is ready for the ovs-vswitchd with the
// given pid (its gate answer names that process's control socket).
func (ra *runningAgent) waitReadyFor(t *testing.T, ctx context.Context, pid int) {
	t.Helper()
	want := "ovs-vswitchd." + strconv.Itoa(pid) + ".ctl"
	err := ra.Status().WaitFor(ctx, func(st health.Status) bool {
		if st.State != health.Ready {
			return false
		}
		br := ra.Bridge()
		return br != nil && strings.HasSuffix(br.ControlSocket, want)
	})
	if err != nil {
		t.Fatalf("agent not ready for ovs-vswitchd pid %d: %v", pid, err)
	}
	select {
	case err := <-ra.exited:
		t.Fatalf("agent exited: %v", err)
	default:
	}
}

// jitter spreads the start of the next component over 0-40 ms so that every
// interleaving with the others' start-up gets exercised. It shapes the
// scenario; no test outcome waits on it.
func jitter(r *rand.Rand) {
	time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
}

func TestStartOrders(t *testing.T) {
	orders := [][3]string{
		{"db", "vswitchd", "agent"},
		{"db", "agent", "vswitchd"},
		{"vswitchd", "db", "agent"},
		{"vswitchd", "agent", "db"},
		{"agent", "db", "vswitchd"},
		{"agent", "vswitchd", "db"},
	}
	for _, mode := range []ovssandbox.Mode{ovssandbox.Detached, ovssandbox.Foreground} {
		for _, order := range orders {
			t.Run(fmt.Sprintf("%s/%s", mode, strings.Join(order[:], "-")), func(t *testing.T) {
				seed := rand.Uint64()
				r := rand.New(rand.NewPCG(seed, 0))
				t.Logf("seed %d", seed)
				o := ovstest.Start(t, ovstest.Options{NoDB: true})
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				var ra *runningAgent
				dbUp := false
				for _, step := range order {
					switch step {
					case "db":
						o.StartDB()
						dbUp = true
					case "vswitchd":
						// ovs-vswitchd --detach blocks until it has reached
						// ovsdb-server; without one yet, start it in the
						// foreground whatever the mode.
						m := mode
						if !dbUp {
							m = ovssandbox.Foreground
						}
						o.StartVswitchd(m)
					case "agent":
						ra = startAgent(t, o)
					}
					jitter(r)
				}
				ra.waitReadyFor(t, ctx, o.VswitchdPID())

				// A crash and a restart in the foreground against the kept
				// conf.db: the agent must notice and pass the gate again
				// for the new process.
				o.KillVswitchd()
				jitter(r)
				o.StartVswitchd(ovssandbox.Foreground)
				ra.waitReadyFor(t, ctx, o.VswitchdPID())

				// ovsdb-server restarts too: datapath ids are rewritten.
				o.StopDB()
				jitter(r)
				o.StartDB()
				ra.waitReadyFor(t, ctx, o.VswitchdPID())
			})
		}
	}
}

func TestReadyzReportsReason(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{NoVswitchd: true})
	ra := startAgent(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, err := ra.HealthAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ra.Status().WaitFor(ctx, func(st health.Status) bool { return st.State == health.BridgeNotApplied }); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, "http://"+addr.String()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "bridge-not-applied") || !strings.Contains(body, "has not applied configuration") {
		t.Fatalf("/readyz before vswitchd: %d %q", code, body)
	}
	if code, body := get(t, "http://"+addr.String()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	o.StartVswitchd(ovssandbox.Detached)
	ra.waitReadyFor(t, ctx, o.VswitchdPID())
	if code, body := get(t, "http://"+addr.String()+"/readyz"); code != http.StatusOK || !strings.HasPrefix(body, "ready") {
		t.Fatalf("/readyz when ready: %d %q", code, body)
	}
	if code, body := get(t, "http://"+addr.String()+"/metrics"); code != http.StatusOK || !strings.Contains(body, `ovsnet_agent_state{state="ready"} 1`) {
		t.Fatalf("/metrics: %d, state gauge missing", code)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*agent.Config)
		want string
	}{
		{func(c *agent.Config) { c.DatapathType = "dpdk" }, "--datapath-type"},
		{func(c *agent.Config) { c.Bridge = "a-very-long-bridge-name" }, "--bridge"},
		{func(c *agent.Config) { c.HealthAddr = "9364" }, "--health-addr"},
		{func(c *agent.Config) { c.OVSDB = "/run/openvswitch/db.sock" }, "--ovsdb"},
	} {
		cfg := agent.Defaults()
		tc.mut(&cfg)
		if _, err := agent.New(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config error %q: got %v", tc.want, err)
		}
	}
}

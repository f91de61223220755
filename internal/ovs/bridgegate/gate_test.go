package bridgegate_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/bridgegate"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl/unixctltest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startDB(t *testing.T, endpoint string) *ovsdb.Client {
	t.Helper()
	c, err := ovsdb.New(ovsdb.Config{Endpoint: endpoint, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func newGate(t *testing.T, db *ovsdb.Client, dp bridgegate.Datapath) *bridgegate.Gate {
	t.Helper()
	g, err := bridgegate.New(bridgegate.Config{
		Bridge:   ovsdb.BridgeSpec{Name: "br-int", DatapathType: "netdev"},
		DB:       db,
		Datapath: dp,
		Logger:   logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// naiveReady is what the seed-1 agent did: trust Bridge.datapath_id, wait
// until the new ovs-vswitchd's control socket answers, then ask for the
// datapath features once.
func naiveReady(ctx context.Context, db *ovsdb.Client, uc *unixctl.Client) error {
	if err := db.Wait(ctx, "datapath_id", func() (bool, error) {
		br, ok, err := db.Bridge("br-int")
		return ok && br.DatapathID != nil && *br.DatapathID != "", err
	}); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if _, err := uc.Version(ctx); err == nil {
			break
		}
	}
	_, err := uc.DatapathFeatures(ctx, "br-int")
	return err
}

// TestSeed1RestartRace restarts ovs-vswitchd in the foreground against a kept
// conf.db, where datapath_id is present from the previous run before the new
// process has built the bridge. The naive client trips over it in some runs;
// the gate never does.
func TestSeed1RestartRace(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	db := startDB(t, o.DBEndpoint())
	uc := unixctl.New(unixctl.Config{RunDir: o.Dir(), Logger: logger()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g := newGate(t, db, uc)
	if _, err := g.Pass(ctx); err != nil {
		t.Fatal(err)
	}

	const runs = 25
	naiveFailures := 0
	var naiveErrs []string
	for i := range runs {
		o.KillVswitchd()
		// datapath_id survives in conf.db: the naive signal is already set.
		if dpid := o.Vsctl("get", "bridge", "br-int", "datapath_id"); len(dpid) < 16 {
			t.Fatalf("run %d: expected a kept datapath_id, got %q", i, dpid)
		}
		o.StartVswitchd(ovssandbox.Foreground)
		if err := naiveReady(ctx, db, uc); err != nil {
			naiveFailures++
			naiveErrs = append(naiveErrs, err.Error())
		}

		o.KillVswitchd()
		o.StartVswitchd(ovssandbox.Foreground)
		res, err := g.Pass(ctx)
		if err != nil {
			t.Fatalf("run %d: gate failed: %v", i, err)
		}
		// The gate's answer holds for the new process, not the killed one.
		if want := "ovs-vswitchd." + strconv.Itoa(o.VswitchdPID()) + ".ctl"; !strings.HasSuffix(res.ControlSocket, want) {
			t.Fatalf("run %d: gate answered for %s, want the new process %s", i, res.ControlSocket, want)
		}
		if !res.Features.Supported(unixctl.FeatureRecirc) {
			t.Fatalf("run %d: features without recirculation: %+v", i, res.Features)
		}
	}
	t.Logf("naive client failed %d of %d runs; e.g. %v", naiveFailures, runs, first(naiveErrs))
	if naiveFailures == 0 {
		t.Errorf("the naive client never failed in %d runs: the race this test guards is not reproduced", runs)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// A datapath without conntrack labels is a permanent, named failure, and
// transient "not a valid command" replies before it only re-arm the gate.
func TestMissingFeaturesIsPermanent(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	db := startDB(t, o.DBEndpoint())
	fake := unixctltest.Start(t)
	fake.Handle("dpif/show-dp-features", unixctltest.FailFirst(3,
		unixctltest.NotValidCommand("dpif/show-dp-features"),
		unixctltest.FeaturesHandler(unixctltest.FeaturesWithout("CT label", "Recirc"), "br-int")))
	uc := unixctl.New(unixctl.Config{RunDir: fake.RunDir(), Logger: logger()})
	var stages []bridgegate.Stage
	g, err := bridgegate.New(bridgegate.Config{
		Bridge:   ovsdb.BridgeSpec{Name: "br-int", DatapathType: "netdev"},
		DB:       db,
		Datapath: uc,
		Logger:   logger(),
		Reporter: func(s bridgegate.Stage, _ string) { stages = append(stages, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = g.Pass(ctx)
	var missing *unixctl.MissingFeaturesError
	if !errors.As(err, &missing) {
		t.Fatalf("Pass: %v, want a MissingFeaturesError", err)
	}
	if got := strings.Join(missing.Missing, ","); got != "Recirc,CT label" {
		t.Fatalf("missing features %q", got)
	}
	if !strings.Contains(err.Error(), "br-int lacks required features: Recirc, CT label") {
		t.Fatalf("error does not name the features clearly: %v", err)
	}
	if n := fake.Calls("dpif/show-dp-features"); n != 4 {
		t.Fatalf("dp-features called %d times, want 3 transient failures then 1 answer", n)
	}
	if last := stages[len(stages)-1]; last != bridgegate.FeaturesMissing {
		t.Fatalf("last stage %v, want FeaturesMissing", last)
	}
}

// A context that ends while ovs-vswitchd never comes up ends Pass with the
// context's error and the reason it was waiting.
func TestPassHonoursContext(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{NoVswitchd: true})
	db := startDB(t, o.DBEndpoint())
	ctx, cancel := context.WithCancel(context.Background())
	var reported string
	g, _ := bridgegate.New(bridgegate.Config{
		Bridge: ovsdb.BridgeSpec{Name: "br-int", DatapathType: "netdev"}, DB: db,
		Datapath: unixctl.New(unixctl.Config{RunDir: o.Dir(), Logger: logger()}),
		Reporter: func(s bridgegate.Stage, why string) {
			if s == bridgegate.BridgeNotApplied && strings.Contains(why, "has not applied") {
				reported = why
				cancel()
			}
		},
	})
	_, err := g.Pass(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Pass: %v, want context.Canceled", err)
	}
	if reported == "" {
		t.Fatal("no BridgeNotApplied reason reported while ovs-vswitchd was down")
	}
}

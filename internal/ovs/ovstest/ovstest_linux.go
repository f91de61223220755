package ovstest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovssandbox"
	"github.com/ovsnet/ovsnet/internal/testenv"
)

// Options chooses what Start brings up.
type Options struct {
	// NoDB leaves ovsdb-server (and so ovs-vswitchd) stopped.
	NoDB bool
	// NoVswitchd starts only ovsdb-server.
	NoVswitchd bool
	// Mode is how ovs-vswitchd starts (Detached by default).
	Mode ovssandbox.Mode
	// FlowRestoreWait sets other_config:flow-restore-wait=true before
	// ovs-vswitchd starts, as the DaemonSet's start script does.
	FlowRestoreWait bool
}

// OVS is a sandbox bound to a test: its helpers fail the test on error.
type OVS struct {
	*ovssandbox.Sandbox
	t testing.TB
}

// Start creates a sandbox for t (failing the test under CI=true, skipping it
// elsewhere, when root or OVS is missing) and starts the daemons opts asks
// for. Cleanup kills them and removes everything the sandbox made; on failure
// the daemons' logs are printed first.
func Start(t testing.TB, opts Options) *OVS {
	t.Helper()
	testenv.RequireOVS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ovssandbox.Sweep(ctx)
	sb, err := ovssandbox.New(ctx, ovssandbox.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("OVS sandbox: %v", err)
	}
	o := &OVS{Sandbox: sb, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("OVS sandbox %s logs:\n%s", sb.Dir(), sb.Logs())
		}
		if err := sb.Close(); err != nil {
			t.Errorf("OVS sandbox cleanup: %v", err)
		}
	})
	if !opts.NoDB {
		o.Must(sb.StartDB(ctx))
		if !opts.NoVswitchd {
			var vo []ovssandbox.VswitchdOption
			if opts.FlowRestoreWait {
				vo = append(vo, ovssandbox.WithFlowRestoreWait())
			}
			o.Must(sb.StartVswitchd(ctx, opts.Mode, vo...))
		}
	}
	return o
}

// Must fails the test on a non-nil error.
func (o *OVS) Must(err error) {
	o.t.Helper()
	if err != nil {
		o.t.Fatalf("%v\n%s", err, o.Logs())
	}
}

// Ctx is a context for one harness step, bounded so a wedged daemon fails
// the test instead of hanging it.
func (o *OVS) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// Vsctl runs ovs-vsctl and fails the test on error.
func (o *OVS) Vsctl(args ...string) string {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	out, err := o.Sandbox.Vsctl(ctx, args...)
	o.Must(err)
	return strings.TrimSpace(out)
}

// Ofctl runs ovs-ofctl and fails the test on error.
func (o *OVS) Ofctl(args ...string) string {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	out, err := o.Sandbox.Ofctl(ctx, args...)
	o.Must(err)
	return out
}

// Appctl runs ovs-appctl and fails the test on error.
func (o *OVS) Appctl(args ...string) string {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	out, err := o.Sandbox.Appctl(ctx, args...)
	o.Must(err)
	return out
}

// InNetns runs a program in the sandbox's namespace and fails the test on error.
func (o *OVS) InNetns(name string, args ...string) string {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	out, err := o.Sandbox.InNetns(ctx, name, args...)
	o.Must(err)
	return out
}

// StartVswitchd, StopVswitchd, KillVswitchd, StartDB and StopDB wrap the
// sandbox's lifecycle calls, failing the test on error.
func (o *OVS) StartVswitchd(mode ovssandbox.Mode, opts ...ovssandbox.VswitchdOption) {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	o.Must(o.Sandbox.StartVswitchd(ctx, mode, opts...))
}

func (o *OVS) StopVswitchd() {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	o.Must(o.Sandbox.StopVswitchd(ctx))
}

func (o *OVS) KillVswitchd() {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	o.Must(o.Sandbox.KillVswitchd(ctx))
}

func (o *OVS) StartDB() {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	o.Must(o.Sandbox.StartDB(ctx))
}

func (o *OVS) StopDB() {
	o.t.Helper()
	ctx, cancel := o.ctx()
	defer cancel()
	o.Must(o.Sandbox.StopDB(ctx))
}

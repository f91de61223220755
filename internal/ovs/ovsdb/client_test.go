package ovsdb_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
)

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startClient(t *testing.T, endpoint string) *ovsdb.Client {
	t.Helper()
	c, err := ovsdb.New(ovsdb.Config{Endpoint: endpoint, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEnsureBridgeAndApplied(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	c := startClient(t, o.DBEndpoint())
	ctx := testCtx(t)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	spec := ovsdb.BridgeSpec{Name: "br-int", DatapathType: "netdev", ExternalIDs: map[string]string{"ovsnet-owner": "agent"}}
	seq, err := c.EnsureBridge(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Wait(ctx, "bridge applied", func() (bool, error) {
		ok, _, err := c.BridgeApplied("br-int", seq)
		return ok, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Vsctl("get", "bridge", "br-int", "fail_mode", "datapath_type", "protocols", "external_ids:ovsnet-owner"); got != "secure\nnetdev\n[OpenFlow13]\nagent" {
		t.Fatalf("bridge columns: %q", got)
	}
	if got := o.Vsctl("get", "open_vswitch", ".", "cur_cfg"); got != strconv.Itoa(seq) {
		t.Fatalf("cur_cfg %s, want %d", got, seq)
	}
	// Idempotent, and every call bumps next_cfg.
	seq2, err := c.EnsureBridge(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if seq2 != seq+1 {
		t.Fatalf("second EnsureBridge: next_cfg %d, want %d", seq2, seq+1)
	}
	if got := o.Vsctl("list-br"); got != "br-int" {
		t.Fatalf("bridges: %q", got)
	}
	// Foreign external_ids keys survive.
	o.Vsctl("set", "bridge", "br-int", "external_ids:other=kept")
	if _, err := c.EnsureBridge(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := o.Vsctl("get", "bridge", "br-int", "external_ids:other"); got != "kept" {
		t.Fatalf("foreign external_ids key: %q", got)
	}
}

// With ovs-vswitchd down, cur_cfg cannot reach the new sequence even though
// the kept datapath_id is still in the database.
func TestAppliedNeedsLiveVswitchd(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	o.Vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
	o.StopVswitchd()
	if dpid := o.Vsctl("get", "bridge", "br-int", "datapath_id"); !strings.Contains(dpid, "0000") {
		t.Fatalf("expected a kept datapath_id, got %q", dpid)
	}
	c := startClient(t, o.DBEndpoint())
	ctx := testCtx(t)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	seq, err := c.EnsureBridge(ctx, ovsdb.BridgeSpec{Name: "br-int", DatapathType: "netdev"})
	if err != nil {
		t.Fatal(err)
	}
	ok, why, err := c.BridgeApplied("br-int", seq)
	if err != nil || ok {
		t.Fatalf("applied with vswitchd down: ok=%v why=%q err=%v", ok, why, err)
	}
	applied := make(chan error, 1)
	go func() {
		applied <- c.Wait(ctx, "bridge applied", func() (bool, error) {
			ok, _, err := c.BridgeApplied("br-int", seq)
			return ok, err
		})
	}()
	o.StartVswitchd(0)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
}

func TestReconnectAfterDBRestart(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{NoDB: true})
	c := startClient(t, o.DBEndpoint())
	ctx := testCtx(t)
	if ok, _ := c.Connected(); ok {
		t.Fatal("connected with no ovsdb-server")
	}
	o.StartDB()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	first := c.ConnectionSeq()
	o.Vsctl("--no-wait", "add-br", "br-x")
	if err := c.Wait(ctx, "br-x in cache", func() (bool, error) {
		_, ok, err := c.Bridge("br-x")
		return ok, err
	}); err != nil {
		t.Fatal(err)
	}
	o.StopDB()
	if err := c.Wait(ctx, "disconnect", func() (bool, error) {
		ok, _ := c.Connected()
		return !ok, nil
	}); err != nil {
		t.Fatal(err)
	}
	o.StartDB()
	if err := c.Wait(ctx, "reconnected with br-x in cache", func() (bool, error) {
		_, ok, err := c.Bridge("br-x")
		if err == ovsdb.ErrNotConnected {
			return false, nil
		}
		return ok && c.ConnectionSeq() > first, err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestBadEndpoint(t *testing.T) {
	for _, ep := range []string{"/run/db.sock", "http://x", "ssl:1.2.3.4:6640"} {
		if _, err := ovsdb.New(ovsdb.Config{Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
}

func TestPorts(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{})
	c := startClient(t, o.DBEndpoint())
	ctx := testCtx(t)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureBridge(ctx, ovsdb.BridgeSpec{Name: "br-int", DatapathType: "netdev"}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"ovsnet.io/pod": "default/p1"}
	added, err := c.AddPort(ctx, "br-int", ovsdb.PortSpec{Name: "gw0", Type: "internal", ExternalIDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, "gw0 ofport", func() (bool, error) {
		n, err := c.Ofport(added.InterfaceUUID)
		return n > 0, err
	}); err != nil {
		t.Fatal(err)
	}
	if got := o.Vsctl("get", "interface", "gw0", "external_ids:ovsnet.io/pod", "_uuid"); got != `"default/p1"`+"\n"+added.InterfaceUUID {
		t.Fatalf("interface row: %q", got)
	}
	if _, err := c.AddPort(ctx, "br-int", ovsdb.PortSpec{Name: "gw0", Type: "internal"}); !errors.Is(err, ovsdb.ErrPortExists) {
		t.Fatalf("second AddPort: %v, want ErrPortExists", err)
	}
	// A device that does not exist yet gets ofport -1.
	missing, err := c.AddPort(ctx, "br-int", ovsdb.PortSpec{Name: "nodev0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, "nodev0 ofport -1", func() (bool, error) {
		n, err := c.Ofport(missing.InterfaceUUID)
		return n == -1, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePorts(ctx, "br-int", "gw0", "nodev0", "never-existed"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePorts(ctx, "br-int", "gw0"); err != nil {
		t.Fatalf("repeated delete: %v", err)
	}
	if got := o.Vsctl("list-ports", "br-int"); got != "" {
		t.Fatalf("ports left: %q", got)
	}
}

// ovs-vswitchd started with flow-restore-wait processes no packet until the
// key is removed; ClearFlowRestoreWait removes it (other keys stay), and its
// next_cfg is acknowledged only by a live ovs-vswitchd that read the change.
func TestClearFlowRestoreWait(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{FlowRestoreWait: true})
	o.Vsctl("--no-wait", "set", "open_vswitch", ".", "other_config:keep-me=1")
	c := startClient(t, o.DBEndpoint())
	ctx := testCtx(t)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if on, err := c.FlowRestoreWait(); err != nil || !on {
		t.Fatalf("FlowRestoreWait() = %v, %v; want true", on, err)
	}
	seq, err := c.ClearFlowRestoreWait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, "cur_cfg acknowledging the removal", func() (bool, error) {
		return c.ConfigApplied(seq)
	}); err != nil {
		t.Fatal(err)
	}
	if on, err := c.FlowRestoreWait(); err != nil || on {
		t.Fatalf("FlowRestoreWait() after clearing = %v, %v; want false", on, err)
	}
	if got := o.Vsctl("get", "open_vswitch", ".", "other_config"); got != `{keep-me="1"}` {
		t.Fatalf("other_config after clearing: %s", got)
	}
	// Clearing an absent key is harmless.
	if _, err := c.ClearFlowRestoreWait(ctx); err != nil {
		t.Fatalf("second clear: %v", err)
	}
	// "false" is not "true": ovs-vswitchd reads any other value as false.
	o.Vsctl("--no-wait", "set", "open_vswitch", ".", "other_config:flow-restore-wait=false")
	if err := c.Wait(ctx, "flow-restore-wait=false in the cache", func() (bool, error) {
		root, _, err := c.OpenVSwitch()
		return root.OtherConfig[ovsdb.FlowRestoreWaitKey] == "false", err
	}); err != nil {
		t.Fatal(err)
	}
	if on, err := c.FlowRestoreWait(); err != nil || on {
		t.Fatalf("FlowRestoreWait() with the key false = %v, %v; want false", on, err)
	}
}

// ovsdb-server creates its socket anew when it starts, and that is what
// brings the client back: with a reconnect backoff of an hour it still
// reconnects, on the first start and after a restart.
func TestReconnectOnSocketCreation(t *testing.T) {
	o := ovstest.Start(t, ovstest.Options{NoDB: true})
	c, err := ovsdb.New(ovsdb.Config{Endpoint: o.DBEndpoint(), Logger: logger(t), MinBackoff: time.Hour, MaxBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ctx := testCtx(t)
	failed := func() (bool, error) {
		// A connection attempt has failed, so the client waits out its
		// hour-long backoff, watching for the socket.
		ok, err := c.Connected()
		return !ok && err != nil && strings.Contains(err.Error(), "connect to ovsdb-server at"), nil
	}
	for range 2 {
		if err := c.Wait(ctx, "a failed connection attempt", failed); err != nil {
			t.Fatal(err)
		}
		o.StartDB()
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		o.StopDB()
	}
}

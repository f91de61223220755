//go:build linux

package unixctl

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/ovstest"
	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

// startOVS runs a real ovsdb-server and ovs-vswitchd with a netdev br-int.
// ovs-vsctl waits until ovs-vswitchd has applied the bridge, so the dpif/*
// commands are registered when it returns.
func startOVS(t testing.TB) (*ovstest.OVS, *Client) {
	t.Helper()
	o := ovstest.Start(t, ovstest.Options{})
	o.Vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
	return o, New(Config{RunDir: o.Dir()})
}

func TestRealOVS(t *testing.T) {
	o, c := startOVS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	t.Run("version", func(t *testing.T) {
		got, err := c.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := parseVersion(o.Appctl("version"))
		if got != want || want == "" {
			t.Errorf("Version = %q, ovs-appctl says %q", got, want)
		}
	})

	t.Run("datapath features", func(t *testing.T) {
		f, err := c.DatapathFeatures(ctx, "br-int")
		if err != nil {
			t.Fatal(err)
		}
		want := wantNetdev31
		want.Bridge = "br-int"
		if !strings.HasPrefix(f.Text, "Masked set action: Yes\n") {
			t.Errorf("Text is not the raw reply: %q", f.Text)
		}
		f.Text = ""
		if !featuresEqual(*f, want) {
			t.Errorf("features\n%+v\nwant (netdev, OVS 3.1)\n%+v", *f, want)
		}
		if f.Unknown != nil {
			t.Errorf("lines unknown to the parser: %q", f.Unknown)
		}
		if err := f.Require(RequiredFeatures()...); err != nil {
			t.Error(err)
		}
	})

	t.Run("multi-read reply matches ovs-appctl", func(t *testing.T) {
		got, err := c.Call(ctx, "list-commands")
		if err != nil {
			t.Fatal(err)
		}
		if want := o.Appctl("list-commands"); got != want || len(got) < 4096 {
			t.Errorf("list-commands: %d bytes, ovs-appctl printed %d", len(got), len(want))
		}
	})

	t.Run("unknown bridge", func(t *testing.T) {
		_, err := c.DatapathFeatures(ctx, "br-nope")
		if !errors.Is(err, ErrNoSuchBridge) || !IsTransient(err) {
			t.Fatalf("error %v, want transient ErrNoSuchBridge", err)
		}
	})

	t.Run("unknown command", func(t *testing.T) {
		_, err := c.Call(ctx, "ovsnet/nope")
		if !errors.Is(err, ErrNotValidCommand) || !IsTransient(err) {
			t.Fatalf("error %v, want transient ErrNotValidCommand", err)
		}
	})

	t.Run("other command error", func(t *testing.T) {
		_, err := c.Call(ctx, "version", "extra")
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Text != `"version" command takes at most 0 arguments` || IsTransient(err) {
			t.Fatalf("error %v, want a permanent *CommandError with the daemon's text", err)
		}
	})

	t.Run("hung daemon hits the deadline", func(t *testing.T) {
		o.Must(o.PauseVswitchd())
		defer func() { o.Must(o.ResumeVswitchd()) }()
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := c.Version(short)
		if !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
			t.Fatalf("error %v, want transient context.DeadlineExceeded", err)
		}
	})

	t.Run("stopped, then restarted with a new pid", func(t *testing.T) {
		before, err := c.SocketPath()
		if err != nil {
			t.Fatal(err)
		}
		o.StopVswitchd()
		_, err = c.Version(ctx)
		if !errors.Is(err, ErrUnavailable) || !IsTransient(err) || !strings.Contains(err.Error(), "pidfile") {
			t.Fatalf("stopped: error %v, want transient ErrUnavailable naming the pidfile", err)
		}
		o.StartVswitchd(ovssandbox.Detached)
		if _, err := c.Version(ctx); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		after, _ := c.SocketPath()
		if after == before || !strings.HasSuffix(after, "."+strconv.Itoa(o.VswitchdPID())+".ctl") {
			t.Errorf("socket before %s, after %s, new pid %d", before, after, o.VswitchdPID())
		}
	})

	t.Run("killed", func(t *testing.T) {
		path, err := c.SocketPath()
		if err != nil {
			t.Fatal(err)
		}
		watched := make(chan error, 1)
		go func() { watched <- c.WaitClosed(ctx, path) }()
		o.KillVswitchd()
		// Whether it connected before the kill or after, it must not hang.
		if err := <-watched; !errors.Is(err, ErrUnavailable) {
			t.Errorf("WaitClosed = %v, want ErrUnavailable", err)
		}
		_, err = c.Version(ctx)
		// SIGKILL leaves the pidfile and socket behind: connection refused.
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) || !IsTransient(err) {
			t.Fatalf("error %v, want transient ErrUnavailable (connection refused)", err)
		}
	})
}

// BenchmarkCallRealOVS measures one call (dial, request, reply) to a real
// ovs-vswitchd: the cost of not keeping connections open.
func BenchmarkCallRealOVS(b *testing.B) {
	_, c := startOVS(b)
	ctx := b.Context()
	for _, method := range []string{"version", "dpif/show-dp-features"} {
		b.Run(method, func(b *testing.B) {
			var params []string
			if method != "version" {
				params = []string{"br-int"}
			}
			for b.Loop() {
				if _, err := c.Call(ctx, method, params...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package unixctl_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/unixctl"
	"github.com/ovsnet/ovsnet/internal/ovs/unixctl/unixctltest"
)

// testCtx bounds a test step so a bug hangs nothing; tests never rely on it
// expiring.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newClient(s *unixctltest.Server) *unixctl.Client {
	return unixctl.New(unixctl.Config{RunDir: s.RunDir(), Target: s.Target()})
}

func TestVersionAndFeaturesFromFake(t *testing.T) {
	s := unixctltest.Start(t)
	c := newClient(s)
	ctx := testCtx(t)

	v, err := c.Version(ctx)
	if err != nil || v != "3.1.0" {
		t.Fatalf("Version = %q, %v; want 3.1.0", v, err)
	}
	f, err := c.DatapathFeatures(ctx, "br-int")
	if err != nil {
		t.Fatalf("DatapathFeatures: %v", err)
	}
	if f.Bridge != "br-int" || !f.CTLabel || f.MaxMPLSDepth != 3 {
		t.Errorf("features = %+v", f)
	}
	if err := f.Require(unixctl.RequiredFeatures()...); err != nil {
		t.Errorf("Require: %v", err)
	}
	if got := s.Calls("dpif/show-dp-features"); got != 1 {
		t.Errorf("fake saw %d feature calls, want 1", got)
	}
}

func TestCallPassesParamsAndReturnsTextVerbatim(t *testing.T) {
	s := unixctltest.Start(t)
	var mu sync.Mutex
	var got []string
	s.Handle("dpif/dump-flows", func(_ context.Context, req unixctltest.Request) unixctltest.Reply {
		mu.Lock()
		defer mu.Unlock()
		got = req.Params
		return unixctltest.Result("flow 1\nflow 2\n")
	})
	out, err := newClient(s).Call(testCtx(t), "dpif/dump-flows", "-m", "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if out != "flow 1\nflow 2\n" {
		t.Errorf("result = %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []string{"-m", "br-int"}) {
		t.Errorf("params = %q", got)
	}
}

// classify checks the classes an error belongs to; exactly one is expected.
type classes struct {
	notValid, noBridge, unavailable, command, protocol, transient bool
}

func classOf(err error) classes {
	var ce *unixctl.CommandError
	var pe *unixctl.ProtocolError
	return classes{
		notValid:    errors.Is(err, unixctl.ErrNotValidCommand),
		noBridge:    errors.Is(err, unixctl.ErrNoSuchBridge),
		unavailable: errors.Is(err, unixctl.ErrUnavailable),
		command:     errors.As(err, &ce),
		protocol:    errors.As(err, &pe),
		transient:   unixctl.IsTransient(err),
	}
}

func TestErrorClasses(t *testing.T) {
	const feat = "dpif/show-dp-features"
	tests := []struct {
		name   string
		setup  func(s *unixctltest.Server, cfg *unixctl.Config)
		call   func(ctx context.Context, c *unixctl.Client) error
		want   classes
		wantIs error  // an extra errors.Is target, if any
		text   string // a substring of the message
	}{{
		name:  "not a valid command",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) { s.Handle(feat, nil) },
		want:  classes{notValid: true, command: true, transient: true},
		text:  `"dpif/show-dp-features" is not a valid command`,
	}, {
		name: "no such bridge",
		call: func(ctx context.Context, c *unixctl.Client) error {
			_, err := c.DatapathFeatures(ctx, "br-nope")
			return err
		},
		want: classes{noBridge: true, command: true, transient: true},
		text: "no such bridge",
	}, {
		name: "other command error",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) {
			s.Reply(feat, unixctltest.Error(`"dpif/show-dp-features" command takes at most 1 arguments`))
		},
		want: classes{command: true},
		text: "takes at most 1 arguments",
	}, {
		name:  "stopped: pidfile gone",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) { s.Stop() },
		want:  classes{unavailable: true, transient: true},
		text:  "ovs-vswitchd pidfile " + "RUNDIR/ovs-vswitchd.pid not found: is ovs-vswitchd running?",
	}, {
		name:   "crashed: connection refused",
		setup:  func(s *unixctltest.Server, _ *unixctl.Config) { s.Crash() },
		want:   classes{unavailable: true, transient: true},
		wantIs: syscall.ECONNREFUSED,
	}, {
		name: "explicit socket missing",
		setup: func(s *unixctltest.Server, cfg *unixctl.Config) {
			cfg.Socket = filepath.Join(s.RunDir(), "nope.ctl")
		},
		want:   classes{unavailable: true, transient: true},
		wantIs: syscall.ENOENT,
	}, {
		name: "garbage",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) {
			s.Reply(feat, unixctltest.Reply{Raw: []byte("hello\n")})
		},
		want: classes{protocol: true},
		text: "not a JSON-RPC reply",
	}, {
		name: "truncated",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) {
			s.Reply(feat, unixctltest.Reply{Raw: []byte(`{"id":1,"result":"Masked set`)})
		},
		want:   classes{protocol: true, transient: true},
		wantIs: io.ErrUnexpectedEOF,
	}, {
		name:   "closed without reply",
		setup:  func(s *unixctltest.Server, _ *unixctl.Config) { s.Reply(feat, unixctltest.Reply{Raw: []byte{}}) },
		want:   classes{protocol: true, transient: true},
		wantIs: io.EOF,
	}, {
		name: "id mismatch",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) {
			s.Reply(feat, unixctltest.Reply{Result: "x\n", WrongID: true})
		},
		want: classes{protocol: true},
		text: "does not match request id 1",
	}, {
		name: "result not a string",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) {
			s.Reply(feat, unixctltest.Reply{Raw: []byte(`{"id":1,"result":42,"error":null}`)})
		},
		want: classes{protocol: true},
		text: "is not a string",
	}, {
		name: "neither result nor error",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) {
			s.Reply(feat, unixctltest.Reply{Raw: []byte(`{"id":1,"result":null,"error":null}`)})
		},
		want: classes{protocol: true},
	}, {
		name:  "reply too large",
		setup: func(_ *unixctltest.Server, cfg *unixctl.Config) { cfg.MaxReplySize = 100 },
		want:  classes{protocol: true},
		text:  "larger than 100 bytes",
	}, {
		name:  "features text unparsable",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) { s.Reply(feat, unixctltest.Result("CT state: maybe\n")) },
		want:  classes{protocol: true},
		text:  `"CT state: maybe": want Yes or No`,
	}, {
		name:  "version text unparsable",
		setup: func(s *unixctltest.Server, _ *unixctl.Config) { s.Reply("version", unixctltest.Result("hello\n")) },
		call: func(ctx context.Context, c *unixctl.Client) error {
			_, err := c.Version(ctx)
			return err
		},
		want: classes{protocol: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := unixctltest.Start(t)
			cfg := unixctl.Config{RunDir: s.RunDir()}
			if tt.setup != nil {
				tt.setup(s, &cfg)
			}
			call := tt.call
			if call == nil {
				call = func(ctx context.Context, c *unixctl.Client) error {
					_, err := c.DatapathFeatures(ctx, "br-int")
					return err
				}
			}
			err := call(testCtx(t), unixctl.New(cfg))
			if err == nil {
				t.Fatal("call succeeded, want an error")
			}
			if got := classOf(err); got != tt.want {
				t.Errorf("error %q\nclasses %+v, want %+v", err, got, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not match %v", err, tt.wantIs)
			}
			if text := strings.ReplaceAll(tt.text, "RUNDIR", s.RunDir()); !strings.Contains(err.Error(), text) {
				t.Errorf("error %q does not say %q", err, text)
			}
		})
	}
}

func TestLargeReplyUpToTheLimit(t *testing.T) {
	s := unixctltest.Start(t)
	big := strings.Repeat("in_port(1),eth(src=00:00:00:00:00:01) actions:drop\n", 40_000) // ~2 MB
	s.Reply("dpif/dump-flows", unixctltest.Result(big))
	out, err := newClient(s).Call(testCtx(t), "dpif/dump-flows", "br-int")
	if err != nil || out != big {
		t.Fatalf("Call = %d bytes, %v; want %d bytes", len(out), err, len(big))
	}
	small := unixctl.New(unixctl.Config{RunDir: s.RunDir(), MaxReplySize: 1 << 20})
	var pe *unixctl.ProtocolError
	if _, err := small.Call(testCtx(t), "dpif/dump-flows", "br-int"); !errors.As(err, &pe) {
		t.Fatalf("over the limit: %v, want *ProtocolError", err)
	}
}

func TestCommandErrorCarriesServerText(t *testing.T) {
	s := unixctltest.Start(t)
	s.Reply("dpif/show-dp-features", unixctltest.NoSuchBridge())
	_, err := newClient(s).Call(testCtx(t), "dpif/show-dp-features", "br-x")
	var ce *unixctl.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *CommandError", err)
	}
	if ce.Text != "no such bridge" || ce.Method != "dpif/show-dp-features" || !slices.Equal(ce.Params, []string{"br-x"}) {
		t.Errorf("CommandError = %+v", ce)
	}
}

func TestDeadlineWhenServerNeverAnswers(t *testing.T) {
	s := unixctltest.Start(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s.Handle("version", func(ctx context.Context, _ unixctltest.Request) unixctltest.Reply {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return unixctltest.Result(unixctltest.Version31)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := newClient(s).Version(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
	if !unixctl.IsTransient(err) {
		t.Errorf("a timeout should be transient: %v", err)
	}
}

func TestCancelWhileWaitingForReply(t *testing.T) {
	s := unixctltest.Start(t)
	received := make(chan struct{})
	s.Handle("version", func(ctx context.Context, _ unixctltest.Request) unixctltest.Reply {
		close(received)
		<-ctx.Done() // never answers while the test runs
		return unixctltest.Reply{}
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-received
		cancel()
	}()
	_, err := newClient(s).Call(ctx, "version")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if unixctl.IsTransient(err) {
		t.Errorf("cancellation by the caller should not be transient: %v", err)
	}
}

func TestCallWithEndedContextDoesNotDial(t *testing.T) {
	s := unixctltest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := newClient(s).Call(ctx, "version"); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if n := s.Calls("version"); n != 0 {
		t.Errorf("fake saw %d calls, want 0", n)
	}
}

func TestNotValidCommandUntilRegistered(t *testing.T) {
	const feat = "dpif/show-dp-features"
	s := unixctltest.Start(t)
	s.Handle(feat, unixctltest.FailFirst(2, unixctltest.NotValidCommand(feat),
		unixctltest.FeaturesHandler(unixctltest.FeaturesNetdev, "br-int")))
	c := newClient(s)
	ctx := testCtx(t)
	for i := range 2 {
		if _, err := c.DatapathFeatures(ctx, "br-int"); !errors.Is(err, unixctl.ErrNotValidCommand) || !unixctl.IsTransient(err) {
			t.Fatalf("call %d: error %v, want transient ErrNotValidCommand", i+1, err)
		}
	}
	if _, err := c.DatapathFeatures(ctx, "br-int"); err != nil {
		t.Fatalf("call 3: %v", err)
	}
	if n := s.Calls(feat); n != 3 {
		t.Errorf("fake saw %d calls, want 3", n)
	}
}

func TestMissingFeatureIsPermanentAndNamed(t *testing.T) {
	s := unixctltest.Start(t)
	s.Handle("dpif/show-dp-features", unixctltest.FeaturesHandler(
		unixctltest.FeaturesWithout("CT label", "Recirc"), "br-int"))
	f, err := newClient(s).DatapathFeatures(testCtx(t), "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Missing(unixctl.RequiredFeatures()...); !slices.Equal(got, []string{"Recirc", "CT label"}) {
		t.Errorf("Missing = %q", got)
	}
	err = f.Require(unixctl.RequiredFeatures()...)
	var me *unixctl.MissingFeaturesError
	if !errors.As(err, &me) || me.Bridge != "br-int" {
		t.Fatalf("Require = %v, want *MissingFeaturesError for br-int", err)
	}
	if !strings.Contains(err.Error(), "lacks required features: Recirc, CT label") {
		t.Errorf("message %q does not name the features", err)
	}
	if unixctl.IsTransient(err) {
		t.Errorf("missing features should be permanent")
	}
}

func TestSocketReResolvedAfterRestart(t *testing.T) {
	s := unixctltest.Start(t)
	c := newClient(s)
	ctx := testCtx(t)
	before, err := c.SocketPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	after, _ := c.SocketPath()
	if after == before || after != s.SocketPath() {
		t.Errorf("socket before %s, after %s, fake listens on %s", before, after, s.SocketPath())
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := unixctltest.Start(t)
	c := newClient(s)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := c.DatapathFeatures(ctx, "br-int"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.Calls("dpif/show-dp-features"); n != 16 {
		t.Errorf("fake saw %d calls, want 16", n)
	}
}

func TestLocate(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "ovs-vswitchd.pid")

	_, err := unixctl.Locate(dir, "")
	if !errors.Is(err, unixctl.ErrUnavailable) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), pidfile) {
		t.Errorf("no pidfile: %v", err)
	}

	if err := os.WriteFile(pidfile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := unixctl.Locate(dir, ""); !errors.Is(err, unixctl.ErrUnavailable) || !strings.Contains(err.Error(), `"garbage"`) {
		t.Errorf("garbage pidfile: %v", err)
	}

	if err := os.WriteFile(pidfile, []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := unixctl.Locate(dir, "")
	if want := filepath.Join(dir, "ovs-vswitchd.4242.ctl"); err != nil || got != want {
		t.Errorf("Locate = %q, %v; want %q", got, err, want)
	}

	if err := os.WriteFile(filepath.Join(dir, "ovsdb-server.pid"), []byte("7"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = unixctl.Locate(dir, "ovsdb-server")
	if want := filepath.Join(dir, "ovsdb-server.7.ctl"); err != nil || got != want {
		t.Errorf("Locate(ovsdb-server) = %q, %v; want %q", got, err, want)
	}
}

func TestIsTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{unixctl.ErrUnavailable, true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{&unixctl.CommandError{Method: "x", Text: `"x" is not a valid command (use "list-commands" to see a list of valid commands)`}, true},
		{&unixctl.CommandError{Method: "ofproto/trace", Text: "br-x: unknown bridge"}, true},
		{&unixctl.CommandError{Method: "bridge/dump-flows", Text: "Unknown bridge"}, true},
		{&unixctl.CommandError{Method: "x", Text: "invalid flow"}, false},
		{&unixctl.ProtocolError{Reason: "truncated", Err: io.ErrUnexpectedEOF}, true},
		{&unixctl.ProtocolError{Reason: "garbage"}, false},
		{&unixctl.MissingFeaturesError{Bridge: "br-int", Missing: []string{"CT label"}}, false},
	}
	for _, tt := range tests {
		if got := unixctl.IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// BenchmarkCallFake measures the client's own cost per call against the
// in-process fake.
func BenchmarkCallFake(b *testing.B) {
	s := unixctltest.Start(b)
	c := newClient(s)
	ctx := b.Context()
	for b.Loop() {
		if _, err := c.DatapathFeatures(ctx, "br-int"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWaitClosedReturnsWhenDaemonStops(t *testing.T) {
	s := unixctltest.Start(t)
	c := newClient(s)
	ctx := testCtx(t)
	path, err := c.SocketPath()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.WaitClosed(ctx, path) }()
	if err := s.WaitAccepted(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitClosed returned while the daemon runs: %v", err)
	default:
	}
	s.Stop()
	if err := <-done; !errors.Is(err, unixctl.ErrUnavailable) {
		t.Fatalf("WaitClosed = %v, want ErrUnavailable", err)
	}
	// A daemon already gone (restarted under a new pid) returns at once.
	if err := c.WaitClosed(ctx, path); !errors.Is(err, unixctl.ErrUnavailable) {
		t.Fatalf("WaitClosed on a removed socket = %v, want ErrUnavailable", err)
	}
}

func TestWaitClosedHonoursCancel(t *testing.T) {
	s := unixctltest.Start(t)
	c := newClient(s)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- c.WaitClosed(ctx, s.SocketPath()) }()
	if err := s.WaitAccepted(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitClosed = %v, want context.Canceled", err)
	}
}

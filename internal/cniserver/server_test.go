package cniserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// testWait bounds every wait in these tests; reaching it is a failure, not
// a timing measurement.
const testWait = 30 * time.Second

// socketPath returns a short socket path (unix socket paths are limited to
// 107 bytes, which t.TempDir with long test names can exceed).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ovsnet-cni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "run", "cni.sock")
}

type testServer struct {
	sock     string
	srv      *Server
	cancel   context.CancelFunc
	finished chan struct{} // closed when Serve returned
	err      error         // Serve's result, valid once finished is closed
}

// stop cancels Serve and waits for it to return.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	ts.cancel()
	return ts.wait(t)
}

// wait waits for Serve to return.
func (ts *testServer) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-ts.finished:
		return ts.err
	case <-time.After(testWait):
		t.Fatal("Serve did not return after its context was cancelled")
		return nil
	}
}

func startServer(t *testing.T, h Handler, cfg Config, setup func(*Server)) *testServer {
	t.Helper()
	if cfg.SocketPath == "" {
		cfg.SocketPath = socketPath(t)
	}
	srv := New(cfg, h, nil)
	if setup != nil {
		setup(srv)
	}
	ln, err := Listen(cfg.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{sock: cfg.SocketPath, srv: srv, cancel: cancel, finished: make(chan struct{})}
	go func() {
		ts.err = srv.Serve(ctx, ln)
		close(ts.finished)
	}()
	t.Cleanup(func() { _ = ts.stop(t) })
	return ts
}

func client(t *testing.T, sock string) *cniapi.Client {
	c := cniapi.NewClient(sock)
	t.Cleanup(c.Close)
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

func request(id string) *cniapi.Request {
	return &cniapi.Request{
		CNIVersion:  "1.1.0",
		Network:     "ovsnet",
		ContainerID: id,
		Netns:       "/var/run/netns/" + id,
		IfName:      "eth0",
		NetConf:     json.RawMessage(`{"cniVersion":"1.1.0","name":"ovsnet","type":"ovsnet"}`),
	}
}

func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a CNI error", err, err)
	}
	return e.Code
}

// recv waits for a value from ch or fails the test.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testWait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func TestAddPassesRequestAndReturnsCurrentResult(t *testing.T) {
	f := &Fake{}
	ts := startServer(t, f, Config{}, nil)
	req := request("c1")
	req.Pod = cniapi.PodRef{Namespace: "default", Name: "web-0", UID: "u1"}
	req.Args = map[string]string{"IgnoreUnknown": "1"}
	req.RuntimeConfig = json.RawMessage(`{"portMappings":[]}`)

	res, err := client(t, ts.sock).Add(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.CNIVersion != cniapi.CurrentCNIVersion || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.244.0.3/24" {
		t.Fatalf("result %+v", res)
	}
	calls := f.Calls()
	if len(calls) != 1 || calls[0].Verb != cniapi.VerbAdd {
		t.Fatalf("calls %+v", calls)
	}
	got := calls[0].Request
	if got.ContainerID != "c1" || got.Pod != req.Pod || got.Args["IgnoreUnknown"] != "1" ||
		string(got.RuntimeConfig) != `{"portMappings":[]}` || !bytes.Contains(got.NetConf, []byte(`"type":"ovsnet"`)) {
		t.Fatalf("handler saw %+v", got)
	}
}

func TestOldResultVersionIsConverted(t *testing.T) {
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		r := FakeResult(req.IfName, req.Netns, 1)
		r.CNIVersion = "1.0.0"
		return r, nil
	}}
	ts := startServer(t, f, Config{}, nil)
	res, err := client(t, ts.sock).Add(testCtx(t), request("c1"))
	if err != nil || res.CNIVersion != "1.1.0" {
		t.Fatalf("res %+v err %v", res, err)
	}
}

// eventLog records handler starts and ends in order.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) forContainer(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if strings.HasSuffix(e, " "+id) {
			out = append(out, e)
		}
	}
	return out
}

func TestSameContainerRunsInArrivalOrderOthersInParallel(t *testing.T) {
	log := &eventLog{}
	addEntered := make(chan string, 4)
	releaseA := make(chan struct{})
	f := &Fake{
		AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
			log.add("add-start " + req.ContainerID)
			addEntered <- req.ContainerID
			if req.ContainerID == "a" {
				<-releaseA
			}
			log.add("add-end " + req.ContainerID)
			return FakeResult(req.IfName, req.Netns, 1), nil
		},
		DelFunc: func(ctx context.Context, req *cniapi.Request) error {
			log.add("del-start " + req.ContainerID)
			log.add("del-end " + req.ContainerID)
			return nil
		},
		CheckFunc: func(ctx context.Context, req *cniapi.Request) error {
			log.add("check-start " + req.ContainerID)
			log.add("check-end " + req.ContainerID)
			return nil
		},
	}
	queued := make(chan string, 8)
	ts := startServer(t, f, Config{}, func(s *Server) {
		s.onQueued = func(v cniapi.Verb, id string) { queued <- string(v) + " " + id }
	})
	c := client(t, ts.sock)
	ctx := testCtx(t)

	results := make(chan error, 3)
	go func() { _, err := c.Add(ctx, request("a")); results <- err }()
	if id := recv(t, addEntered, "ADD a to start"); id != "a" {
		t.Fatalf("entered %s", id)
	}
	recv(t, queued, "ADD a queued")

	// DEL then CHECK of the same container queue up behind the running ADD.
	go func() { results <- c.Del(ctx, request("a")) }()
	if q := recv(t, queued, "DEL a queued"); q != "DEL a" {
		t.Fatalf("queued %q", q)
	}
	check := request("a")
	check.PrevResult = FakeResult("eth0", check.Netns, 1)
	go func() { results <- c.Check(ctx, check) }()
	if q := recv(t, queued, "CHECK a queued"); q != "CHECK a" {
		t.Fatalf("queued %q", q)
	}

	// Another container is not held up by a's blocked ADD: this returns
	// while ADD a still waits for releaseA.
	if _, err := c.Add(ctx, request("b")); err != nil {
		t.Fatalf("ADD b while ADD a runs: %v", err)
	}
	if got := log.forContainer("a"); strings.Join(got, ",") != "add-start a" {
		t.Fatalf("container a ran %v before ADD a finished", got)
	}

	close(releaseA)
	for range 3 {
		if err := recv(t, results, "container a's requests"); err != nil {
			t.Fatal(err)
		}
	}
	want := "add-start a,add-end a,del-start a,del-end a,check-start a,check-end a"
	if got := strings.Join(log.forContainer("a"), ","); got != want {
		t.Fatalf("container a ran\n %s\nwant\n %s", got, want)
	}
	if n := ts.srv.queue.Len(); n != 0 {
		t.Fatalf("%d container queues left after all requests finished", n)
	}
}

func TestManyContainersInParallel(t *testing.T) {
	const n = 20
	var mu sync.Mutex
	entered := 0
	all := make(chan struct{})
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		mu.Lock()
		entered++
		if entered == n {
			close(all)
		}
		mu.Unlock()
		// Each ADD waits until all n are inside the handler at once, which
		// only happens if none waits for another.
		select {
		case <-all:
			return FakeResult(req.IfName, req.Netns, 1), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}
	ts := startServer(t, f, Config{}, nil)
	c := client(t, ts.sock)
	ctx := testCtx(t)
	errs := make(chan error, n)
	for i := range n {
		go func() { _, err := c.Add(ctx, request(fmt.Sprintf("c%d", i))); errs <- err }()
	}
	for range n {
		if err := recv(t, errs, "parallel ADDs"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	base := types.NewError(42, "custom failure", "some details")
	cases := []struct {
		name    string
		err     error
		code    uint
		msgPart string
	}{
		{"coded", base, 42, "custom failure"},
		{"wrapped coded", fmt.Errorf("set up port: %w", base), 42, "set up port: custom failure"},
		{"not ready", NotReady("waiting for br-int"), types.ErrTryAgainLater, "waiting for br-int"},
		{"plain", errors.New("boom"), cniapi.CodeAgentInternal, "boom"},
		{"code zero", types.NewError(0, "zero", ""), cniapi.CodeAgentInternal, "zero"},
		{"deadline", fmt.Errorf("wait for port: %w", context.DeadlineExceeded), types.ErrTryAgainLater, "deadline"},
		{"canceled", context.Canceled, types.ErrTryAgainLater, "abandoned"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &Fake{
				AddFunc: func(context.Context, *cniapi.Request) (*current.Result, error) { return nil, tc.err },
				DelFunc: func(context.Context, *cniapi.Request) error { return tc.err },
			}
			ts := startServer(t, f, Config{}, nil)
			c := client(t, ts.sock)
			for verb, err := range map[string]error{
				"ADD": func() error { _, err := c.Add(testCtx(t), request("x")); return err }(),
				"DEL": c.Del(testCtx(t), request("x")),
			} {
				if got := cniCode(t, err); got != tc.code {
					t.Errorf("%s: code %d, want %d (%v)", verb, got, tc.code, err)
				}
				if !strings.Contains(err.Error(), tc.msgPart) {
					t.Errorf("%s: message %q lacks %q", verb, err, tc.msgPart)
				}
			}
		})
	}
}

func TestStatusCodes(t *testing.T) {
	cases := []struct {
		err  error
		code uint
	}{
		{nil, 0},
		{NotReady("no bridge"), types.ErrPluginNotAvailable},
		{errors.New("boom"), types.ErrPluginNotAvailable},
		{types.NewError(types.ErrLimitedConnectivity, "no tunnel", ""), types.ErrLimitedConnectivity},
	}
	for _, tc := range cases {
		f := &Fake{StatusFunc: func(context.Context) error { return tc.err }}
		ts := startServer(t, f, Config{}, nil)
		err := client(t, ts.sock).Status(testCtx(t), &cniapi.StatusRequest{CNIVersion: "1.1.0", Network: "ovsnet"})
		if tc.code == 0 {
			if err != nil {
				t.Fatalf("healthy status: %v", err)
			}
			continue
		}
		if got := cniCode(t, err); got != tc.code {
			t.Errorf("status for %v: code %d, want %d", tc.err, got, tc.code)
		}
	}
}

func TestPanicIsRecoveredAndReleasesTheContainer(t *testing.T) {
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		if req.IfName == "eth0" {
			panic("handler bug for " + req.ContainerID)
		}
		return FakeResult(req.IfName, req.Netns, 1), nil
	}}
	ts := startServer(t, f, Config{}, nil)
	c := client(t, ts.sock)
	_, err := c.Add(testCtx(t), request("p"))
	if got := cniCode(t, err); got != cniapi.CodeAgentInternal {
		t.Fatalf("code %d, want %d: %v", got, cniapi.CodeAgentInternal, err)
	}
	again := request("p")
	again.IfName = "net1"
	if _, err := c.Add(testCtx(t), again); err != nil {
		t.Fatalf("same container after a panic: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	f := &Fake{}
	ts := startServer(t, f, Config{DefaultTimeout: 7 * time.Minute}, nil)
	c := client(t, ts.sock)

	budget := 90 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	before := time.Now()
	if _, err := c.Add(ctx, request("d")); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	dl := f.Calls()[0].Deadline
	// The agent's deadline is the plugin's minus the margin, counted from
	// when the request was sent.
	lo := before.Add(cniapi.AgentBudget(budget) - time.Millisecond)
	hi := after.Add(cniapi.AgentBudget(budget) + time.Millisecond)
	if dl.Before(lo) || dl.After(hi) {
		t.Fatalf("handler deadline %v not within [%v, %v]", dl, lo, hi)
	}

	// Without a header the server's default applies.
	resp := rawPost(t, ts.sock, cniapi.PathDel, "", mustJSON(t, request("d2")))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DEL without header: HTTP %d", resp.StatusCode)
	}
	dl2 := f.Calls()[1].Deadline
	if d := time.Until(dl2); d < 6*time.Minute || d > 7*time.Minute {
		t.Fatalf("default deadline %v from now, want about 7m", d)
	}
}

func TestDeadlineCoversTheWaitBehindEarlierOperations(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		if req.IfName == "eth0" {
			entered <- struct{}{}
			<-release
		}
		return FakeResult(req.IfName, req.Netns, 1), nil
	}}
	ts := startServer(t, f, Config{}, nil)
	c := client(t, ts.sock)
	first := make(chan error, 1)
	ctx := testCtx(t)
	go func() { _, err := c.Add(ctx, request("q")); first <- err }()
	recv(t, entered, "first ADD to start")

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.Del(ctx, request("q"))
	if got := cniCode(t, err); got != types.ErrTryAgainLater {
		t.Fatalf("DEL stuck behind ADD: code %d, want 11: %v", got, err)
	}
	close(release)
	if err := recv(t, first, "first ADD"); err != nil {
		t.Fatal(err)
	}
	// The abandoned DEL left the queue usable.
	again := request("q")
	again.IfName = "net1"
	if _, err := c.Add(testCtx(t), again); err != nil {
		t.Fatal(err)
	}
}

func TestGCReceivesValidAttachments(t *testing.T) {
	f := &Fake{}
	ts := startServer(t, f, Config{}, nil)
	c := client(t, ts.sock)
	keep := []types.GCAttachment{{ContainerID: "a", IfName: "eth0"}}
	if err := c.GC(testCtx(t), &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "ovsnet", ValidAttachments: keep}); err != nil {
		t.Fatal(err)
	}
	if err := c.GC(testCtx(t), &cniapi.GCRequest{CNIVersion: "1.1.0", Network: "ovsnet"}); err != nil {
		t.Fatal(err)
	}
	calls := f.Calls()
	if len(calls) != 2 || len(calls[0].GC.ValidAttachments) != 1 || calls[0].GC.ValidAttachments[0] != keep[0] {
		t.Fatalf("calls %+v", calls)
	}
	if calls[1].GC.ValidAttachments == nil || len(calls[1].GC.ValidAttachments) != 0 {
		t.Fatalf("absent list should arrive as empty, got %#v", calls[1].GC.ValidAttachments)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawDo(t *testing.T, sock string, req *http.Request) (*http.Response, *types.Error) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e types.Error
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("HTTP %d with a body that is not a CNI error: %v", resp.StatusCode, err)
		}
		return resp, &e
	}
	return resp, nil
}

func rawPost(t *testing.T, sock, path, timeout string, body []byte) *http.Response {
	t.Helper()
	resp, _ := rawPostErr(t, sock, path, timeout, body)
	return resp
}

func rawPostErr(t *testing.T, sock, path, timeout string, body []byte) (*http.Response, *types.Error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if timeout != "" {
		req.Header.Set(cniapi.HeaderTimeout, timeout)
	}
	return rawDo(t, sock, req)
}

func TestMalformedRequests(t *testing.T) {
	f := &Fake{}
	ts := startServer(t, f, Config{MaxRequestBytes: 4096}, nil)
	noID := request("")
	check := request("x") // CHECK without prevResult
	big := request("x")
	big.NetConf = json.RawMessage(`{"pad":"` + strings.Repeat("x", 5000) + `"}`)
	cases := []struct {
		name, path, timeout string
		body                []byte
		code                uint
		status              int
	}{
		{"not json", cniapi.PathAdd, "", []byte("{nope"), types.ErrDecodingFailure, 400},
		{"no container id", cniapi.PathAdd, "", mustJSON(t, noID), types.ErrInvalidEnvironmentVariables, 400},
		{"check without prevResult", cniapi.PathCheck, "", mustJSON(t, check), types.ErrInvalidNetworkConfig, 400},
		{"too big", cniapi.PathAdd, "", mustJSON(t, big), types.ErrDecodingFailure, 400},
		{"bad timeout", cniapi.PathAdd, "soon", mustJSON(t, request("x")), types.ErrDecodingFailure, 400},
		{"negative timeout", cniapi.PathDel, "-1s", mustJSON(t, request("x")), types.ErrDecodingFailure, 400},
		{"unknown path", "/v2/cni/add", "", mustJSON(t, request("x")), cniapi.CodeProtocol, 404},
		{"gc not json", cniapi.PathGC, "", []byte("[]"), types.ErrDecodingFailure, 400},
		{"status not json", cniapi.PathStatus, "", []byte("x"), types.ErrDecodingFailure, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, e := rawPostErr(t, ts.sock, tc.path, tc.timeout, tc.body)
			if e == nil || e.Code != tc.code || resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d, error %+v; want HTTP %d code %d", resp.StatusCode, e, tc.status, tc.code)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, "http://agent"+cniapi.PathAdd, nil)
	if resp, e := rawDo(t, ts.sock, req); resp.StatusCode != http.StatusMethodNotAllowed || e.Code != cniapi.CodeProtocol {
		t.Fatalf("GET on ADD: HTTP %d %+v", resp.StatusCode, e)
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("handler called %d times for malformed requests", n)
	}
}

func TestVersion(t *testing.T) {
	ts := startServer(t, &Fake{}, Config{AgentVersion: "v9.9.9"}, nil)
	v, err := client(t, ts.sock).Version(testCtx(t))
	if err != nil || v.Agent != "v9.9.9" || len(v.APIVersions) != 1 || v.APIVersions[0] != cniapi.APIVersion {
		t.Fatalf("version %+v, %v", v, err)
	}
}

func TestShutdownLetsRunningRequestsFinish(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		close(entered)
		<-release
		return FakeResult(req.IfName, req.Netns, 1), nil
	}}
	ts := startServer(t, f, Config{ShutdownGrace: time.Hour}, nil)
	c := client(t, ts.sock)
	res := make(chan error, 1)
	ctx := testCtx(t)
	go func() { _, err := c.Add(ctx, request("s")); res <- err }()
	<-entered
	ts.cancel()
	// Serve must not return while the request runs.
	select {
	case <-ts.finished:
		t.Fatalf("Serve returned (%v) with a request in flight", ts.err)
	default:
	}
	close(release)
	if err := recv(t, res, "in-flight ADD"); err != nil {
		t.Fatalf("in-flight ADD during shutdown: %v", err)
	}
	if err := ts.wait(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ts.sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after shutdown: %v", err)
	}
	_, err := c.Add(testCtx(t), request("s2"))
	if got := cniCode(t, err); got != types.ErrTryAgainLater {
		t.Fatalf("ADD after shutdown: code %d: %v", got, err)
	}
}

func TestShutdownCancelsRequestsAfterGrace(t *testing.T) {
	entered := make(chan struct{})
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	ts := startServer(t, f, Config{ShutdownGrace: time.Millisecond}, nil)
	c := client(t, ts.sock)
	res := make(chan error, 1)
	ctx := testCtx(t)
	go func() { _, err := c.Add(ctx, request("s")); res <- err }()
	<-entered
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}
	// The handler saw its context cancelled; the plugin gets "try again".
	err := recv(t, res, "cancelled ADD")
	if got := cniCode(t, err); got != types.ErrTryAgainLater {
		t.Fatalf("code %d: %v", got, err)
	}
}

// logEvents is a slog.Handler that reports each record's message on a
// channel, so tests can wait for what the server logs.
type logEvents chan string

func (l logEvents) Enabled(context.Context, slog.Level) bool { return true }
func (l logEvents) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default:
	}
	return nil
}
func (l logEvents) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logEvents) WithGroup(string) slog.Handler      { return l }

func TestRunListensOnConfiguredSocket(t *testing.T) {
	sock := socketPath(t)
	events := make(logEvents, 16)
	srv := New(Config{SocketPath: sock}, &Fake{}, slog.New(events))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	for msg := ""; msg != "serving CNI API"; {
		select {
		case msg = <-events:
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(testWait):
			t.Fatal("Run never started serving")
		}
	}
	if _, err := client(t, sock).Version(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Run returned: %v", err)
	}
}

func TestOddHandlerReturnsAreInternalErrors(t *testing.T) {
	var typedNil *types.Error
	cases := map[string]func(context.Context, *cniapi.Request) (*current.Result, error){
		"nil result": func(context.Context, *cniapi.Request) (*current.Result, error) { return nil, nil },
		"typed nil error": func(context.Context, *cniapi.Request) (*current.Result, error) {
			return nil, typedNil
		},
		"wrong version": func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
			r := FakeResult(req.IfName, req.Netns, 1)
			r.CNIVersion = "0.4.0"
			return r, nil
		},
	}
	for name, add := range cases {
		t.Run(name, func(t *testing.T) {
			ts := startServer(t, &Fake{AddFunc: add}, Config{}, nil)
			_, err := client(t, ts.sock).Add(testCtx(t), request("n"))
			if got := cniCode(t, err); got != cniapi.CodeAgentInternal {
				t.Fatalf("code %d: %v", got, err)
			}
		})
	}
}

// BenchmarkDialAndCall is what one plugin run costs on the wire: a new
// connection and one STATUS call.
func BenchmarkDialAndCall(b *testing.B) {
	dir, err := os.MkdirTemp("", "ovsnet-cni-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := Listen(filepath.Join(dir, "cni.sock"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Config{}, &Fake{}, nil).Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-done
	}()
	req := &cniapi.StatusRequest{CNIVersion: "1.1.0", Network: "ovsnet"}
	for b.Loop() {
		c := cniapi.NewClient(filepath.Join(dir, "cni.sock"))
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.Status(cctx, req); err != nil {
			b.Fatal(err)
		}
		ccancel()
		c.Close()
	}
}

func TestClientGoneCancelsHandler(t *testing.T) {
	entered := make(chan struct{})
	cancelled := make(chan error, 1)
	f := &Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		close(entered)
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
		case <-time.After(testWait):
			cancelled <- errors.New("handler context outlived its client")
		}
		return nil, ctx.Err()
	}}
	ts := startServer(t, f, Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c := client(t, ts.sock)
	done := make(chan error, 1)
	go func() { _, err := c.Add(ctx, request("gone")); done <- err }()
	<-entered
	cancel() // the runtime killed the plugin
	if err := recv(t, cancelled, "handler cancellation"); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler context ended with %v, want context.Canceled", err)
	}
	<-done
}

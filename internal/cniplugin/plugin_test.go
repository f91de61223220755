package cniplugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/testenv"
)

func TestVersionReportsSupportedVersions(t *testing.T) {
	info, err := newCNI(t).GetVersionInfo(testCtx(t), "ovsnet")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
	if got := info.SupportedVersions(); !slices.Equal(got, want) {
		t.Fatalf("VERSION reports %v, want %v", got, want)
	}
}

// TestLifecycleThroughLibcni drives ADD, CHECK, DEL, GC and STATUS through
// libcni, as container runtimes do, for each CNI version.
func TestLifecycleThroughLibcni(t *testing.T) {
	for _, version := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(version, func(t *testing.T) {
			f := &cniserver.Fake{}
			a := startAgent(t, f)
			cni := newCNI(t)
			list := confList(t, netconf(t, "ovsnet-test", version, a.sock, nil))
			rt := runtimeConf("c1")
			ctx := testCtx(t)

			res, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != version {
				t.Fatalf("ADD result in version %s, want %s", res.Version(), version)
			}
			cur, err := current.GetResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(cur.IPs) != 1 || cur.IPs[0].Address.String() != "10.244.0.3/24" || cur.IPs[0].Gateway.String() != "10.244.0.1" {
				t.Fatalf("ADD result %+v", cur)
			}

			add := f.Calls()[0].Request
			wantPod := cniapi.PodRef{Namespace: "default", Name: "web-c1", UID: "uid-c1", InfraContainerID: "c1"}
			if add.ContainerID != "c1" || add.Netns != rt.NetNS || add.IfName != "eth0" || add.Pod != wantPod ||
				add.Args["IgnoreUnknown"] != "1" || add.CNIVersion != version || add.Network != "ovsnet-test" {
				t.Fatalf("agent got ADD %+v", add)
			}
			if !strings.Contains(string(add.RuntimeConfig), `"hostPort":8080`) || !strings.Contains(string(add.NetConf), `"agentSocket"`) {
				t.Fatalf("runtimeConfig %s / netconf %s not passed through", add.RuntimeConfig, add.NetConf)
			}

			err = cni.CheckNetworkList(ctx, list, rt)
			if version < "0.4.0" {
				if err == nil {
					t.Fatal("CHECK accepted for a version without CHECK")
				}
			} else {
				if err != nil {
					t.Fatalf("CHECK: %v", err)
				}
				check := f.Calls()[1]
				if check.Verb != cniapi.VerbCheck || check.Request.PrevResult == nil ||
					check.Request.PrevResult.CNIVersion != cniapi.CurrentCNIVersion ||
					check.Request.PrevResult.IPs[0].Address.String() != "10.244.0.3/24" {
					t.Fatalf("agent got CHECK %+v", check.Request)
				}
			}

			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			calls := f.Calls()
			del := calls[len(calls)-1]
			if del.Verb != cniapi.VerbDel || del.Request.ContainerID != "c1" {
				t.Fatalf("last call %+v, want DEL", del)
			}

			keep := []types.GCAttachment{{ContainerID: "other", IfName: "eth0"}}
			if err := cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: keep}); err != nil {
				t.Fatalf("GC: %v", err)
			}
			if err := cni.GetStatusNetworkList(ctx, list); err != nil {
				t.Fatalf("STATUS: %v", err)
			}
			calls = f.Calls()
			if version == "1.1.0" {
				verbs := []cniapi.Verb{calls[len(calls)-2].Verb, calls[len(calls)-1].Verb}
				if !slices.Equal(verbs, []cniapi.Verb{cniapi.VerbGC, cniapi.VerbStatus}) {
					t.Fatalf("last calls %v, want GC, STATUS", verbs)
				}
				gc := calls[len(calls)-2].GC
				if !slices.Equal(gc.ValidAttachments, keep) || gc.Network != "ovsnet-test" {
					t.Fatalf("agent got GC %+v", gc)
				}
			} else if calls[len(calls)-1].Verb != cniapi.VerbDel {
				t.Fatalf("GC/STATUS reached the agent for version %s: %+v", version, calls[len(calls)-1])
			}
		})
	}
}

// TestResultPrintedInRequestedVersion checks the plugin's stdout itself.
func TestResultPrintedInRequestedVersion(t *testing.T) {
	a := startAgent(t, &cniserver.Fake{})
	for _, version := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		r := execPlugin(t, addEnv("v"+strings.ReplaceAll(version, ".", "")), pluginConf(version, a.sock, nil))
		if r.err != nil {
			t.Fatalf("%s: %+v", version, r.err)
		}
		var out struct {
			CNIVersion string `json:"cniVersion"`
			IPs        []struct {
				Version string `json:"version"`
				Address string `json:"address"`
			} `json:"ips"`
		}
		if err := json.Unmarshal(r.stdout, &out); err != nil {
			t.Fatalf("%s: stdout %q: %v", version, r.stdout, err)
		}
		// 0.3.x and 0.4.0 results carry an IP "version" field, 1.x not.
		wantIPVersion := ""
		if version < "1.0.0" {
			wantIPVersion = "4"
		}
		if out.CNIVersion != version || len(out.IPs) != 1 || out.IPs[0].Version != wantIPVersion || out.IPs[0].Address == "" {
			t.Fatalf("%s: printed %s", version, r.stdout)
		}
	}
}

func TestAgentDown(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "cni.sock") // nobody listens
	conf := pluginConf("1.1.0", sock, nil)
	for _, tc := range []struct {
		verb string
		code uint
	}{
		{"ADD", types.ErrTryAgainLater},
		{"DEL", types.ErrTryAgainLater},
		{"CHECK", types.ErrTryAgainLater},
		{"GC", types.ErrTryAgainLater},
		{"STATUS", types.ErrPluginNotAvailable},
	} {
		stdin := conf
		if tc.verb == "CHECK" {
			stdin = pluginConf("1.1.0", sock, map[string]any{"prevResult": cniserver.FakeResult("eth0", "/x", 1)})
		}
		r := execPlugin(t, withEnv(addEnv("down"), "CNI_COMMAND", tc.verb), stdin)
		if r.err == nil || r.err.Code != tc.code || r.exited == 0 {
			t.Errorf("%s with the agent down: exit %d, error %+v; want code %d", tc.verb, r.exited, r.err, tc.code)
			continue
		}
		if !strings.Contains(r.err.Msg+r.err.Details, sock) {
			t.Errorf("%s: error %+v does not name the socket", tc.verb, r.err)
		}
	}
}

func TestAgentNotReady(t *testing.T) {
	f := &cniserver.Fake{
		AddFunc: func(context.Context, *cniapi.Request) (*current.Result, error) {
			return nil, cniserver.NotReady("waiting for bridge br-int")
		},
		StatusFunc: func(context.Context) error { return cniserver.NotReady("waiting for bridge br-int") },
	}
	a := startAgent(t, f)
	cni := newCNI(t)
	list := confList(t, netconf(t, "ovsnet-test", "1.1.0", a.sock, nil))
	_, err := cni.AddNetworkList(testCtx(t), list, runtimeConf("nr"))
	if e := cniError(t, err); e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "br-int") {
		t.Fatalf("ADD while not ready: %+v", e)
	}
	err = cni.GetStatusNetworkList(testCtx(t), list)
	if e := cniError(t, err); e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, "br-int") {
		t.Fatalf("STATUS while not ready: %+v", e)
	}
}

func TestAgentErrorsPassThrough(t *testing.T) {
	f := &cniserver.Fake{
		AddFunc: func(context.Context, *cniapi.Request) (*current.Result, error) {
			return nil, types.NewError(types.ErrInvalidNetNS, "netns /x is gone", "the sandbox was deleted")
		},
		DelFunc: func(context.Context, *cniapi.Request) error {
			return types.NewError(120, "port cleanup failed", "ovs-vswitchd refused")
		},
		CheckFunc: func(context.Context, *cniapi.Request) error {
			return fmt.Errorf("flows missing")
		},
		GCFunc: func(context.Context, *cniapi.GCRequest) error {
			return types.NewError(types.ErrLimitedConnectivity, "gc partial", "")
		},
	}
	a := startAgent(t, f)
	cni := newCNI(t)
	list := confList(t, netconf(t, "ovsnet-test", "1.1.0", a.sock, nil))
	ctx := testCtx(t)
	_, err := cni.AddNetworkList(ctx, list, runtimeConf("e"))
	if e := cniError(t, err); e.Code != types.ErrInvalidNetNS || e.Msg != "netns /x is gone" || e.Details != "the sandbox was deleted" {
		t.Errorf("ADD: %+v", e)
	}
	if e := cniError(t, cni.DelNetworkList(ctx, list, runtimeConf("e"))); e.Code != 120 || e.Msg != "port cleanup failed" {
		t.Errorf("DEL: %+v", e)
	}
	r := execPlugin(t, withEnv(addEnv("e"), "CNI_COMMAND", "CHECK"),
		pluginConf("1.1.0", a.sock, map[string]any{"prevResult": cniserver.FakeResult("eth0", "/x", 1)}))
	if r.err == nil || r.err.Code != cniapi.CodeAgentInternal || !strings.Contains(r.err.Msg, "flows missing") {
		t.Errorf("CHECK: %+v", r.err)
	}
	if e := cniError(t, cni.GCNetworkList(ctx, list, &libcni.GCArgs{})); e.Code != types.ErrLimitedConnectivity {
		t.Errorf("GC: %+v", e)
	}
}

func TestInvalidInput(t *testing.T) {
	a := startAgent(t, &cniserver.Fake{})
	good := addEnv("bad")
	cases := []struct {
		name  string
		env   map[string]string
		stdin []byte
		code  uint
	}{
		// Network configuration: code 7.
		{"wrong type", good, pluginConf("1.1.0", a.sock, map[string]any{"type": "bridge"}), types.ErrInvalidNetworkConfig},
		{"relative agentSocket", good, pluginConf("1.1.0", "run/cni.sock", nil), types.ErrInvalidNetworkConfig},
		{"agentSocket not a string", good, pluginConf("1.1.0", a.sock, map[string]any{"agentSocket": 5}), types.ErrInvalidNetworkConfig},
		{"agentSocket too long", good, pluginConf("1.1.0", "/"+strings.Repeat("s", 120), nil), types.ErrInvalidNetworkConfig},
		{"timeout negative", good, pluginConf("1.1.0", a.sock, map[string]any{"timeoutSeconds": -1}), types.ErrInvalidNetworkConfig},
		{"timeout fractional", good, pluginConf("1.1.0", a.sock, map[string]any{"timeoutSeconds": 1.5}), types.ErrInvalidNetworkConfig},
		{"runtimeConfig not object", good, pluginConf("1.1.0", a.sock, map[string]any{"runtimeConfig": []int{1}}), types.ErrInvalidNetworkConfig},
		{"prevResult garbage", good, pluginConf("1.1.0", a.sock, map[string]any{"prevResult": map[string]any{"ips": "no"}}), types.ErrInvalidNetworkConfig},
		{"missing name", good, pluginConf("1.1.0", a.sock, map[string]any{"name": nil}), types.ErrInvalidNetworkConfig},
		{"bad name", good, pluginConf("1.1.0", a.sock, map[string]any{"name": "a b"}), types.ErrInvalidNetworkConfig},
		// Undecodable: code 6.
		{"not json", good, []byte("cniVersion: 1.1.0"), types.ErrDecodingFailure},
		{"json array", good, []byte(`[1,2]`), types.ErrDecodingFailure},
		{"empty stdin", good, nil, types.ErrDecodingFailure},
		{"name not string", good, pluginConf("1.1.0", a.sock, map[string]any{"name": 7}), types.ErrDecodingFailure},
		// Version: code 1.
		{"old version", good, pluginConf("0.2.0", a.sock, nil), types.ErrIncompatibleCNIVersion},
		{"no version", good, pluginConf("1.1.0", a.sock, map[string]any{"cniVersion": nil}), types.ErrIncompatibleCNIVersion},
		// Environment: code 4.
		{"no container id", withEnv(good, "CNI_CONTAINERID", "<unset>"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"bad container id", withEnv(good, "CNI_CONTAINERID", "a/b"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"ifname too long", withEnv(good, "CNI_IFNAME", "eth0123456789012"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"ifname with slash", withEnv(good, "CNI_IFNAME", "e/0"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"no ifname", withEnv(good, "CNI_IFNAME", "<unset>"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"relative netns", withEnv(good, "CNI_NETNS", "netns/x"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"no netns on ADD", withEnv(good, "CNI_NETNS", "<unset>"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"relative netns on DEL", withEnv(good, "CNI_COMMAND", "DEL", "CNI_NETNS", "x"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"bad CNI_ARGS", withEnv(good, "CNI_ARGS", "K8S_POD_NAME"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"unknown command", withEnv(good, "CNI_COMMAND", "FROB"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		{"no CNI_PATH", withEnv(good, "CNI_PATH", ""), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidEnvironmentVariables},
		// CHECK without the result it should check.
		{"check without prevResult", withEnv(good, "CNI_COMMAND", "CHECK"), pluginConf("1.1.0", a.sock, nil), types.ErrInvalidNetworkConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := execPlugin(t, tc.env, tc.stdin)
			if r.err == nil || r.exited == 0 {
				t.Fatalf("succeeded (exit %d, stdout %s)", r.exited, r.stdout)
			}
			if r.err.Code != tc.code {
				t.Fatalf("code %d (%s), want %d", r.err.Code, r.err.Error(), tc.code)
			}
		})
	}
	if n := len(a.fake.Calls()); n != 0 {
		t.Fatalf("invalid requests reached the agent %d times: %+v", n, a.fake.Calls())
	}
}

func TestDelWithoutNetnsIsForwarded(t *testing.T) {
	f := &cniserver.Fake{}
	a := startAgent(t, f)
	r := execPlugin(t, withEnv(addEnv("gone"), "CNI_COMMAND", "DEL", "CNI_NETNS", "<unset>"), pluginConf("1.0.0", a.sock, nil))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if c := f.Calls(); len(c) != 1 || c[0].Verb != cniapi.VerbDel || c[0].Request.Netns != "" {
		t.Fatalf("calls %+v", c)
	}
}

func TestAddDeadlineIsPropagated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  map[string]any
		budget time.Duration
	}{
		{"default", nil, 2 * time.Minute},
		{"timeoutSeconds", map[string]any{"timeoutSeconds": 300}, 300 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &cniserver.Fake{}
			a := startAgent(t, f)
			before := time.Now()
			if r := execPlugin(t, addEnv("dl"), pluginConf("1.1.0", a.sock, tc.extra)); r.err != nil {
				t.Fatal(r.err)
			}
			after := time.Now()
			dl := f.Calls()[0].Deadline
			agentBudget := cniapi.AgentBudget(tc.budget)
			lo, hi := before.Add(agentBudget-time.Millisecond), after.Add(agentBudget+time.Millisecond)
			if dl.Before(lo) || dl.After(hi) {
				t.Fatalf("agent deadline %v, want within [%v, %v]", dl.Format(time.RFC3339Nano), lo.Format(time.RFC3339Nano), hi.Format(time.RFC3339Nano))
			}
		})
	}
}

func TestAddDeadlineExpiresInTheAgent(t *testing.T) {
	f := &cniserver.Fake{AddFunc: func(ctx context.Context, _ *cniapi.Request) (*current.Result, error) {
		<-ctx.Done() // e.g. a port that never comes up
		return nil, fmt.Errorf("wait for port of eth0: %w", ctx.Err())
	}}
	a := startAgent(t, f)
	r := execPlugin(t, addEnv("slow"), pluginConf("1.1.0", a.sock, map[string]any{"timeoutSeconds": 1}))
	// The agent's budget ends before the plugin's, so its own message
	// (what it waited for) reaches the runtime.
	if r.err == nil || r.err.Code != types.ErrTryAgainLater || !strings.Contains(r.err.Error(), "wait for port of eth0") {
		t.Fatalf("%+v", r.err)
	}
}

// TestConcurrentAddsRunInParallel runs 30 plugin processes at once for 30
// containers. The agent's handler lets no ADD finish until all 30 are inside
// it together, so the test can only pass if none waited for another.
func TestConcurrentAddsRunInParallel(t *testing.T) {
	const n = 30
	var mu sync.Mutex
	inside := 0
	all := make(chan struct{})
	f := &cniserver.Fake{AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
		mu.Lock()
		inside++
		if inside == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			mu.Lock()
			got := inside
			mu.Unlock()
			return nil, fmt.Errorf("only %d of %d ADDs arrived together: %w", got, n, ctx.Err())
		}
		var idx int
		_, _ = fmt.Sscanf(req.ContainerID, "par%d", &idx)
		return cniserver.FakeResult(req.IfName, req.Netns, idx), nil
	}}
	a := startAgent(t, f)
	cni := newCNI(t)
	list := confList(t, netconf(t, "ovsnet-test", "1.1.0", a.sock, map[string]any{"timeoutSeconds": 50}))
	ctx := testCtx(t)
	type out struct {
		ip  string
		err error
	}
	results := make(chan out, n)
	for i := range n {
		go func() {
			res, err := cni.AddNetworkList(ctx, list, runtimeConf(fmt.Sprintf("par%d", i)))
			if err != nil {
				results <- out{err: err}
				return
			}
			cur, err := current.GetResult(res)
			if err != nil {
				results <- out{err: err}
				return
			}
			results <- out{ip: cur.IPs[0].Address.IP.String()}
		}()
	}
	seen := map[string]bool{}
	for range n {
		select {
		case o := <-results:
			if o.err != nil {
				t.Fatal(o.err)
			}
			if seen[o.ip] {
				t.Fatalf("address %s returned twice", o.ip)
			}
			seen[o.ip] = true
		case <-ctx.Done():
			t.Fatal("ADDs did not finish")
		}
	}
}

// TestSameContainerNeverOverlaps sends several plugin processes for one
// container at once. The first handler call holds until every process has
// connected to the agent, giving the others every chance to overlap with it
// were the agent not serialising them.
func TestSameContainerNeverOverlaps(t *testing.T) {
	const n = 6
	var active, overlaps, calls atomic.Int32
	var a *agent
	enter := func(ctx context.Context) error {
		if active.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer active.Add(-1)
		if calls.Add(1) == 1 {
			for range n {
				select {
				case <-a.accepted:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	}
	f := &cniserver.Fake{
		AddFunc: func(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
			if err := enter(ctx); err != nil {
				return nil, err
			}
			return cniserver.FakeResult(req.IfName, req.Netns, 1), nil
		},
		DelFunc: func(ctx context.Context, _ *cniapi.Request) error { return enter(ctx) },
	}
	a = startAgent(t, f)
	conf := pluginConf("1.1.0", a.sock, nil)
	bin := binDir(t)
	ctx := testCtx(t)
	errs := make(chan error, n)
	for i := range n {
		verb := "ADD"
		if i%2 == 1 {
			verb = "DEL"
		}
		go func() {
			r, err := runPlugin(ctx, bin, withEnv(addEnv("same"), "CNI_COMMAND", verb), conf)
			if err == nil && r.err != nil {
				err = r.err
			}
			errs <- err
		}()
	}
	for range n {
		if err := recvErr(t, errs, "plugin processes"); err != nil {
			t.Fatal(err)
		}
	}
	if o := overlaps.Load(); o != 0 {
		t.Fatalf("%d handler calls for one container overlapped", o)
	}
	if c := calls.Load(); c != n {
		t.Fatalf("%d handler calls, want %d", c, n)
	}
}

// TestCnitool drives the plugin with the reference CNI tool. cnitool keeps
// libcni's result cache in /var/lib/cni (root only); the test removes its
// entries again.
func TestCnitool(t *testing.T) {
	testenv.RequireRoot(t)
	f := &cniserver.Fake{}
	a := startAgent(t, f)
	netDir := t.TempDir()
	name := fmt.Sprintf("cni-ovsnet-test-%d", os.Getpid())
	if err := os.WriteFile(filepath.Join(netDir, "10-ovsnet.conflist"), netconf(t, name, "1.1.0", a.sock, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		matches, _ := filepath.Glob(filepath.Join(libcni.CacheDir, "results", name+"-*"))
		for _, m := range matches {
			_ = os.Remove(m)
		}
	})
	netns := "/var/run/netns/cni-fake-" + name // cnitool only passes the path on
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(testCtx(t), filepath.Join(binDir(t), "cnitool"), args...)
		cmd.Env = append(os.Environ(), "CNI_PATH="+binDir(t), "NETCONFPATH="+netDir,
			"CNI_ARGS=K8S_POD_NAMESPACE=default;K8S_POD_NAME=tool")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("add", name, netns)
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	var res current.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.CNIVersion != "1.1.0" || len(res.IPs) != 1 {
		t.Fatalf("cnitool add printed %q (%v)", out, err)
	}
	for _, verb := range []string{"check", "status", "gc", "del"} {
		if out, err := run(verb, name, netns); err != nil {
			t.Fatalf("cnitool %s: %v\n%s", verb, err, out)
		}
	}
	var verbs []cniapi.Verb
	for _, c := range f.Calls() {
		verbs = append(verbs, c.Verb)
	}
	// gc first deletes the attachments libcni cached and not declared valid
	// (cnitool declares none), then asks the plugin to GC; del then finds
	// nothing left and still reaches the plugin.
	want := []cniapi.Verb{cniapi.VerbAdd, cniapi.VerbCheck, cniapi.VerbStatus, cniapi.VerbDel, cniapi.VerbGC, cniapi.VerbDel}
	if !slices.Equal(verbs, want) {
		t.Fatalf("agent saw %v, want %v", verbs, want)
	}
	add := f.Calls()[0].Request
	if add.Netns != netns || add.Pod.Name != "tool" {
		t.Fatalf("ADD via cnitool: %+v", add)
	}
	if gc := f.Calls()[4].GC; gc.ValidAttachments == nil || len(gc.ValidAttachments) != 0 {
		t.Fatalf("GC via cnitool should carry an empty valid list, got %#v", gc.ValidAttachments)
	}

	// cnitool against a stopped agent: code 11 surfaces in its error.
	down := filepath.Join(shortTempDir(t), "none.sock")
	if err := os.WriteFile(filepath.Join(netDir, "10-ovsnet.conflist"), netconf(t, name, "1.1.0", down, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("add", name, netns)
	if err == nil || !strings.Contains(out, "cannot reach the ovsnet agent") {
		t.Fatalf("cnitool add with the agent down: %v\n%s", err, out)
	}
}

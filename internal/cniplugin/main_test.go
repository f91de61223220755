package cniplugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ovsnet/ovsnet/internal/cniserver"
)

// testWait bounds every wait; reaching it is a failure, not a measurement.
const testWait = 60 * time.Second

// binaries holds the plugin and cnitool, built once per test run (building
// takes seconds; each test gets its own agent, socket and configuration).
var binaries struct {
	once    sync.Once
	dir     string
	err     error
	cleanup func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.cleanup != nil {
		binaries.cleanup()
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(build.Default.GOROOT, "bin", "go")
}

// binDir returns the directory holding the built "ovsnet" plugin and
// "cnitool" (the CNI_PATH of the tests).
func binDir(t *testing.T) string {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "ovsnet-cni-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		binaries.cleanup = func() { _ = os.RemoveAll(dir) }
		for name, pkg := range map[string]string{
			"ovsnet":  "github.com/ovsnet/ovsnet/cmd/ovsnet",
			"cnitool": "github.com/containernetworking/cni/cnitool",
		} {
			cmd := exec.Command(goTool(), "build", "-o", filepath.Join(dir, name), pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.dir
}

// agent is a cniserver with a fake handler on a temporary socket.
type agent struct {
	sock string
	fake *cniserver.Fake
	// accepted receives one value per connection the agent accepts.
	accepted chan struct{}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ovsnet-cni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func startAgent(t *testing.T, fake *cniserver.Fake) *agent {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "cni.sock")
	ln, err := cniserver.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{sock: sock, fake: fake, accepted: make(chan struct{}, 1024)}
	srv := cniserver.New(cniserver.Config{SocketPath: sock}, fake, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, &countingListener{Listener: ln, accepted: a.accepted}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(testWait):
			t.Error("agent did not stop")
		}
	})
	return a
}

type countingListener struct {
	net.Listener
	accepted chan struct{}
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- struct{}{}:
		default:
		}
	}
	return c, err
}

// netconf returns a single-plugin configuration list for the ovsnet plugin.
func netconf(t *testing.T, name, version, sock string, extra map[string]any) []byte {
	t.Helper()
	plugin := map[string]any{"type": "ovsnet", "agentSocket": sock, "capabilities": map[string]bool{"portMappings": true}}
	for k, v := range extra {
		plugin[k] = v
	}
	b, err := json.Marshal(map[string]any{"cniVersion": version, "name": name, "plugins": []any{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func confList(t *testing.T, raw []byte) *libcni.NetworkConfigList {
	t.Helper()
	l, err := libcni.NetworkConfFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// newCNI returns a libcni client for the built plugin. The exec is given
// explicitly: libcni creates a missing one lazily without locking, which races
// when one CNIConfig is used from several goroutines.
func newCNI(t *testing.T) *libcni.CNIConfig {
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return libcni.NewCNIConfigWithCacheDir([]string{binDir(t)}, t.TempDir(), exec)
}

func runtimeConf(id string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: id,
		NetNS:       "/var/run/netns/cni-fake-" + id,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "default"},
			{"K8S_POD_NAME", "web-" + id},
			{"K8S_POD_INFRA_CONTAINER_ID", id},
			{"K8S_POD_UID", "uid-" + id},
		},
		CapabilityArgs: map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}},
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

func cniError(t *testing.T, err error) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v (%T) is not a CNI error", err, err)
	}
	return e
}

// execResult is what running the plugin binary directly produced.
type execResult struct {
	stdout []byte
	err    *types.Error // decoded from stdout when the plugin failed
	exited int
}

// execPlugin runs the plugin with exactly env (plus CNI_PATH) and stdin.
func execPlugin(t *testing.T, env map[string]string, stdin []byte) execResult {
	t.Helper()
	r, err := runPlugin(testCtx(t), binDir(t), env, stdin)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runPlugin is execPlugin for goroutines: it reports instead of failing.
func runPlugin(ctx context.Context, bin string, env map[string]string, stdin []byte) (execResult, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "ovsnet"))
	cmd.Env = []string{"CNI_PATH=" + bin}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	res := execResult{stdout: stdout.Bytes()}
	var exitErr *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exitErr):
		res.exited = exitErr.ExitCode()
		var e types.Error
		if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
			return res, fmt.Errorf("plugin failed (%v) without a CNI error on stdout: %q, stderr %q", runErr, stdout.String(), stderr.String())
		}
		res.err = &e
	default:
		return res, fmt.Errorf("run plugin: %w", runErr)
	}
	return res, nil
}

// pluginConf is a single plugin configuration (what a runtime passes on
// stdin).
func pluginConf(version, sock string, extra map[string]any) []byte {
	m := map[string]any{"cniVersion": version, "name": "ovsnet-test", "type": "ovsnet", "agentSocket": sock}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func addEnv(id string) map[string]string {
	return map[string]string{
		"CNI_COMMAND":     "ADD",
		"CNI_CONTAINERID": id,
		"CNI_NETNS":       "/var/run/netns/cni-fake-" + id,
		"CNI_IFNAME":      "eth0",
		"CNI_ARGS":        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p-" + id,
	}
}

func withEnv(base map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(base))
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func recvErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(testWait):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// Package cnitest drives the real ovsnet CNI plugin the way a container
// runtime does (libcni exec'ing the binary), with pods as network
// namespaces. Tests, the demo and the benchmarks share it.
package cnitest

import (
	"context"
	"encoding/json"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// BuildPlugin builds cmd/ovsnet into dir/ovsnet.
func BuildPlugin(ctx context.Context, dir string) error {
	gobin := "go"
	if _, err := exec.LookPath(gobin); err != nil {
		gobin = filepath.Join(build.Default.GOROOT, "bin", "go")
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", filepath.Join(dir, "ovsnet"), "github.com/ovsnet/ovsnet/cmd/ovsnet")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build cmd/ovsnet: %v\n%s", err, out)
	}
	return nil
}

// Runtime is a minimal container runtime's CNI side.
type Runtime struct {
	cni  *libcni.CNIConfig
	conf *libcni.NetworkConfigList
}

// NewRuntime uses the plugin in binDir with a conflist for agentSocket.
// cacheDir keeps libcni's result cache out of /var/lib/cni.
func NewRuntime(binDir, cacheDir, agentSocket string, cniVersion string) (*Runtime, error) {
	if cniVersion == "" {
		cniVersion = "1.1.0"
	}
	raw, err := json.Marshal(map[string]any{
		"cniVersion": cniVersion,
		"name":       "ovsnet",
		"plugins":    []any{map[string]any{"type": "ovsnet", "agentSocket": agentSocket}},
	})
	if err != nil {
		return nil, err
	}
	confList, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("conflist: %w", err)
	}
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return &Runtime{cni: libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, exec), conf: confList}, nil
}

// Pod is one sandbox.
type Pod struct {
	Name, Namespace, ContainerID, Netns, IfName string
}

func (p Pod) rt() *libcni.RuntimeConf {
	ifName := p.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID, NetNS: p.Netns, IfName: ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
}

// Add runs CNI ADD and returns the result in the current version.
func (r *Runtime) Add(ctx context.Context, p Pod) (*current.Result, error) {
	res, err := r.cni.AddNetworkList(ctx, r.conf, p.rt())
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

// Del runs CNI DEL.
func (r *Runtime) Del(ctx context.Context, p Pod) error {
	return r.cni.DelNetworkList(ctx, r.conf, p.rt())
}

// Check runs CNI CHECK.
func (r *Runtime) Check(ctx context.Context, p Pod) error {
	return r.cni.CheckNetworkList(ctx, r.conf, p.rt())
}

// GC runs CNI GC keeping only the given pods.
func (r *Runtime) GC(ctx context.Context, keep ...Pod) error {
	var valid []types.GCAttachment
	for _, p := range keep {
		valid = append(valid, types.GCAttachment{ContainerID: p.ContainerID, IfName: p.rt().IfName})
	}
	return r.cni.GCNetworkList(ctx, r.conf, &libcni.GCArgs{ValidAttachments: valid})
}

// Status runs CNI STATUS.
func (r *Runtime) Status(ctx context.Context) error { return r.cni.GetStatusNetworkList(ctx, r.conf) }

var nsSeq atomic.Uint64

// Netns is a network namespace standing in for a pod sandbox.
type Netns struct {
	Name string
	Path string
}

// NewNetns creates a namespace named <prefix><pid>-<n>.
func NewNetns(ctx context.Context, prefix string) (*Netns, error) {
	name := prefix + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(nsSeq.Add(1), 10)
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	return &Netns{Name: name, Path: "/run/netns/" + name}, nil
}

// Delete removes the namespace (and the pod end of any veth in it).
func (n *Netns) Delete() error {
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
	return nil
}

// Exec runs a command inside the namespace.
func (n *Netns) Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...).CombinedOutput()
	return string(out), err
}

var buildOnce struct {
	sync.Once
	dir string
	err error
}

// RemoveSharedPluginDir deletes what SharedPluginDir built; call it from
// TestMain after the tests ran.
func RemoveSharedPluginDir() {
	if buildOnce.dir != "" {
		_ = os.RemoveAll(buildOnce.dir)
	}
}

// SharedPluginDir builds the plugin once per process into a temporary
// directory and returns it; RemoveSharedPluginDir deletes it.
func SharedPluginDir(ctx context.Context) (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ovsnet-plugin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.dir, buildOnce.err = dir, BuildPlugin(ctx, dir)
	})
	return buildOnce.dir, buildOnce.err
}

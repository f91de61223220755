package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/ovsnet/ovsnet/internal/agentapi"
)

// Ovsnet is the node side of ovsnet in the e2e cluster: the agent (a host
// process, as the DaemonSet's container would be), its OVS and its plugin.
type Ovsnet struct {
	AgentAddr    string
	Bridge       string
	Gateway      string
	OVSDB        string
	StateDir     string
	CNIBinDir    string
	CNIConfDir   string
	AgentPIDFile string
	AgentLog     string
	// StartAgent starts the agent with the flags the cluster started it with.
	StartAgent string
	Ovsnetctl  string
	// Manifest is deploy/ovsnet.yaml as the cluster was started with it.
	Manifest string
	// Deploy is DeployHost (the agent a host process, started by the
	// harness) or DeployDaemonSet (the agent container of the DaemonSet on
	// Node, restarted by its kubelet).
	Deploy string
	Node   Node
	http   *http.Client
}

// How ovsnet runs in the e2e cluster (E2E_OVSNET_DEPLOY).
const (
	DeployHost      = "host"
	DeployDaemonSet = "daemonset"
)

// OvsnetDeploy is how ovsnet runs in the cluster described by the
// environment.
func OvsnetDeploy() string {
	if os.Getenv("OVSNET_DEPLOY") == DeployDaemonSet {
		return DeployDaemonSet
	}
	return DeployHost
}

// AgentOn is the agent of the ovsnet DaemonSet on node n: its API through
// the node's network namespace (the agent has hostNetwork), its OVS and
// state through the node's directories on this machine.
func AgentOn(n Node) (*Ovsnet, error) {
	e, err := env("OVSNET_AGENT_ADDR", "OVSNET_BRIDGE", "OVSNET_GATEWAY", "OVSNET_OVSNETCTL", "OVSNET_MANIFEST")
	if err != nil {
		return nil, err
	}
	if OvsnetDeploy() != DeployDaemonSet {
		return nil, errors.New("ovsnet runs as host processes in this cluster, not as the DaemonSet: use LoadOvsnet")
	}
	return &Ovsnet{
		AgentAddr: e["OVSNET_AGENT_ADDR"], Bridge: e["OVSNET_BRIDGE"], Gateway: e["OVSNET_GATEWAY"],
		OVSDB: "unix:" + n.HostPath("/run/openvswitch/db.sock"), StateDir: n.HostPath("/var/lib/ovsnet"),
		CNIBinDir: n.HostPath("/opt/cni/bin"), CNIConfDir: n.HostPath("/etc/cni/net.d"),
		Ovsnetctl: e["OVSNET_OVSNETCTL"], Manifest: e["OVSNET_MANIFEST"],
		Deploy: DeployDaemonSet, Node: n, http: n.HTTPClient(10 * time.Second),
	}, nil
}

// LoadOvsnet reads the settings e2e/ovsnet/before-kubelet wrote.
func LoadOvsnet() (*Ovsnet, error) {
	e, err := env("OVSNET_AGENT_ADDR", "OVSNET_BRIDGE", "OVSNET_GATEWAY", "OVSNET_OVSDB", "OVSNET_STATE_DIR",
		"OVSNET_CNI_BIN_DIR", "OVSNET_CNI_CONF_DIR", "OVSNET_AGENT_PID_FILE", "OVSNET_AGENT_LOG", "OVSNET_START_AGENT",
		"OVSNET_OVSNETCTL", "OVSNET_MANIFEST")
	if err != nil {
		return nil, err
	}
	return &Ovsnet{
		AgentAddr: e["OVSNET_AGENT_ADDR"], Bridge: e["OVSNET_BRIDGE"], Gateway: e["OVSNET_GATEWAY"],
		OVSDB: e["OVSNET_OVSDB"], StateDir: e["OVSNET_STATE_DIR"], CNIBinDir: e["OVSNET_CNI_BIN_DIR"],
		CNIConfDir: e["OVSNET_CNI_CONF_DIR"], AgentPIDFile: e["OVSNET_AGENT_PID_FILE"], AgentLog: e["OVSNET_AGENT_LOG"],
		StartAgent: e["OVSNET_START_AGENT"], Ovsnetctl: e["OVSNET_OVSNETCTL"], Manifest: e["OVSNET_MANIFEST"],
		Deploy: DeployHost, http: &http.Client{Timeout: 10 * time.Second},
	}, nil
}

// NewAgentClient talks to an agent's operator API at addr (host:port).
func NewAgentClient(addr string) *Ovsnet {
	return &Ovsnet{AgentAddr: addr, http: &http.Client{Timeout: 10 * time.Second}}
}

func (o *Ovsnet) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.AgentAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := o.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("agent API %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("agent API %s: %w", path, err)
	}
	return resp.StatusCode, body, nil
}

func (o *Ovsnet) getJSON(ctx context.Context, path string, v any) error {
	code, body, err := o.get(ctx, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("agent API %s: HTTP %d: %s", path, code, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("agent API %s: %w", path, err)
	}
	return nil
}

// Pods is the agent's /v1/pods: its pod attachments.
func (o *Ovsnet) Pods(ctx context.Context) ([]agentapi.Pod, error) {
	var out []agentapi.Pod
	return out, o.getJSON(ctx, agentapi.PathPods, &out)
}

// Status is the agent's /v1/status.
func (o *Ovsnet) Status(ctx context.Context) (agentapi.Status, error) {
	var out agentapi.Status
	return out, o.getJSON(ctx, agentapi.PathStatus, &out)
}

// Flows is the agent's /v1/flows: the flows of its bridge, with owners.
func (o *Ovsnet) Flows(ctx context.Context) ([]agentapi.Flow, error) {
	var out []agentapi.Flow
	return out, o.getJSON(ctx, agentapi.PathFlows, &out)
}

// Ready asks /readyz; a not-ready agent is an error carrying its reason.
func (o *Ovsnet) Ready(ctx context.Context) error {
	code, body, err := o.get(ctx, "/readyz")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("agent not ready (HTTP %d): %s", code, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitReady waits until /readyz answers 200.
func (o *Ovsnet) WaitReady(ctx context.Context) error {
	return Eventually(ctx, "ovsnet-agent ready", o.Ready)
}

// PodAttachment returns the agent's attachment of a Kubernetes pod.
func (o *Ovsnet) PodAttachment(ctx context.Context, namespace, name string) (agentapi.Pod, bool, error) {
	pods, err := o.Pods(ctx)
	if err != nil {
		return agentapi.Pod{}, false, err
	}
	for _, p := range pods {
		if p.Namespace == namespace && p.Name == name {
			return p, true, nil
		}
	}
	return agentapi.Pod{}, false, nil
}

// AgentPID is the running agent's process id, checked against its command
// line so a recycled PID is never taken for it. The DaemonSet's agent is
// the ovsnet-agent process in its node's network namespace.
func (o *Ovsnet) AgentPID() (int, error) {
	if o.Deploy == DeployDaemonSet {
		return agentInNetns(o.Node)
	}
	b, err := os.ReadFile(o.AgentPIDFile)
	if err != nil {
		return 0, fmt.Errorf("agent PID file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("agent PID file %s: %w", o.AgentPIDFile, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "ovsnet-agent") {
		return 0, fmt.Errorf("process %d of %s is not ovsnet-agent (it exited?)", pid, o.AgentPIDFile)
	}
	return pid, nil
}

// KillAgent kills the agent with SIGKILL, as an OOM kill or a node problem
// would, and returns once the process is gone.
func (o *Ovsnet) KillAgent(ctx context.Context) error {
	pid, err := o.AgentPID()
	if err != nil {
		return err
	}
	// A pidfd reports the exit as an event: no polling of /proc.
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("kill ovsnet-agent (pid %d): %w", pid, err)
	}
	return waitPidfd(ctx, fd)
}

// waitPidfd waits until the process behind fd has exited. The poll is
// bounded to 100 ms slices only to notice ctx ending.
func waitPidfd(ctx context.Context, fd int) error {
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for the process to exit: %w", ctx.Err())
		}
	}
}

// RestartAgent starts the agent again with its recorded flags
// (e2e/ovsnet/start-agent). The DaemonSet's agent container is restarted
// by its kubelet: this waits for the new process instead.
func (o *Ovsnet) RestartAgent(ctx context.Context) error {
	if o.Deploy == DeployDaemonSet {
		return Eventually(ctx, "kubelet to restart the agent container on node "+o.Node.Name, func(context.Context) error {
			_, err := o.AgentPID()
			return err
		})
	}
	out, err := exec.CommandContext(ctx, o.StartAgent).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", o.StartAgent, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// OVSPorts lists the ports of the bridge in the lab's OVS database.
func (o *Ovsnet) OVSPorts(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ovs-vsctl", "--db="+o.OVSDB, "--timeout=10", "list-ports", o.Bridge).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("ovs-vsctl list-ports %s: %w: %s", o.Bridge, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("ovs-vsctl list-ports %s: %w", o.Bridge, err)
	}
	return strings.Fields(string(out)), nil
}

// IPAMAddresses are the addresses allocated in the agent's IPAM state file.
func (o *Ovsnet) IPAMAddresses() ([]netip.Addr, error) {
	b, err := os.ReadFile(filepath.Join(o.StateDir, "ipam-v4.json"))
	if err != nil {
		return nil, fmt.Errorf("IPAM state: %w", err)
	}
	var st struct {
		Allocations []struct {
			IP netip.Addr `json:"ip"`
		} `json:"allocations"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("IPAM state %s: %w", filepath.Join(o.StateDir, "ipam-v4.json"), err)
	}
	out := make([]netip.Addr, 0, len(st.Allocations))
	for _, a := range st.Allocations {
		out = append(out, a.IP)
	}
	return out, nil
}

// CNI is a container runtime's view of the node's network configuration:
// the conflist the cluster installed and its plugins, driven through libcni
// the way containerd drives them.
type CNI struct {
	list   *libcni.NetworkConfigList
	config *libcni.CNIConfig
}

// CNI loads the installed conflist. cacheDir holds libcni's result cache
// (a test's temporary directory: the node's /var/lib/cni is containerd's).
func (o *Ovsnet) CNI(cacheDir string) (*CNI, error) {
	files, err := libcni.ConfFiles(o.CNIConfDir, []string{".conflist"})
	if err != nil || len(files) != 1 {
		return nil, fmt.Errorf("want exactly one conflist in %s, found %v (%v)", o.CNIConfDir, files, err)
	}
	list, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("conflist %s: %w", files[0], err)
	}
	return &CNI{list: list, config: libcni.NewCNIConfigWithCacheDir([]string{o.CNIBinDir}, cacheDir, nil)}, nil
}

// PodSandbox names a sandbox for CNI: its container id, network namespace
// path and the pod it claims to be (CNI_ARGS K8S_POD_*).
type PodSandbox struct {
	ContainerID, Netns      string
	Namespace, Name, PodUID string
}

func (s PodSandbox) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: s.ContainerID, NetNS: s.Netns, IfName: "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", s.Namespace},
			{"K8S_POD_NAME", s.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", s.ContainerID},
			{"K8S_POD_UID", s.PodUID},
		},
	}
}

// Add runs CNI ADD and returns the sandbox's address.
func (c *CNI) Add(ctx context.Context, s PodSandbox) (netip.Addr, error) {
	res, err := c.config.AddNetworkList(ctx, c.list, s.runtimeConf())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("CNI ADD %s: %w", s.ContainerID, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil || len(r.IPs) == 0 {
		return netip.Addr{}, fmt.Errorf("CNI ADD %s: result without an address (%v)", s.ContainerID, err)
	}
	ip, ok := netip.AddrFromSlice(r.IPs[0].Address.IP)
	if !ok {
		return netip.Addr{}, fmt.Errorf("CNI ADD %s: bad address %v", s.ContainerID, r.IPs[0].Address.IP)
	}
	return ip.Unmap(), nil
}

// Del runs CNI DEL.
func (c *CNI) Del(ctx context.Context, s PodSandbox) error {
	if err := c.config.DelNetworkList(ctx, c.list, s.runtimeConf()); err != nil {
		return fmt.Errorf("CNI DEL %s: %w", s.ContainerID, err)
	}
	return nil
}

// agentInNetns finds the one ovsnet-agent process whose network namespace
// is the node's.
func agentInNetns(n Node) (int, error) {
	want, err := os.Readlink("/proc/self/ns/net")
	if n.Netns != "" {
		var st unix.Stat_t
		if err = unix.Stat(n.Netns, &st); err == nil {
			want = fmt.Sprintf("net:[%d]", st.Ino)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("network namespace of node %s: %w", n.Name, err)
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "ovsnet-agent" {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ns == want {
			found = append(found, pid)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return 0, fmt.Errorf("no ovsnet-agent process in the network namespace of node %s", n.Name)
	default:
		return 0, fmt.Errorf("%d ovsnet-agent processes in the network namespace of node %s: %v", len(found), n.Name, found)
	}
}

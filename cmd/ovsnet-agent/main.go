// Command ovsnet-agent is ovsnet's node agent: it owns the OVS integration
// bridge and serves the ovsnet CNI plugin.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ovsnet/ovsnet/internal/agent"
)

// version is what --version prints; image builds set it with
// -ldflags "-X main.version=...", from git describe.
var version = "dev"

func main() {
	if err := command().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "ovsnet-agent:", err)
		os.Exit(1)
	}
}

func command() *cobra.Command {
	cfg := agent.Defaults()
	logLevel, configFile := "info", ""
	cmd := &cobra.Command{
		Use:           "ovsnet-agent",
		Short:         "ovsnet node agent: pod networking through Open vSwitch",
		Version:       version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := agent.ApplyConfigFile(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			a, err := agent.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file whose keys are these flags' names; flags given on the command line win")
	f.StringVar(&cfg.OVSDB, "ovsdb", cfg.OVSDB, "OVSDB endpoint of ovsdb-server (unix:/path or tcp:host:port)")
	f.StringVar(&cfg.OVSRunDir, "ovs-rundir", cfg.OVSRunDir, "directory with ovs-vswitchd's pidfile, control socket and the bridges' OpenFlow mgmt sockets")
	f.StringVar(&cfg.Bridge, "bridge", cfg.Bridge, "integration bridge the agent owns")
	f.StringVar(&cfg.DatapathType, "datapath-type", cfg.DatapathType, "OVS datapath of the bridge: system (kernel module) or netdev (userspace)")
	f.StringVar(&cfg.HealthAddr, "health-addr", cfg.HealthAddr, "address serving /healthz, /readyz, /metrics and the ovsnetctl API")
	f.StringVar(&cfg.PodCIDR, "pod-cidr", cfg.PodCIDR, "the node's pod subnet, e.g. 10.244.0.0/24; its first address is the gateway")
	f.StringVar(&cfg.NodeIP, "node-ip", cfg.NodeIP, "the node's address: SNAT source for pod traffic leaving the cluster (default: masquerade) and tunnel endpoint (default in Kubernetes mode: the Node's InternalIP)")
	f.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory for the agent's persistent state (IPAM)")
	f.StringVar(&cfg.CNISocket, "cni-socket", cfg.CNISocket, "unix socket the ovsnet CNI plugin connects to (created root-only, mode 0600)")
	f.BoolVar(&cfg.AsyncInterfaces, "async-interfaces", cfg.AsyncInterfaces, "CNI ADD declares the OVS port and returns; the interface and its flows follow asynchronously")
	f.IntVar(&cfg.MTU, "mtu", cfg.MTU, "MTU of pod interfaces and the gateway (0: the uplink's MTU minus the traffic mode's overhead)")
	f.StringVar(&cfg.TrafficMode, "traffic-mode", cfg.TrafficMode, "how pods reach other nodes: noencap (routed), geneve or vxlan (tunnelled)")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", cfg.ClusterCIDR, "the cluster's pod network, exempt from the masquerade (every node's pod CIDR always is)")
	f.StringVar(&cfg.PeersFile, "peers-file", cfg.PeersFile, "standalone mode: YAML file listing the other nodes (name, nodeIP, podCIDRs), watched for changes")
	f.StringVar(&cfg.Uplink, "uplink", cfg.Uplink, "interface carrying the node's address (default: the one holding --node-ip or the Node's InternalIP)")
	f.BoolVar(&cfg.NetworkPolicy, "network-policy", cfg.NetworkPolicy, "Kubernetes mode: enforce NetworkPolicy")
	f.StringVar(&cfg.ServiceCIDRs, "service-cidr", cfg.ServiceCIDRs, "the cluster's Service address ranges, comma separated (NetworkPolicy checks egress to them after kube-proxy's NAT)")
	f.StringVar(&cfg.UplinkBridge, "uplink-bridge", cfg.UplinkBridge, "userspace datapath with tunnels: OVS bridge that takes the node's address from the uplink")
	f.StringVar(&cfg.GatewayName, "gateway-name", cfg.GatewayName, "name of the gateway's OVS internal port")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig file: Kubernetes mode (pod CIDR from the Node, pod GC, Events); in a pod the in-cluster configuration is used")
	f.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's Kubernetes name (default $NODE_NAME)")
	f.BoolVar(&cfg.Standalone, "standalone", cfg.Standalone, "standalone mode even when running inside a cluster")
	f.StringVar(&logLevel, "log-level", logLevel, "log level: debug, info, warn or error")
	return cmd
}

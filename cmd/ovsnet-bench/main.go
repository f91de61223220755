// Command ovsnet-bench runs ovsnet's benchmarks against real OVS sandboxes
// and prints p50/p90/p99 tables, each beside its floor. It needs root and
// Open vSwitch installed.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovsnet/ovsnet/internal/bench"
	"github.com/ovsnet/ovsnet/internal/cnitest"
)

func main() {
	root := &cobra.Command{Use: "ovsnet-bench", Short: "ovsnet benchmarks against real OVS", SilenceUsage: true}
	var gate bench.GateConfig
	gateCmd := &cobra.Command{
		Use:   "gate",
		Short: "ovs-vswitchd start -> agent ready, beside the first successful dp-features reply",
		RunE: func(cmd *cobra.Command, _ []string) error {
			gate.Out = cmd.OutOrStdout()
			return bench.Gate(cmd.Context(), gate)
		},
	}
	gateCmd.Flags().IntVar(&gate.Runs, "runs", 100, "timed ovs-vswitchd starts per variant")
	gateCmd.Flags().IntVar(&gate.Orders, "orders", 200, "randomized start orders to check for failures")
	root.AddCommand(gateCmd)

	var cni bench.CNIConfig
	cniCmd := &cobra.Command{
		Use:   "cni",
		Short: "CNI ADD/DEL through the real plugin binary, with per-phase breakdown, beside the raw floor",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cni.Out = cmd.OutOrStdout()
			done, err := ensurePlugin(cmd, &cni.PluginDir)
			if err != nil {
				return err
			}
			defer done()
			return bench.CNI(cmd.Context(), cni)
		},
	}
	cniCmd.Flags().IntVar(&cni.Pods, "pods", 100, "pods per round")
	cniCmd.Flags().IntVar(&cni.Concurrency, "concurrency", 8, "concurrent ADDs in the second round")
	cniCmd.Flags().StringVar(&cni.PluginDir, "plugin-dir", "", "directory with the built plugin binary \"ovsnet\" (default: build it)")
	root.AddCommand(cniCmd)

	var stall bench.StallConfig
	stallCmd := &cobra.Command{
		Use:   "stall",
		Short: "ports added during an ovs-vswitchd stall: a fixed-timeout OVSDB wait beside ovsnet's WaitPort",
		RunE: func(cmd *cobra.Command, _ []string) error {
			stall.Out = cmd.OutOrStdout()
			return bench.Stall(cmd.Context(), stall)
		},
	}
	stallCmd.Flags().IntVar(&stall.Ports, "ports", 20, "ports added during each stall")
	stallCmd.Flags().DurationVar(&stall.Stall, "stall", 8*time.Second, "how long ovs-vswitchd stays SIGSTOPped")
	stallCmd.Flags().DurationVar(&stall.AnchorTimeout, "anchor-timeout", 5*time.Second, "timeout of the OVSDB wait compared against")
	stallCmd.Flags().IntVar(&stall.Rounds, "rounds", 3, "stalls")
	root.AddCommand(stallCmd)

	var restart bench.RestartConfig
	var frw string
	restartCmd := &cobra.Command{
		Use:   "restart",
		Short: "pod traffic gap across ovs-vswitchd SIGKILL + restart, beside the first dp-features answer",
		RunE: func(cmd *cobra.Command, _ []string) error {
			restart.Out = cmd.OutOrStdout()
			switch frw {
			case "off":
				restart.FlowRestoreWait = []bool{false}
			case "on":
				restart.FlowRestoreWait = []bool{true}
			case "both":
				restart.FlowRestoreWait = []bool{false, true}
			default:
				return fmt.Errorf("--flow-restore-wait %q: want off, on or both", frw)
			}
			done, err := ensurePlugin(cmd, &restart.PluginDir)
			if err != nil {
				return err
			}
			defer done()
			return bench.Restart(cmd.Context(), restart)
		},
	}
	restartCmd.Flags().IntVar(&restart.Restarts, "restarts", 20, "ovs-vswitchd restarts per variant")
	restartCmd.Flags().DurationVar(&restart.Interval, "interval", 10*time.Millisecond, "time between probes")
	restartCmd.Flags().StringVar(&frw, "flow-restore-wait", "both", "off, on or both: set other_config:flow-restore-wait=true before each start")
	restartCmd.Flags().StringVar(&restart.PluginDir, "plugin-dir", "", "directory with the built plugin binary \"ovsnet\" (default: build it)")
	restartCmd.Flags().DurationVar(&restart.Down, "down", 0, "how long ovs-vswitchd stays dead before each restart")
	restartCmd.Flags().BoolVar(&restart.WithDB, "with-ovsdb", false, "restart ovsdb-server too, as a restart of the whole OVS container does")
	restartCmd.Flags().BoolVar(&restart.Timeline, "timeline", false, "print each restart's agent log records on the benchmark's clock")
	root.AddCommand(restartCmd)

	var dp bench.DatapathConfig
	servicesCmd := &cobra.Command{
		Use:   "services",
		Short: "pod -> ClusterIP (host DNAT) with a same-node endpoint: TCP connect time and throughput, beside pod -> pod",
		RunE: func(cmd *cobra.Command, _ []string) error {
			dp.Out = cmd.OutOrStdout()
			done, err := ensurePlugin(cmd, &dp.PluginDir)
			if err != nil {
				return err
			}
			defer done()
			return bench.Services(cmd.Context(), dp)
		},
	}
	crossCmd := &cobra.Command{
		Use:   "crossnode",
		Short: "two nodes per traffic mode: cross-node RTT and throughput beside same-node and the bare underlay; peer join latency",
		RunE: func(cmd *cobra.Command, _ []string) error {
			dp.Out = cmd.OutOrStdout()
			done, err := ensurePlugin(cmd, &dp.PluginDir)
			if err != nil {
				return err
			}
			defer done()
			return bench.CrossNode(cmd.Context(), dp)
		},
	}
	for _, c := range []*cobra.Command{servicesCmd, crossCmd} {
		c.Flags().IntVar(&dp.Conns, "conns", 1000, "TCP connections timed per target")
		c.Flags().IntVar(&dp.RTTs, "rtts", 1000, "UDP round trips per path")
		c.Flags().IntVar(&dp.Seconds, "seconds", 5, "length of each throughput measurement")
		c.Flags().IntVar(&dp.Rounds, "rounds", 4, "interleaved rounds per target")
		c.Flags().StringVar(&dp.PluginDir, "plugin-dir", "", "directory with the built plugin binary \"ovsnet\" (default: build it)")
		root.AddCommand(c)
	}
	crossCmd.Flags().StringSliceVar(&dp.Modes, "modes", []string{"noencap", "geneve", "vxlan"}, "traffic modes to measure")
	crossCmd.Flags().IntVar(&dp.Joins, "joins", 20, "times a peer joining is timed")

	var pc bench.PolicyConfig
	policyCmd := &cobra.Command{
		Use:   "policy",
		Short: "NetworkPolicy: change -> in force as a probe sees it (beside a bare OpenFlow client's flow), and flows and CPU of a large synthetic node",
		RunE: func(cmd *cobra.Command, _ []string) error {
			pc.Out = cmd.OutOrStdout()
			done, err := ensurePlugin(cmd, &pc.PluginDir)
			if err != nil {
				return err
			}
			defer done()
			return bench.Policy(cmd.Context(), pc)
		},
	}
	policyCmd.Flags().IntVar(&pc.Rounds, "rounds", 50, "times each realisation is timed")
	policyCmd.Flags().IntVar(&pc.Many, "many", 100, "policies created at once in the second case")
	policyCmd.Flags().IntVar(&pc.ScalePods, "pods", 1000, "local pods of the synthetic node (also run at 1/4 and 1/2)")
	policyCmd.Flags().IntVar(&pc.ScalePolicies, "policies", 100, "policies of the synthetic node")
	policyCmd.Flags().StringVar(&pc.PluginDir, "plugin-dir", "", "directory with the built plugin binary \"ovsnet\" (default: build it)")
	root.AddCommand(policyCmd)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ovsnet-bench:", err)
		os.Exit(1)
	}
}

// ensurePlugin builds the plugin into a temporary directory unless *dir
// names one; done removes what it built.
func ensurePlugin(cmd *cobra.Command, dir *string) (done func(), err error) {
	if *dir != "" {
		return func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "ovsnet-bench-plugin-")
	if err != nil {
		return nil, err
	}
	if err := cnitest.BuildPlugin(cmd.Context(), tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	*dir = tmp
	return func() { _ = os.RemoveAll(tmp) }, nil
}

// Command ovsnet-bench runs ovsnet's benchmarks against real OVS sandboxes
// and prints p50/p90/p99 tables, each beside its floor. It needs root and
// Open vSwitch installed.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/ovsnet/ovsnet/internal/bench"
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ovsnet-bench:", err)
		os.Exit(1)
	}
}

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

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ovsnet-agent:", err)
		os.Exit(1)
	}
}

func command() *cobra.Command {
	cfg := agent.Defaults()
	logLevel := "info"
	cmd := &cobra.Command{
		Use:           "ovsnet-agent",
		Short:         "ovsnet node agent: pod networking through Open vSwitch",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	f.StringVar(&cfg.OVSDB, "ovsdb", cfg.OVSDB, "OVSDB endpoint of ovsdb-server (unix:/path or tcp:host:port)")
	f.StringVar(&cfg.OVSRunDir, "ovs-rundir", cfg.OVSRunDir, "directory with ovs-vswitchd's pidfile, control socket and the bridges' OpenFlow mgmt sockets")
	f.StringVar(&cfg.Bridge, "bridge", cfg.Bridge, "integration bridge the agent owns")
	f.StringVar(&cfg.DatapathType, "datapath-type", cfg.DatapathType, "OVS datapath of the bridge: system (kernel module) or netdev (userspace)")
	f.StringVar(&cfg.HealthAddr, "health-addr", cfg.HealthAddr, "address serving /healthz, /readyz and /metrics")
	f.StringVar(&logLevel, "log-level", logLevel, "log level: debug, info, warn or error")
	cmd.SetContext(context.Background())
	return cmd
}

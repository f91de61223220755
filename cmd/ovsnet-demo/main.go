// Command ovsnet-demo shows ovsnet end to end on this machine: a local OVS,
// the agent and a few pods that talk to each other. It needs root and Open
// vSwitch installed, and cleans up everything it creates.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/ovsnet/ovsnet/internal/demo"
)

func main() {
	self, _ := os.Executable()
	bin := flag.String("bin", filepath.Dir(self), "directory with ovsnet-agent, ovsnet and ovsnetctl")
	pods := flag.Int("pods", 4, "number of pods")
	flag.Parse()
	// The binaries are exec'd from other namespaces and directories.
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ovsnet-demo: --bin:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := demo.Run(ctx, demo.Config{BinDir: abs, Pods: *pods, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, "ovsnet-demo:", err)
		os.Exit(1)
	}
}

// Command ovsnetctl inspects a running ovsnet agent.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ovsnet/ovsnet/internal/ctl"
)

func main() {
	if err := ctl.Command().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "ovsnetctl:", err)
		os.Exit(1)
	}
}

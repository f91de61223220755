// Command e2e-pause is the sandbox container of the e2e cluster's pods. It holds
// the pod's namespaces open and, being PID 1 in the pod's PID namespace when
// that is shared, reaps orphaned processes so they never linger as zombies.
// It exits cleanly on SIGINT or SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	os.Exit(run(signals, reapChildren))
}

// run waits for signals until asked to stop; reap is called for each SIGCHLD.
// It returns the exit code.
func run(signals <-chan os.Signal, reap func()) int {
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		return 0
	}
	return 0
}

// reapChildren collects every exited child without blocking. Signals of one
// kind coalesce, so a single SIGCHLD may stand for several exits.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

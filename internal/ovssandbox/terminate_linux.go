package ovssandbox

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// terminate signals a process that need not be our child and waits for it to
// exit. A pidfd turns "has it exited?" into an event to poll on instead of a
// loop of kill(pid, 0) probes.
func terminate(ctx context.Context, pid int, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("open pidfd for pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("send %v to pid %d: %w", sig, pid, err)
	}
	// Wake up at least every 100 ms to notice ctx; the pidfd becomes readable
	// the moment the process exits.
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for pid %d to exit: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for pid %d to exit after %v: %w", pid, sig, ctx.Err())
		}
	}
}

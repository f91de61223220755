package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRunReapsOnSIGCHLDAndStopsOnTERM(t *testing.T) {
	signals := make(chan os.Signal, 4)
	signals <- syscall.SIGCHLD
	signals <- syscall.SIGCHLD
	signals <- syscall.SIGTERM
	signals <- syscall.SIGCHLD // after the stop: must not be handled
	reaps := 0
	if code := run(signals, func() { reaps++ }); code != 0 {
		t.Fatalf("run returned %d, want 0", code)
	}
	if reaps != 2 {
		t.Fatalf("reap called %d times, want 2 (once per SIGCHLD before SIGTERM)", reaps)
	}
}

func TestRunStopsOnINT(t *testing.T) {
	signals := make(chan os.Signal, 1)
	signals <- syscall.SIGINT
	if code := run(signals, func() { t.Error("reap called without SIGCHLD") }); code != 0 {
		t.Fatalf("run returned %d, want 0", code)
	}
}

func TestRunReturnsWhenSignalsClose(t *testing.T) {
	signals := make(chan os.Signal)
	close(signals)
	if code := run(signals, func() {}); code != 0 {
		t.Fatalf("run returned %d, want 0", code)
	}
}

func TestReapChildrenCollectsExitedChildren(t *testing.T) {
	// Several children that exit at once: one call must collect them all.
	var pids []int
	for range 3 {
		cmd := exec.Command("/bin/true")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start child: %v", err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	// Block until every child has exited, leaving it waitable (WNOWAIT), so
	// the non-blocking reap below has exactly these exits to collect.
	for _, pid := range pids {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				t.Fatalf("waitid %d: %v", pid, err)
			}
			break
		}
	}
	reapChildren()
	for _, pid := range pids {
		var status syscall.WaitStatus
		_, err := syscall.Wait4(pid, &status, syscall.WNOHANG, nil)
		if !errors.Is(err, syscall.ECHILD) {
			t.Errorf("child %d still waitable after reapChildren (err %v)", pid, err)
		}
	}
}

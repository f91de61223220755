//go:build linux

// Package ovssandbox runs a throwaway Open vSwitch (ovsdb-server and
// ovs-vswitchd from the distribution's binaries) in a temporary directory with
// explicit sockets, inside a network namespace of its own. Tests, `make demo`
// and the benchmarks use it; nothing in the product does.
//
// Every instance lives in its own network namespace because ovs-vswitchd's
// userspace datapath creates a tap device named after each bridge: two
// instances in one namespace would fight over "br-int".
//
// ovs-vswitchd can be started detached (--detach returns only once it is
// initialised, as a distribution's service script does) or in the foreground
// (as in a container, where the caller learns nothing about when it is ready),
// and can be stopped, killed, paused and resumed, so tests can reproduce every
// start order and crash the agent must survive.
package ovssandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NetnsPrefix starts the name of every namespace a sandbox creates; Sweep uses
// it to find the leftovers of a process that died without cleaning up.
const NetnsPrefix = "ovsnet-sb-"

// Mode says how ovs-vswitchd is started.
type Mode int

const (
	// Detached runs ovs-vswitchd --detach: Start returns once it is initialised.
	Detached Mode = iota
	// Foreground runs ovs-vswitchd as a child that is still initialising when
	// Start returns, like a container entrypoint.
	Foreground
)

func (m Mode) String() string {
	if m == Foreground {
		return "foreground"
	}
	return "detached"
}

// Config describes a sandbox. The zero value is usable.
type Config struct {
	// Dir is the run directory (conf.db, db.sock, pidfiles, ctl and mgmt
	// sockets, logs). Empty: a new temporary directory, removed by Close.
	Dir string
	// Netns names the network namespace for ovs-vswitchd. Empty: a new one
	// named NetnsPrefix<pid>-<n>, deleted by Close.
	Netns string
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// Sandbox is one OVS instance. Its methods are safe for concurrent use.
type Sandbox struct {
	dir      string
	ownDir   bool
	netns    string
	ownNetns bool
	log      *slog.Logger

	mu       sync.Mutex
	dbPID    int
	vsPID    int
	vsChild  *exec.Cmd     // set for a foreground ovs-vswitchd
	vsExited chan struct{} // closed when the foreground child exits
	closed   bool
}

var sandboxSeq struct {
	sync.Mutex
	n int
}

// New prepares a sandbox: the directory, the network namespace and an empty
// conf.db. It starts no daemon.
func New(ctx context.Context, cfg Config) (*Sandbox, error) {
	s := &Sandbox{dir: cfg.Dir, netns: cfg.Netns, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "ovsnet-ovs-")
		if err != nil {
			return nil, fmt.Errorf("create OVS sandbox directory: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	if s.netns == "" {
		sandboxSeq.Lock()
		sandboxSeq.n++
		n := sandboxSeq.n
		sandboxSeq.Unlock()
		s.netns = fmt.Sprintf("%s%d-%d", NetnsPrefix, os.Getpid(), n)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", s.netns).CombinedOutput(); err != nil {
			s.removeDir()
			return nil, fmt.Errorf("create network namespace %s for OVS: %v: %s", s.netns, err, bytes.TrimSpace(out))
		}
		s.ownNetns = true
		// The userspace datapath sends through the namespace's loopback-less
		// stack happily, but tools run inside (ping, nc) expect lo up.
		_ = exec.CommandContext(ctx, "ip", "-n", s.netns, "link", "set", "lo", "up").Run()
	}
	db := s.path("conf.db")
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		if out, err := s.command(ctx, "ovsdb-tool", "create", db, SchemaPath()).CombinedOutput(); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("create %s: %v: %s", db, err, bytes.TrimSpace(out))
		}
	}
	return s, nil
}

// SchemaPath is the Open_vSwitch schema installed with OVS.
func SchemaPath() string {
	if p := os.Getenv("OVS_SCHEMA"); p != "" {
		return p
	}
	return "/usr/share/openvswitch/vswitch.ovsschema"
}

// Dir is the run directory: what the agent's --ovs-rundir points at.
func (s *Sandbox) Dir() string { return s.dir }

// Netns is the network namespace ovs-vswitchd runs in; the host ends of pod
// interfaces must live there.
func (s *Sandbox) Netns() string { return s.netns }

// NetnsPath is the namespace's bind-mount path.
func (s *Sandbox) NetnsPath() string { return "/run/netns/" + s.netns }

// DBSocket is the ovsdb-server unix socket path.
func (s *Sandbox) DBSocket() string { return s.path("db.sock") }

// DBEndpoint is the OVSDB endpoint in the agent's --ovsdb syntax.
func (s *Sandbox) DBEndpoint() string { return "unix:" + s.DBSocket() }

func (s *Sandbox) path(name string) string { return filepath.Join(s.dir, name) }

func (s *Sandbox) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, lookPath(name), args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+s.dir, "OVS_DBDIR="+s.dir, "OVS_LOGDIR="+s.dir)
	cmd.Dir = s.dir
	return cmd
}

// StartDB starts ovsdb-server detached; it returns once the server listens.
func (s *Sandbox) StartDB(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("OVS sandbox is closed")
	}
	if s.dbPID != 0 && alive(s.dbPID) {
		return fmt.Errorf("ovsdb-server already running (pid %d)", s.dbPID)
	}
	out, err := s.command(ctx, "ovsdb-server", s.path("conf.db"),
		"--remote=punix:"+s.DBSocket(),
		"--pidfile="+s.path("ovsdb-server.pid"),
		"--unixctl="+s.path("ovsdb-server.ctl"),
		"--log-file="+s.path("ovsdb-server.log"),
		"-vconsole:off", "--no-chdir", "--detach").CombinedOutput()
	if err != nil {
		return fmt.Errorf("start ovsdb-server in %s: %v: %s", s.dir, err, bytes.TrimSpace(out))
	}
	pid, err := readPID(s.path("ovsdb-server.pid"))
	if err != nil {
		return err
	}
	s.dbPID = pid
	s.log.Debug("ovsdb-server started", "pid", pid, "dir", s.dir)
	return nil
}

// StopDB stops ovsdb-server with SIGTERM and waits for it to exit.
func (s *Sandbox) StopDB(ctx context.Context) error {
	s.mu.Lock()
	pid := s.dbPID
	s.dbPID = 0
	s.mu.Unlock()
	if pid == 0 {
		return nil
	}
	return terminate(ctx, pid, syscall.SIGTERM)
}

// VswitchdOption changes one start of ovs-vswitchd.
type VswitchdOption func(*vswitchdStart)

type vswitchdStart struct {
	flowRestoreWait bool
}

// WithFlowRestoreWait sets other_config:flow-restore-wait=true in OVSDB
// before ovs-vswitchd starts, as the DaemonSet's start-ovs.sh does: the new
// daemon then handles no packet until the key is cleared (the agent does,
// once its flows are in). ovsdb-server must be running.
func WithFlowRestoreWait() VswitchdOption {
	return func(v *vswitchdStart) { v.flowRestoreWait = true }
}

// SetFlowRestoreWait sets other_config:flow-restore-wait=true without
// waiting for ovs-vswitchd (none may be running), creating the root row of
// a fresh database first.
func (s *Sandbox) SetFlowRestoreWait(ctx context.Context) error {
	if _, err := s.Vsctl(ctx, "--no-wait", "init", "--", "set", "Open_vSwitch", ".", "other_config:flow-restore-wait=true"); err != nil {
		return fmt.Errorf("set flow-restore-wait (is ovsdb-server running?): %w", err)
	}
	return nil
}

// StartVswitchd starts ovs-vswitchd inside the sandbox's namespace.
func (s *Sandbox) StartVswitchd(ctx context.Context, mode Mode, opts ...VswitchdOption) error {
	var o vswitchdStart
	for _, f := range opts {
		f(&o)
	}
	if o.flowRestoreWait {
		// Before the daemon exists, so its first read of OVSDB sees the key.
		if err := s.SetFlowRestoreWait(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("OVS sandbox is closed")
	}
	if s.vsPID != 0 && alive(s.vsPID) {
		return fmt.Errorf("ovs-vswitchd already running (pid %d)", s.vsPID)
	}
	args := []string{"netns", "exec", s.netns, lookPath("ovs-vswitchd"), "unix:" + s.DBSocket(),
		"--pidfile=" + s.path("ovs-vswitchd.pid"),
		"--log-file=" + s.path("ovs-vswitchd.log"),
		"-vconsole:off", "--no-chdir"}
	if mode == Detached {
		out, err := s.command(ctx, "ip", append(args, "--detach")...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("start ovs-vswitchd in %s: %v: %s", s.dir, err, bytes.TrimSpace(out))
		}
		pid, err := readPID(s.path("ovs-vswitchd.pid"))
		if err != nil {
			return err
		}
		s.vsPID, s.vsChild, s.vsExited = pid, nil, nil
		s.log.Debug("ovs-vswitchd started", "mode", mode, "pid", pid)
		return nil
	}
	// Not CommandContext: the daemon outlives the call that starts it.
	cmd := s.command(context.Background(), "ip", args...)
	logf, err := os.OpenFile(s.path("ovs-vswitchd.stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open ovs-vswitchd output file: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start ovs-vswitchd in %s: %w", s.dir, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	// `ip netns exec` execs the daemon in place, so the child's pid is the
	// daemon's pid.
	s.vsPID, s.vsChild, s.vsExited = cmd.Process.Pid, cmd, exited
	s.log.Debug("ovs-vswitchd started", "mode", mode, "pid", cmd.Process.Pid)
	return nil
}

// VswitchdPID is the running ovs-vswitchd's pid, 0 if none was started.
func (s *Sandbox) VswitchdPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vsPID
}

// StopVswitchd stops ovs-vswitchd gracefully (SIGTERM) and waits for it to
// exit. OVS keeps the bridges in conf.db.
func (s *Sandbox) StopVswitchd(ctx context.Context) error {
	return s.endVswitchd(ctx, syscall.SIGTERM)
}

// KillVswitchd kills ovs-vswitchd with SIGKILL, as a crash or an OOM kill
// would, and waits until it is gone.
func (s *Sandbox) KillVswitchd(ctx context.Context) error {
	return s.endVswitchd(ctx, syscall.SIGKILL)
}

func (s *Sandbox) endVswitchd(ctx context.Context, sig syscall.Signal) error {
	s.mu.Lock()
	pid, exited := s.vsPID, s.vsExited
	s.vsPID, s.vsChild, s.vsExited = 0, nil, nil
	s.mu.Unlock()
	if pid == 0 {
		return nil
	}
	// A stopped process does not act on SIGTERM until it continues.
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if exited != nil {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal ovs-vswitchd (pid %d): %w", pid, err)
		}
		select {
		case <-exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for ovs-vswitchd (pid %d) to exit: %w", pid, ctx.Err())
		}
	}
	return terminate(ctx, pid, sig)
}

// PauseVswitchd stops ovs-vswitchd with SIGSTOP: it keeps its sockets but
// answers nothing, as a daemon starved of CPU would.
func (s *Sandbox) PauseVswitchd() error { return s.signalVswitchd(syscall.SIGSTOP) }

// ResumeVswitchd continues a paused ovs-vswitchd.
func (s *Sandbox) ResumeVswitchd() error { return s.signalVswitchd(syscall.SIGCONT) }

func (s *Sandbox) signalVswitchd(sig syscall.Signal) error {
	pid := s.VswitchdPID()
	if pid == 0 {
		return errors.New("ovs-vswitchd is not running")
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("send %v to ovs-vswitchd (pid %d): %w", sig, pid, err)
	}
	return nil
}

// Vsctl runs ovs-vsctl against the sandbox's database.
func (s *Sandbox) Vsctl(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, "ovs-vsctl", append([]string{"--db=" + s.DBEndpoint(), "--timeout=60"}, args...)...)
}

// Ofctl runs ovs-ofctl; bridge names resolve to the sandbox's mgmt sockets
// through OVS_RUNDIR.
func (s *Sandbox) Ofctl(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, "ovs-ofctl", args...)
}

// Appctl runs ovs-appctl against the sandbox's ovs-vswitchd.
func (s *Sandbox) Appctl(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, "ovs-appctl", append([]string{"--timeout=60"}, args...)...)
}

// InNetns runs a command inside the sandbox's network namespace.
func (s *Sandbox) InNetns(ctx context.Context, name string, args ...string) (string, error) {
	return s.run(ctx, "ip", append([]string{"netns", "exec", s.netns, lookPath(name)}, args...)...)
}

func (s *Sandbox) run(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := s.command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// Logs returns the tail of both daemons' logs, for failure messages.
func (s *Sandbox) Logs() string {
	var b strings.Builder
	for _, f := range []string{"ovsdb-server.log", "ovs-vswitchd.log", "ovs-vswitchd.stderr"} {
		data, err := os.ReadFile(s.path(f))
		if err != nil {
			continue
		}
		if len(data) > 4096 {
			data = data[len(data)-4096:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", f, data)
	}
	return b.String()
}

// Close kills both daemons and removes the namespace and directory it made.
// It is safe to call more than once.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if err := s.KillVswitchd(ctx); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	dbPID := s.dbPID
	s.dbPID = 0
	s.mu.Unlock()
	if dbPID != 0 {
		if err := terminate(ctx, dbPID, syscall.SIGKILL); err != nil {
			errs = append(errs, err)
		}
	}
	if s.ownNetns {
		if err := deleteNetns(ctx, s.netns); err != nil {
			errs = append(errs, err)
		}
	}
	s.removeDir()
	return errors.Join(errs...)
}

func (s *Sandbox) removeDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

// deleteNetns kills whatever still runs in the namespace (a daemon forked by
// a test, a leaked ping) and deletes it; its devices go with it.
func deleteNetns(ctx context.Context, name string) error {
	out, _ := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = terminate(ctx, pid, syscall.SIGKILL)
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("delete network namespace %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Sweep removes namespaces left by sandboxes of processes that no longer
// exist (a test binary killed by a timeout cannot run its cleanups).
func Sweep(ctx context.Context) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, NetnsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && !alive(pid) {
			_ = deleteNetns(ctx, name)
		}
	}
}

func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("pidfile %s holds %q, not a pid", path, data)
	}
	return pid, nil
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	return name
}

package unixctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

var (
	// ErrUnavailable means nothing answers on the control socket: the pidfile
	// or the socket is missing, or the connection was refused or lost. The
	// daemon is stopped, restarting or not started yet.
	ErrUnavailable = errors.New("OVS control socket unavailable")

	// ErrNotValidCommand means the daemon does not know the command (yet).
	// ovs-vswitchd registers the dpif/* commands only once the first
	// userspace-datapath-backed bridge has been built, so right after start
	// this is expected and retrying later makes sense.
	ErrNotValidCommand = errors.New("command not (yet) registered by ovs-vswitchd")

	// ErrNoSuchBridge means the daemon has no bridge of that name (yet): the
	// bridge is not in its configuration or has not been built.
	ErrNoSuchBridge = errors.New("bridge not (yet) known to ovs-vswitchd")

	// ErrNotSupported is returned on platforms where ovsnet cannot reach the
	// control socket yet.
	ErrNotSupported = errors.New("OVS control socket not supported on this platform")

	// errReplyTooLarge stops a reply that exceeds Config.MaxReplySize.
	errReplyTooLarge = errors.New("reply exceeds the size limit")
)

// CommandError is an error reply from the daemon: the command ran (or was
// looked up) and failed. Text is the server's message without the trailing
// newline. errors.Is matches ErrNotValidCommand and ErrNoSuchBridge when the
// text says so.
type CommandError struct {
	Method string
	Params []string
	Text   string
}

func (e *CommandError) Error() string {
	cmd := strings.Join(append([]string{e.Method}, e.Params...), " ")
	msg := fmt.Sprintf("ovs-vswitchd rejected %q: %s", cmd, e.Text)
	if e.kind() == ErrNotValidCommand {
		msg += " (ovs-vswitchd registers dpif/* commands only after it has built a bridge; wait for the bridge to be ready)"
	}
	return msg
}

// Is lets errors.Is(err, ErrNotValidCommand) and errors.Is(err,
// ErrNoSuchBridge) classify a reply without callers matching text.
func (e *CommandError) Is(target error) bool {
	k := e.kind()
	return k != nil && target == k
}

func (e *CommandError) kind() error {
	t := strings.ToLower(strings.TrimSpace(e.Text))
	switch {
	case strings.Contains(t, "is not a valid command"):
		return ErrNotValidCommand
	// dpif/*, fdb/* and most ofproto commands say "no such bridge";
	// ofproto/trace says "<name>: unknown bridge" and bridge/* "Unknown bridge".
	case t == "no such bridge", strings.HasSuffix(t, "unknown bridge"):
		return ErrNoSuchBridge
	}
	return nil
}

// ProtocolError is a reply that does not follow the unixctl JSON-RPC
// protocol: not JSON, truncated, too large, or with the wrong id. It unwraps
// to the underlying decode error (io.ErrUnexpectedEOF for a truncated reply).
type ProtocolError struct {
	Socket string
	Method string
	Reason string
	Err    error
}

func (e *ProtocolError) Error() string {
	msg := fmt.Sprintf("malformed reply to %q from OVS control socket", e.Method)
	if e.Socket != "" {
		msg += " " + e.Socket
	}
	msg += ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// MissingFeaturesError names the datapath features a bridge lacks. It is
// permanent: the datapath (kernel module or OVS build) has to change.
type MissingFeaturesError struct {
	Bridge  string
	Missing []string
}

func (e *MissingFeaturesError) Error() string {
	return fmt.Sprintf("datapath of bridge %s lacks required features: %s (see `ovs-appctl dpif/show-dp-features %s`; ovsnet needs a datapath with conntrack and recirculation: upgrade the OVS kernel module or use datapath_type=netdev)",
		e.Bridge, strings.Join(e.Missing, ", "), e.Bridge)
}

// IsTransient reports whether waiting and calling again may succeed: the
// daemon is not up, has not built the bridge or registered the command yet,
// did not answer before the deadline, or dropped the connection mid-reply.
// Cancellation by the caller, command failures and malformed replies are
// permanent.
func IsTransient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrUnavailable),
		errors.Is(err, ErrNotValidCommand),
		errors.Is(err, ErrNoSuchBridge),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF):
		return true
	}
	return false
}

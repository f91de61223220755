// Package unixctl is ovsnet's client for the control socket of ovs-vswitchd,
// the channel ovs-appctl uses. The protocol is JSON-RPC 1.0 over a unix
// socket: the client sends {"method":"version","params":[],"id":7} and the
// daemon answers {"id":7,"result":"text","error":null} on success or
// {"id":7,"error":"text"} on failure. Results and errors are free text meant
// for humans; this package classifies the errors ovsnet has to react to and
// parses the few replies it relies on (version, datapath features).
package unixctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultMaxReplySize bounds a reply. Replies such as dpif/dump-flows on a
// busy node can reach megabytes; anything far beyond is a broken peer.
const DefaultMaxReplySize = 16 << 20

// Config says which daemon to talk to. The zero value talks to the packaged
// ovs-vswitchd in DefaultRunDir.
type Config struct {
	// RunDir holds the daemon's pidfile and control socket (ovs-appctl reads
	// it from OVS_RUNDIR). Default DefaultRunDir.
	RunDir string
	// Target is the daemon's name, as in ovs-appctl -t. Default DefaultTarget.
	Target string
	// Socket, when set, is the control socket path and RunDir and Target are
	// ignored. Use it only for a socket whose path does not change on restart.
	Socket string
	// MaxReplySize bounds a reply in bytes. Default DefaultMaxReplySize.
	MaxReplySize int64
	// Logger receives one debug record per call. Default slog.Default().
	Logger *slog.Logger
}

// Client calls commands on a daemon's control socket. It is safe for
// concurrent use.
//
// Each call dials a fresh connection. Calls are rare (start-up, readiness,
// the CLI) and a whole call costs about 0.2 ms against ovs-vswitchd, while a
// fresh dial re-reads the pidfile, so a restarted daemon (new pid, new
// socket) is picked up without reconnect logic, and a call can never read a
// reply meant for another.
type Client struct {
	cfg    Config
	log    *slog.Logger
	nextID atomic.Uint64
}

// New returns a client for the daemon described by cfg. It does not connect.
func New(cfg Config) *Client {
	if cfg.Target == "" {
		cfg.Target = DefaultTarget
	}
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir
	}
	if cfg.MaxReplySize <= 0 {
		cfg.MaxReplySize = DefaultMaxReplySize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{cfg: cfg, log: log}
}

// SocketPath resolves the control socket the next call will dial.
func (c *Client) SocketPath() (string, error) {
	if c.cfg.Socket != "" {
		return c.cfg.Socket, nil
	}
	return Locate(c.cfg.RunDir, c.cfg.Target)
}

// PidfilePath is the pidfile the daemon rewrites at every start, and false
// when the client was given a fixed Socket.
func (c *Client) PidfilePath() (string, bool) {
	if c.cfg.Socket != "" {
		return "", false
	}
	return filepath.Join(c.cfg.RunDir, c.cfg.Target+".pid"), true
}

// Call runs method with params on the daemon and returns its text reply.
// Errors: ErrUnavailable (daemon not running or connection lost),
// *CommandError (the daemon's error reply; errors.Is matches
// ErrNotValidCommand and ErrNoSuchBridge), *ProtocolError (malformed reply),
// or ctx's error wrapped when ctx ends first. IsTransient sorts them.
func (c *Client) Call(ctx context.Context, method string, params ...string) (string, error) {
	start := time.Now()
	out, err := c.call(ctx, method, params)
	if err != nil {
		c.log.DebugContext(ctx, "OVS control call failed", "method", method, "params", params,
			"duration", time.Since(start), "error", err)
	} else {
		c.log.DebugContext(ctx, "OVS control call", "method", method, "params", params,
			"duration", time.Since(start), "reply_bytes", len(out))
	}
	return out, err
}

func (c *Client) call(ctx context.Context, method string, params []string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("call %q on OVS control socket: %w", method, err)
	}
	path, err := c.SocketPath()
	if err != nil {
		return "", fmt.Errorf("call %q: %w", method, err)
	}
	conn, err := dial(ctx, path)
	if err != nil {
		if cerr := ctxError(ctx, err); cerr != nil {
			return "", fmt.Errorf("call %q: connect to %s: %w", method, path, cerr)
		}
		return "", fmt.Errorf("call %q: %w", method, err)
	}
	defer func() { _ = conn.Close() }()
	// The deadline bounds each read and write; closing the connection on
	// ctx.Done also covers cancellation, which has no deadline.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	id := c.nextID.Add(1)
	if params == nil {
		params = []string{} // the daemon requires an array, never null
	}
	req, err := json.Marshal(request{Method: method, Params: params, ID: id})
	if err != nil {
		return "", fmt.Errorf("call %q: encode request: %w", method, err)
	}
	if _, err := conn.Write(req); err != nil {
		if cerr := ctxError(ctx, err); cerr != nil {
			return "", fmt.Errorf("call %q on %s: send request: %w", method, path, cerr)
		}
		return "", fmt.Errorf("%w: call %q on %s: send request: %w", ErrUnavailable, method, path, err)
	}
	rep, err := decodeReply(conn, id, c.cfg.MaxReplySize)
	if err != nil {
		if cerr := ctxError(ctx, err); cerr != nil {
			return "", fmt.Errorf("call %q on %s: no reply (ovs-vswitchd busy or hung): %w", method, path, cerr)
		}
		var pe *ProtocolError
		if errors.As(err, &pe) {
			pe.Socket, pe.Method = path, method
			return "", pe
		}
		return "", fmt.Errorf("%w: call %q on %s: read reply: %w", ErrUnavailable, method, path, err)
	}
	if rep.isError {
		return "", &CommandError{
			Method: method,
			Params: append([]string(nil), params...),
			Text:   strings.TrimRight(rep.text, "\n"),
		}
	}
	return rep.text, nil
}

// ctxError returns the context error to report when an I/O error err was
// caused by ctx ending, or nil. The connection deadline can fire a moment
// before ctx's own timer, hence the check of the I/O error too.
func ctxError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if _, ok := ctx.Deadline(); ok {
			return context.DeadlineExceeded
		}
	}
	return nil
}

// Version returns the daemon's version, e.g. "3.1.0".
func (c *Client) Version(ctx context.Context) (string, error) {
	out, err := c.Call(ctx, "version")
	if err != nil {
		return "", err
	}
	v, ok := parseVersion(out)
	if !ok {
		return "", &ProtocolError{Method: "version", Reason: fmt.Sprintf("no version number in %s", shorten(out))}
	}
	return v, nil
}

// parseVersion takes the last word of the first line of
// "ovs-vswitchd (Open vSwitch) 3.1.0", if it looks like a version number.
func parseVersion(out string) (string, bool) {
	line, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(line)
	if len(f) < 2 {
		return "", false
	}
	v := f[len(f)-1]
	if v[0] < '0' || v[0] > '9' {
		return "", false
	}
	return v, true
}

type request struct {
	Method string   `json:"method"`
	Params []string `json:"params"`
	ID     uint64   `json:"id"`
}

type wireReply struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

type reply struct {
	text    string
	isError bool
}

// decodeReply reads one reply to request id from r, reading at most limit
// bytes. Malformed, truncated and oversized replies give *ProtocolError (with
// Socket and Method left for the caller); other read errors come back as is.
func decodeReply(r io.Reader, id uint64, limit int64) (reply, error) {
	dec := json.NewDecoder(&limitReader{r: r, n: limit})
	var w wireReply
	if err := dec.Decode(&w); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, errReplyTooLarge):
			return reply{}, &ProtocolError{Reason: fmt.Sprintf("reply larger than %d bytes (raise the reply size limit)", limit), Err: err}
		case errors.Is(err, io.EOF):
			return reply{}, &ProtocolError{Reason: "connection closed before a reply", Err: err}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return reply{}, &ProtocolError{Reason: "reply truncated", Err: err}
		case errors.As(err, &syn), errors.As(err, &typ):
			return reply{}, &ProtocolError{Reason: "not a JSON-RPC reply object", Err: err}
		}
		return reply{}, err
	}
	var got uint64
	if isNull(w.ID) || json.Unmarshal(w.ID, &got) != nil || got != id {
		return reply{}, &ProtocolError{Reason: fmt.Sprintf("reply id %s does not match request id %d", shorten(string(w.ID)), id)}
	}
	if !isNull(w.Error) {
		var text string
		if json.Unmarshal(w.Error, &text) != nil {
			text = string(w.Error) // not a string: still the daemon's message
		}
		return reply{text: text, isError: true}, nil
	}
	if isNull(w.Result) {
		return reply{}, &ProtocolError{Reason: "reply has neither result nor error"}
	}
	var text string
	if err := json.Unmarshal(w.Result, &text); err != nil {
		return reply{}, &ProtocolError{Reason: fmt.Sprintf("result %s is not a string", shorten(string(w.Result)))}
	}
	return reply{text: text}, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// shorten quotes s for an error message, cut to a readable length.
func shorten(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// limitReader fails with errReplyTooLarge past n bytes, unlike
// io.LimitReader whose EOF would pass for a truncated reply.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errReplyTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// Package unixctltest provides a fake ovs-vswitchd control socket for tests
// of code that uses package unixctl: it speaks the same JSON-RPC, lays out
// the run directory like the daemon (pidfile plus <target>.<pid>.ctl), and
// answers per method with replies a test sets and changes at run time,
// including malformed ones and ones that never come.
package unixctltest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Version31 is the version reply of ovs-vswitchd 3.1.0.
const Version31 = "ovs-vswitchd (Open vSwitch) 3.1.0\n"

// FeaturesNetdev is the dpif/show-dp-features reply of OVS 3.1.0 for a
// bridge with datapath_type=netdev.
const FeaturesNetdev = `Masked set action: Yes
Tunnel push pop: Yes
Ufid: Yes
Truncate action: Yes
Clone action: Yes
Sample nesting: 10
Conntrack eventmask: Yes
Conntrack clear: Yes
Max dp_hash algorithm: 1
Check pkt length action: Yes
Conntrack timeout policy: Yes
Explicit Drop action: Yes
Optimized Balance TCP mode: Yes
Conntrack all-zero IP SNAT: Yes
MPLS Label add: Yes
Max VLAN headers: 1
Max MPLS depth: 3
Recirc: Yes
CT state: Yes
CT zone: Yes
CT mark: Yes
CT label: Yes
CT state NAT: Yes
CT orig tuple: Yes
CT orig tuple for IPv6: Yes
IPv6 ND Extension: Yes
`

// FeaturesWithout returns FeaturesNetdev without the lines of the named
// features, as an older datapath that does not report them would answer.
func FeaturesWithout(names ...string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(FeaturesNetdev, "\n") {
		name, _, _ := strings.Cut(line, ":")
		if line == "" || contains(names, name) {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Request is one call the fake received. N counts the calls of Method so
// far, this one included, from 1.
type Request struct {
	Method string
	Params []string
	N      int
}

// Reply is the fake's answer to one request.
type Reply struct {
	// Result is the success text. Like the daemon's, it should end in "\n".
	Result string
	// Error, when not empty, makes this an error reply; a "\n" is appended
	// as the daemon does.
	Error string
	// Raw, when not nil, is written instead of a well-formed reply and the
	// connection is closed: garbage, truncated replies.
	Raw []byte
	// WrongID answers with an id other than the request's.
	WrongID bool
}

// Handler computes the reply to req. ctx ends when the fake stops, restarts
// or closes: a handler that blocks must return then.
type Handler func(ctx context.Context, req Request) Reply

// Result is a success reply.
func Result(text string) Reply { return Reply{Result: text} }

// Error is an error reply with the daemon's text.
func Error(text string) Reply { return Reply{Error: text} }

// NotValidCommand is the daemon's reply to a command it has not registered.
func NotValidCommand(method string) Reply {
	return Error(fmt.Sprintf("%q is not a valid command (use \"list-commands\" to see a list of valid commands)", method))
}

// NoSuchBridge is the daemon's reply to dpif/* commands for an unknown bridge.
func NoSuchBridge() Reply { return Error("no such bridge") }

// Static answers every request with r.
func Static(r Reply) Handler {
	return func(context.Context, Request) Reply { return r }
}

// FailFirst answers the first n calls with fail and later ones with then,
// like a daemon that registers a command some time after it starts.
func FailFirst(n int, fail Reply, then Handler) Handler {
	return func(ctx context.Context, req Request) Reply {
		if req.N <= n {
			return fail
		}
		return then(ctx, req)
	}
}

// FeaturesHandler answers dpif/show-dp-features like the daemon: text for
// the given bridges, "no such bridge" for others.
func FeaturesHandler(text string, bridges ...string) Handler {
	return func(_ context.Context, req Request) Reply {
		if len(req.Params) != 1 {
			return Error(`"dpif/show-dp-features" command requires at least 1 arguments`)
		}
		if !contains(bridges, req.Params[0]) {
			return NoSuchBridge()
		}
		return Result(text)
	}
}

// Server is a fake ovs-vswitchd control socket. Methods are safe for
// concurrent use.
type Server struct {
	dir    string
	target string

	mu       sync.Mutex
	pid      int
	ln       *net.UnixListener
	conns    map[net.Conn]struct{}
	cancel   context.CancelFunc // ends the current incarnation's handlers
	handlers map[string]Handler
	calls    map[string]int
	accepted int
	acceptCh chan struct{} // closed and replaced on every accepted connection

	wg sync.WaitGroup
}

// New starts a fake daemon named target (e.g. "ovs-vswitchd") with its
// pidfile and socket in dir. It answers "version" with Version31 and
// "dpif/show-dp-features br-int" with FeaturesNetdev; other methods are not
// valid commands until a Handle.
func New(dir, target string) (*Server, error) {
	s := &Server{
		dir:      dir,
		target:   target,
		pid:      1000,
		conns:    make(map[net.Conn]struct{}),
		acceptCh: make(chan struct{}),
		calls:    make(map[string]int),
		handlers: map[string]Handler{
			"version":               Static(Result(Version31)),
			"dpif/show-dp-features": FeaturesHandler(FeaturesNetdev, "br-int"),
		},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.listenLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start is New in a fresh run directory, closed and removed when tb ends.
// The directory is made under os.TempDir rather than tb.TempDir because a
// unix socket path must fit in 108 bytes and test names can be long.
func Start(tb testing.TB) *Server {
	tb.Helper()
	dir, err := os.MkdirTemp("", "ovsnet-unixctl-")
	if err != nil {
		tb.Fatalf("fake OVS control socket: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	s, err := New(dir, "ovs-vswitchd")
	if err != nil {
		tb.Fatalf("fake OVS control socket: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// RunDir is the directory holding the pidfile and socket.
func (s *Server) RunDir() string { return s.dir }

// Target is the daemon name used for the pidfile and socket.
func (s *Server) Target() string { return s.target }

// PID is the pid written to the pidfile by the current incarnation.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// SocketPath is the socket of the current incarnation.
func (s *Server) SocketPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.socketLocked()
}

func (s *Server) socketLocked() string {
	return filepath.Join(s.dir, fmt.Sprintf("%s.%d.ctl", s.target, s.pid))
}

func (s *Server) pidfile() string { return filepath.Join(s.dir, s.target+".pid") }

// Handle sets the handler for method; nil makes it not a valid command.
func (s *Server) Handle(method string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.handlers, method)
		return
	}
	s.handlers[method] = h
}

// Reply answers method with r from now on.
func (s *Server) Reply(method string, r Reply) { s.Handle(method, Static(r)) }

// Calls is how many requests for method the fake has received.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// WaitAccepted blocks until the fake has accepted n connections in all, for
// tests of clients that hold a connection open without sending anything.
func (s *Server) WaitAccepted(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		done, ch := s.accepted >= n, s.acceptCh
		s.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d connections to the fake OVS control socket: %w", n, ctx.Err())
		}
	}
}

// Stop ends the daemon cleanly: connections closed, socket and pidfile
// removed, as on `ovs-appctl exit`.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(true)
}

// Crash ends the daemon abruptly: the socket file and pidfile stay behind,
// so clients get "connection refused", as after a SIGKILL.
func (s *Server) Crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(false)
}

// Restart stops the daemon and starts it again with a new pid and socket,
// keeping handlers and call counts.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(true)
	s.pid++
	return s.listenLocked()
}

// Close stops the daemon and waits for its goroutines.
func (s *Server) Close() {
	s.Stop()
	s.wg.Wait()
}

func (s *Server) listenLocked() error {
	path := s.socketLocked()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on fake OVS control socket: %w", err)
	}
	// Written after the socket exists, as the daemon does, so a client
	// that finds the pidfile finds the socket.
	if err := os.WriteFile(s.pidfile(), []byte(strconv.Itoa(s.pid)+"\n"), 0o644); err != nil {
		_ = ln.Close()
		return fmt.Errorf("write fake OVS pidfile: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.ln, s.cancel = ln, cancel
	s.wg.Add(1)
	go s.accept(ctx, ln)
	return nil
}

func (s *Server) stopLocked(clean bool) {
	if s.ln == nil {
		return
	}
	s.ln.SetUnlinkOnClose(clean)
	_ = s.ln.Close()
	s.ln = nil
	s.cancel()
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
	if clean {
		_ = os.Remove(s.pidfile())
	}
}

func (s *Server) accept(ctx context.Context, ln *net.UnixListener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // listener closed by Stop, Crash or Restart
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.accepted++
		close(s.acceptCh)
		s.acceptCh = make(chan struct{})
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(ctx, conn)
	}
}

type wireRequest struct {
	Method string          `json:"method"`
	Params []string        `json:"params"`
	ID     json.RawMessage `json:"id"`
}

type wireResult struct {
	ID     json.RawMessage `json:"id"`
	Result string          `json:"result"`
	Error  *string         `json:"error"` // always null
}

type wireError struct {
	ID    json.RawMessage `json:"id"`
	Error string          `json:"error"`
}

// serve answers requests on conn until the client hangs up, like the
// daemon, which keeps a connection open for further requests.
func (s *Server) serve(ctx context.Context, conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		_ = conn.Close()
	}()
	dec := json.NewDecoder(conn)
	for {
		var req wireRequest
		if err := dec.Decode(&req); err != nil {
			return
		}
		s.mu.Lock()
		s.calls[req.Method]++
		n := s.calls[req.Method]
		h := s.handlers[req.Method]
		s.mu.Unlock()
		if h == nil {
			h = Static(NotValidCommand(req.Method))
		}
		r := h(ctx, Request{Method: req.Method, Params: req.Params, N: n})
		if ctx.Err() != nil {
			return // stopped while the handler ran: a dead daemon says nothing
		}
		if r.Raw != nil {
			_, _ = conn.Write(r.Raw)
			return
		}
		if err := writeReply(conn, req.ID, r); err != nil {
			return
		}
	}
}

func writeReply(conn net.Conn, id json.RawMessage, r Reply) error {
	if r.WrongID {
		var n int64
		if json.Unmarshal(id, &n) != nil {
			n = 0
		}
		id = json.RawMessage(strconv.FormatInt(n+1, 10))
	}
	var msg any = wireResult{ID: id, Result: r.Result}
	if r.Error != "" {
		text := r.Error
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		msg = wireError{ID: id, Error: text}
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode fake reply: %w", err)
	}
	_, err = conn.Write(b)
	return err
}

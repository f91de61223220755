// Package cniserver is the agent side of the CNI API (package cniapi): it
// listens on the agent's unix socket, decodes requests, runs them through a
// Handler the agent implements and answers with CNI results or CNI errors.
//
// Guarantees the agent can build on:
//   - Operations on one container id run one at a time, in arrival order;
//     operations on different containers run in parallel. There is no global
//     lock. The line is Config.Queue, which the handler may share for its
//     own work on containers; GC is not a per-container operation and does
//     not wait in it (the handler takes each container's turn itself).
//   - Every handler call has a deadline: the plugin's (header
//     cniapi.HeaderTimeout) or Config.DefaultTimeout. The wait behind earlier
//     operations of the same container counts against it. The context is also
//     cancelled when the plugin goes away or the server shuts down.
//   - A handler error that is a *types.Error (possibly wrapped) keeps its
//     code. context.DeadlineExceeded and context.Canceled become code 11 (try
//     again later). Anything else becomes cniapi.CodeAgentInternal (100), as
//     does a panic, which is recovered and logged with its stack.
//   - STATUS answers code 50 (plugin not available) for any failure except
//     code 51 (limited connectivity), which passes through.
//   - Request bodies are limited (Config.MaxRequestBytes).
//   - When the context given to Serve ends, the server stops accepting, lets
//     running requests finish for Config.ShutdownGrace, then cancels their
//     contexts, and returns only after every handler call has returned.
package cniserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/keyqueue"
)

// Handler is what the agent implements. Methods are called concurrently,
// except that calls for the same container id never overlap. They must return
// soon after ctx is cancelled.
type Handler interface {
	// Add attaches the container and returns its result (any CNI version the
	// library can convert to cniapi.CurrentCNIVersion).
	Add(ctx context.Context, req *cniapi.Request) (*current.Result, error)
	// Del detaches the container; it must succeed when there is nothing left
	// to remove.
	Del(ctx context.Context, req *cniapi.Request) error
	// Check verifies the attachment described by req.PrevResult.
	Check(ctx context.Context, req *cniapi.Request) error
	// GC releases whatever req.ValidAttachments does not name.
	GC(ctx context.Context, req *cniapi.GCRequest) error
	// Status reports whether Add can succeed now.
	Status(ctx context.Context) error
}

// NotReady is the error a Handler returns while the agent cannot serve yet
// (OVS not up, state not restored). The plugin reports it as code 11 and the
// runtime retries; STATUS reports it as code 50.
func NotReady(reason string) *types.Error {
	return types.NewError(types.ErrTryAgainLater, "ovsnet agent is not ready: "+reason,
		"the runtime retries; the agent's /readyz endpoint shows what it waits for")
}

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// SocketPath is the unix socket Run listens on (flag --cni-socket).
	// Default cniapi.DefaultSocket.
	SocketPath string
	// DefaultTimeout bounds a request that carries no timeout header.
	// Default 2 minutes.
	DefaultTimeout time.Duration
	// ShutdownGrace is how long running requests may continue after the
	// server was told to stop, before their contexts are cancelled.
	// Default 10 seconds.
	ShutdownGrace time.Duration
	// MaxRequestBytes limits a request body. Default cniapi.MaxRequestBytes.
	MaxRequestBytes int64
	// AgentVersion is reported by GET /v1/version.
	AgentVersion string
	// Queue is the per-container line requests wait in. Give the one the
	// handler also uses for its own work on containers (garbage
	// collection, background plumbing), so that all of it takes turns
	// with the runtime's requests. Default: a queue of the server's own.
	Queue *keyqueue.Queue
}

func (c Config) withDefaults() Config {
	if c.SocketPath == "" {
		c.SocketPath = cniapi.DefaultSocket
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = 2 * time.Minute
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = cniapi.MaxRequestBytes
	}
	if c.Queue == nil {
		c.Queue = keyqueue.New()
	}
	return c
}

// Server serves the CNI API. Create it with New.
type Server struct {
	cfg   Config
	h     Handler
	log   *slog.Logger
	queue *keyqueue.Queue
	mux   *http.ServeMux

	// onQueued, if set, is called once a request has its place in its
	// container's line and before it waits; tests use it to order requests
	// without sleeping.
	onQueued func(verb cniapi.Verb, containerID string)
}

// New returns a server that passes requests to h. A nil log discards logs.
func New(cfg Config, h Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:   cfg,
		h:     h,
		log:   log,
		queue: cfg.Queue,
		mux:   http.NewServeMux(),
	}
	s.mux.HandleFunc("POST "+cniapi.PathAdd, s.serveAttachment(cniapi.VerbAdd))
	s.mux.HandleFunc("POST "+cniapi.PathDel, s.serveAttachment(cniapi.VerbDel))
	s.mux.HandleFunc("POST "+cniapi.PathCheck, s.serveAttachment(cniapi.VerbCheck))
	s.mux.HandleFunc("POST "+cniapi.PathGC, s.serveGC)
	s.mux.HandleFunc("POST "+cniapi.PathStatus, s.serveStatus)
	s.mux.HandleFunc("GET "+cniapi.PathVersion, s.serveVersion)
	s.mux.HandleFunc("/", s.serveUnknown)
	return s
}

// Run listens on Config.SocketPath (see Listen) and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := Listen(s.cfg.SocketPath)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down gracefully (see the
// package documentation) and closes ln. It returns nil after a shutdown
// asked for by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Handlers get a context that survives ctx for the shutdown grace period:
	// cancelling an ADD half-way the moment the agent is told to stop would
	// leave more to clean up than letting it finish.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	inflight := &tracker{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !inflight.enter() {
				writeJSON(w, http.StatusServiceUnavailable, types.NewError(types.ErrTryAgainLater,
					"ovsnet agent is stopping", "the runtime retries once the agent is back"))
				return
			}
			defer inflight.leave()
			s.mux.ServeHTTP(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving CNI API", "address", ln.Addr().String(), "api", cniapi.APIVersion)

	select {
	case err := <-errc:
		cancelBase()
		inflight.closeAndWait()
		return fmt.Errorf("serve CNI API on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	s.log.Info("stopping CNI API", "address", ln.Addr().String(), "grace", s.cfg.ShutdownGrace)
	graceCtx, cancelGrace := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancelGrace()
	if err := srv.Shutdown(graceCtx); err != nil {
		s.log.Warn("CNI requests still running after the shutdown grace period; cancelling them", "grace", s.cfg.ShutdownGrace)
		cancelBase()
		_ = srv.Close()
	}
	cancelBase()
	<-errc
	inflight.closeAndWait()
	s.log.Info("CNI API stopped", "address", ln.Addr().String())
	return nil
}

// requestContext derives the handler's context from the timeout header or the
// default timeout.
func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	timeout := s.cfg.DefaultTimeout
	if v := r.Header.Get(cniapi.HeaderTimeout); v != "" {
		d, err := cniapi.ParseTimeoutHeader(v)
		if err != nil {
			return nil, nil, types.NewError(types.ErrDecodingFailure, "invalid request from the CNI plugin", err.Error())
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, nil
}

// decode reads a JSON body within the size limit. Unknown fields are allowed
// so that a newer plugin can talk to an older agent.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return types.NewError(types.ErrDecodingFailure,
				fmt.Sprintf("CNI request body exceeds %d bytes", tooBig.Limit), "shorten the network configuration")
		}
		return types.NewError(types.ErrTryAgainLater, "reading the CNI request failed", err.Error())
	}
	if err := json.Unmarshal(data, v); err != nil {
		return types.NewError(types.ErrDecodingFailure, "cannot decode the CNI request", err.Error())
	}
	return nil
}

func (s *Server) serveAttachment(verb cniapi.Verb) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var req cniapi.Request
		ctx, cancel, err := s.requestContext(r)
		if err != nil {
			s.finish(w, verb, nil, nil, err, start)
			return
		}
		defer cancel()
		if err := s.decode(w, r, &req); err != nil {
			s.finish(w, verb, &req, nil, err, start)
			return
		}
		if err := req.Validate(verb); err != nil {
			s.finish(w, verb, &req, nil, err, start)
			return
		}
		s.log.Debug("CNI request", "verb", verb, "container", req.ContainerID, "ifname", req.IfName, "pod", req.Pod.String())

		t := s.queue.Enqueue(req.ContainerID)
		if s.onQueued != nil {
			s.onQueued(verb, req.ContainerID)
		}
		if err := t.Wait(ctx); err != nil {
			s.finish(w, verb, &req, nil, fmt.Errorf("waiting for earlier operations on container %s: %w", req.ContainerID, err), start)
			return
		}
		defer t.Release()

		var result *current.Result
		err = s.protect(verb, req.ContainerID, func() error {
			var err error
			switch verb {
			case cniapi.VerbAdd:
				result, err = s.h.Add(ctx, &req)
				if err == nil {
					result, err = normaliseResult(result)
				}
			case cniapi.VerbDel:
				err = s.h.Del(ctx, &req)
			case cniapi.VerbCheck:
				err = s.h.Check(ctx, &req)
			}
			return err
		})
		s.finish(w, verb, &req, result, err, start)
	}
}

func (s *Server) serveGC(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel, err := s.requestContext(r)
	if err != nil {
		s.finish(w, cniapi.VerbGC, nil, nil, err, start)
		return
	}
	defer cancel()
	var req cniapi.GCRequest
	if err := s.decode(w, r, &req); err != nil {
		s.finish(w, cniapi.VerbGC, nil, nil, err, start)
		return
	}
	if req.ValidAttachments == nil {
		// An absent list would read as "nothing is valid"; make that explicit
		// so the handler never has to tell nil from empty.
		req.ValidAttachments = []types.GCAttachment{}
	}
	s.log.Debug("CNI request", "verb", cniapi.VerbGC, "network", req.Network, "validAttachments", len(req.ValidAttachments))
	err = s.protect(cniapi.VerbGC, "", func() error { return s.h.GC(ctx, &req) })
	s.finish(w, cniapi.VerbGC, nil, nil, err, start)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel, err := s.requestContext(r)
	if err != nil {
		s.finish(w, cniapi.VerbStatus, nil, nil, err, start)
		return
	}
	defer cancel()
	var req cniapi.StatusRequest
	if err := s.decode(w, r, &req); err != nil {
		s.finish(w, cniapi.VerbStatus, nil, nil, err, start)
		return
	}
	err = s.protect(cniapi.VerbStatus, "", func() error { return s.h.Status(ctx) })
	if err != nil {
		// Whatever keeps the agent from serving, STATUS's answer to the
		// runtime is "not available", unless the handler said more.
		e := toCNIError(cniapi.VerbStatus, err)
		if e.Code != types.ErrLimitedConnectivity && e.Code != types.ErrPluginNotAvailable {
			e = types.NewError(types.ErrPluginNotAvailable, e.Msg, e.Details)
		}
		err = e
	}
	s.finish(w, cniapi.VerbStatus, nil, nil, err, start)
}

func (s *Server) serveVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, cniapi.VersionInfo{APIVersions: []string{cniapi.APIVersion}, Agent: s.cfg.AgentVersion})
}

func (s *Server) serveUnknown(w http.ResponseWriter, r *http.Request) {
	status := http.StatusNotFound
	switch r.URL.Path {
	case cniapi.PathAdd, cniapi.PathDel, cniapi.PathCheck, cniapi.PathGC, cniapi.PathStatus, cniapi.PathVersion:
		status = http.StatusMethodNotAllowed
	}
	writeJSON(w, status, types.NewError(cniapi.CodeProtocol,
		fmt.Sprintf("the ovsnet agent does not serve %s %s", r.Method, r.URL.Path),
		fmt.Sprintf("this agent serves CNI API %s", cniapi.APIVersion)))
}

// protect runs fn and turns a panic into an error, so one bad request cannot
// take the agent down.
func (s *Server) protect(verb cniapi.Verb, containerID string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("CNI handler panicked", "verb", verb, "container", containerID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = types.NewError(cniapi.CodeAgentInternal,
				fmt.Sprintf("ovsnet agent internal error during %s", verb),
				"the agent recovered from a panic; its log has the stack trace; please report it")
		}
	}()
	return fn()
}

// normaliseResult stamps a handler's result with the current CNI version.
// The result type is the same for 1.0.0 and 1.1.0; any other version on it
// is a handler bug.
func normaliseResult(r *current.Result) (*current.Result, error) {
	if r == nil {
		return nil, types.NewError(cniapi.CodeAgentInternal, "ovsnet agent produced no result for ADD", "")
	}
	switch r.CNIVersion {
	case cniapi.CurrentCNIVersion:
		return r, nil
	case "", "1.0.0":
		c := *r
		c.CNIVersion = cniapi.CurrentCNIVersion
		return &c, nil
	}
	return nil, types.NewError(cniapi.CodeAgentInternal,
		fmt.Sprintf("ovsnet agent produced a result labelled cniVersion %q", r.CNIVersion), "")
}

// finish maps err to a CNI error, writes the answer and logs the outcome.
func (s *Server) finish(w http.ResponseWriter, verb cniapi.Verb, req *cniapi.Request, result *current.Result, err error, start time.Time) {
	attrs := []any{"verb", verb, "duration", time.Since(start)}
	if req != nil {
		attrs = append(attrs, "container", req.ContainerID, "ifname", req.IfName)
		if p := req.Pod.String(); p != "" {
			attrs = append(attrs, "pod", p)
		}
	}
	level := slog.LevelInfo
	if verb == cniapi.VerbStatus {
		// Runtimes poll STATUS every few seconds.
		level = slog.LevelDebug
	}
	if err != nil {
		e := toCNIError(verb, err)
		errLevel := slog.LevelWarn
		if verb == cniapi.VerbStatus {
			// A not-ready agent fails every poll; its readiness reporting
			// already says why, once.
			errLevel = slog.LevelDebug
		}
		s.log.Log(context.Background(), errLevel, "CNI request failed", append(attrs, "code", e.Code, "error", e.Error())...)
		writeJSON(w, httpStatus(e.Code), e)
		return
	}
	if result != nil {
		ips := make([]string, 0, len(result.IPs))
		for _, ip := range result.IPs {
			ips = append(ips, ip.Address.String())
		}
		attrs = append(attrs, "ips", ips)
	}
	s.log.Log(context.Background(), level, "CNI request done", attrs...)
	if result != nil {
		writeJSON(w, http.StatusOK, result)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// toCNIError maps a handler or server error to the CNI error sent back.
func toCNIError(verb cniapi.Verb, err error) *types.Error {
	var coded *Error
	if errors.As(err, &coded) && coded != nil {
		return coded.cniError(err)
	}
	var ce *types.Error
	if errors.As(err, &ce) && ce != nil {
		code := ce.Code
		if code == 0 {
			code = cniapi.CodeAgentInternal
		}
		if ce == err {
			return types.NewError(code, ce.Msg, ce.Details)
		}
		// Wrapped: the outer text says where it happened, the inner code
		// says what the runtime should do.
		return types.NewError(code, err.Error(), "")
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("ovsnet agent did not finish %s within the request's deadline", verb), err.Error())
	case errors.Is(err, context.Canceled):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("ovsnet agent abandoned %s: the plugin went away or the agent is stopping", verb), err.Error())
	}
	return types.NewError(cniapi.CodeAgentInternal, fmt.Sprintf("ovsnet agent failed %s: %v", verb, err), "")
}

// httpStatus picks an HTTP status for a CNI code; the plugin reads the code
// from the body, the status only helps humans with curl and proxies.
func httpStatus(code uint) int {
	switch code {
	case types.ErrTryAgainLater, types.ErrPluginNotAvailable, types.ErrLimitedConnectivity:
		return http.StatusServiceUnavailable
	case types.ErrIncompatibleCNIVersion, types.ErrUnsupportedField, types.ErrInvalidEnvironmentVariables,
		types.ErrDecodingFailure, types.ErrInvalidNetworkConfig:
		return http.StatusBadRequest
	case types.ErrUnknownContainer:
		return http.StatusNotFound
	case cniapi.CodeProtocol:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(types.NewError(cniapi.CodeAgentInternal, "ovsnet agent could not encode its answer", err.Error()))
	}
	data = append(data, '\n')
	// An explicit length keeps every answer unchunked: the plugin's small
	// HTTP client relies on it.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// tracker counts running handler calls so that Serve returns only after the
// last one; unlike sync.WaitGroup it tolerates calls arriving while it waits
// (they are refused).
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to 0 after closeAndWait began
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	<-idle
}

package ofconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/ovs/sockwatch"
)

// Defaults for Config's zero fields.
const (
	DefaultEchoInterval     = 2 * time.Second
	DefaultDeadTimeout      = 4 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMinBackoff       = 10 * time.Millisecond
	DefaultMaxBackoff       = time.Second
)

// Config configures a Conn.
type Config struct {
	// Bridge is the bridge's name, e.g. "br-int". It names the management
	// socket and appears in errors and logs.
	Bridge string
	// RunDir is OVS's run directory; the management socket is
	// <RunDir>/<Bridge>.mgmt. Empty: the platform's default OVS run
	// directory.
	RunDir string
	// Socket is the management socket's path; it overrides RunDir.
	Socket string

	// EchoInterval: an ECHO_REQUEST is sent after this long without
	// receiving anything (default 2 s).
	EchoInterval time.Duration
	// DeadTimeout: the session ends when nothing arrives this long after an
	// ECHO_REQUEST (default 4 s). It also bounds a write that makes no
	// progress.
	DeadTimeout time.Duration
	// HandshakeTimeout bounds one connection attempt, from dialing to the
	// end of the port dump (default 10 s).
	HandshakeTimeout time.Duration
	// MinBackoff and MaxBackoff pace reconnection attempts (default 10 ms
	// and 1 s). They pace retries of a socket that refuses; the creation of
	// the socket by a restarted ovs-vswitchd, and Retry, cut them short.
	MinBackoff, MaxBackoff time.Duration

	// Ports, if not nil, is reset from the PORT_DESC dump of every session
	// and updated by every PORT_STATUS.
	Ports *ports.Table
	// PacketIn, if not nil, receives PACKET_IN messages. Sends never block:
	// when the channel is full the message is dropped and counted.
	PacketIn chan<- *openflow.PacketIn
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger

	// onPortStatus, if set, is called on the receive goroutine after each
	// PORT_STATUS was applied to Ports, with the time it was read. It lets
	// tests and benchmarks see the raw arrival time; it must not block.
	onPortStatus func(at time.Time, reason openflow.PortReason, p *openflow.Port)
}

// Errors callers can test for with errors.Is.
var (
	// ErrDisconnected: the request's session ended (or there was none); the
	// switch may or may not have processed what was sent. Wait for the next
	// session with WaitSession and resynchronise.
	ErrDisconnected = errors.New("OpenFlow connection to ovs-vswitchd is down")
	// ErrDeadPeer is why a session ends when ovs-vswitchd stops answering.
	ErrDeadPeer = errors.New("ovs-vswitchd stopped answering on the OpenFlow connection")
	// ErrUnsupportedVersion: the bridge does not accept OpenFlow 1.3; the
	// error that wraps it names the bridge and the fix.
	ErrUnsupportedVersion = errors.New("does not accept OpenFlow 1.3")
	// ErrNotSupported: this platform has no OpenFlow connection support yet.
	ErrNotSupported = errors.New("OpenFlow connection not supported on this platform")
	// ErrClosed is why the last session ends when Run's context ends.
	ErrClosed = errors.New("OpenFlow connection closed by ovsnet")
)

// Conn is the controller connection to one bridge. Create it with New and
// start it with Run; its methods are safe for concurrent use.
type Conn struct {
	cfg    Config
	socket string
	log    *slog.Logger

	xid      atomic.Uint32
	bundleID atomic.Uint32
	stats    counters

	mu      sync.Mutex
	cur     *Session // published session, nil while none
	lastErr error    // why there is no session
	seq     uint64
	changed chan struct{} // closed and replaced when cur changes
	running bool
	retry   chan struct{} // Retry's wake-up, capacity 1
}

// New checks cfg and returns a connection that is not yet dialing.
func New(cfg Config) (*Conn, error) {
	if cfg.Bridge == "" && cfg.Socket == "" {
		return nil, errors.New("OpenFlow connection: no bridge name and no socket path given")
	}
	if cfg.Socket == "" {
		dir := cfg.RunDir
		if dir == "" {
			dir = defaultRunDir
		}
		cfg.Socket = filepath.Join(dir, cfg.Bridge+".mgmt")
	}
	if cfg.Bridge == "" {
		cfg.Bridge = cfg.Socket
	}
	cfg.EchoInterval = positive(cfg.EchoInterval, DefaultEchoInterval)
	cfg.DeadTimeout = positive(cfg.DeadTimeout, DefaultDeadTimeout)
	cfg.HandshakeTimeout = positive(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.MinBackoff = positive(cfg.MinBackoff, DefaultMinBackoff)
	cfg.MaxBackoff = positive(cfg.MaxBackoff, DefaultMaxBackoff)
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{
		cfg:     cfg,
		socket:  cfg.Socket,
		log:     log.With("bridge", cfg.Bridge),
		lastErr: errors.New("not connected yet"),
		changed: make(chan struct{}),
		retry:   make(chan struct{}, 1),
	}, nil
}

func positive(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// nextXID returns a transaction id, never 0: some switches treat 0 as "no
// xid", and the connection's own keepalive uses ids from the same space.
func (c *Conn) nextXID() uint32 {
	for {
		if x := c.xid.Add(1); x != 0 {
			return x
		}
	}
}

func (c *Conn) nextBundleID() uint32 {
	for {
		if id := c.bundleID.Add(1); id != 0 {
			return id
		}
	}
}

// Run connects, keeps the connection up and reconnects with backoff until
// ctx ends; it returns nil then, after the last session has ended. Run may
// be called once.
func (c *Conn) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return fmt.Errorf("OpenFlow connection to bridge %s is already running", c.cfg.Bridge)
	}
	c.running = true
	c.mu.Unlock()

	backoff := c.cfg.MinBackoff
	failures := 0
	// A restarted ovs-vswitchd creates the bridge's management socket anew:
	// watching for that connects at once rather than at the next backoff
	// tick, which has grown while ovs-vswitchd was away.
	var watch *sockwatch.Watcher
	defer func() { watch.Close() }()
	for ctx.Err() == nil {
		watch = c.rewatch(watch)
		// This attempt is what a pending Retry asked for; left pending it
		// would cut short the pause after the next session loss.
		select {
		case <-c.retry:
		default:
		}
		s, err := c.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			c.stats.connectFailures.Add(1)
			c.setLastErr(err)
			// The first failure and then every 20th is logged: a restarting
			// ovs-vswitchd is normal and must not flood the log.
			if failures == 1 || failures%20 == 0 {
				c.log.Info("cannot open OpenFlow session, retrying", "err", err, "attempts", failures)
			}
			woke, ok := c.pause(ctx, backoff, watch)
			if !ok {
				break
			}
			if woke {
				// The socket was just created or the bridge gate passed;
				// should it not accept yet (bound, not listening; or the
				// signal was an older creation's), try again soon.
				backoff = min(time.Millisecond, c.cfg.MinBackoff)
			} else {
				backoff = min(backoff*2, c.cfg.MaxBackoff)
			}
			continue
		}
		failures, backoff = 0, c.cfg.MinBackoff
		c.publish(s)
		c.log.Info("OpenFlow session up", "seq", s.Seq, "datapath_id", fmt.Sprintf("%016x", s.DatapathID), "ports", s.nPorts)
		select {
		case <-s.done:
		case <-ctx.Done():
			s.fail(ErrClosed)
		}
		s.wait()
		c.stats.disconnects.Add(1)
		err = s.Err()
		c.unpublish(s, err)
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("OpenFlow session lost, reconnecting", "seq", s.Seq, "err", err)
		woke, ok := c.pause(ctx, backoff, watch)
		if !ok {
			break
		}
		if woke {
			backoff = min(time.Millisecond, c.cfg.MinBackoff)
		}
	}
	c.setLastErr(ErrClosed)
	return nil
}

// rewatch returns a live watch for the creation of the management socket,
// starting one if w is nil or over (nil where that is not possible). A
// signal is never discarded: one left from a creation the last attempt
// already saw costs one quick extra attempt, while a dropped one could
// leave the connection waiting out a full backoff.
func (c *Conn) rewatch(w *sockwatch.Watcher) *sockwatch.Watcher {
	if w != nil {
		select {
		case <-w.Done():
			w = nil
		default:
		}
	}
	if w == nil {
		var err error
		if w, err = sockwatch.New(c.socket); err != nil {
			c.log.Debug("not watching for the management socket; reconnecting on backoff and Retry alone", "err", err)
			w = nil
		}
	}
	return w
}

// Retry makes a connection attempt waiting out its backoff start now. Call
// it when something says the switch is back (the bridge gate passed: the
// management socket exists), so the session does not lag behind a backoff
// that grew while ovs-vswitchd was down.
func (c *Conn) Retry() {
	select {
	case c.retry <- struct{}{}:
	default:
	}
}

// pause waits out a reconnect backoff, cut short by Retry or by the
// creation of the management socket; woke says it was cut short.
func (c *Conn) pause(ctx context.Context, d time.Duration, w *sockwatch.Watcher) (woke, ok bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false, true
	case <-c.retry:
		return true, true
	case <-w.C():
		return true, true
	case <-ctx.Done():
		return false, false
	}
}

func (c *Conn) publish(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	s.Seq = c.seq
	c.cur, c.lastErr = s, nil
	c.stats.sessions.Add(1)
	c.broadcastLocked()
}

func (c *Conn) unpublish(s *Session, why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == s {
		c.cur, c.lastErr = nil, why
		c.broadcastLocked()
	}
}

func (c *Conn) setLastErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
}

func (c *Conn) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Session returns the live session, or nil and why there is none.
func (c *Conn) Session() (*Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && c.cur.Err() == nil {
		return c.cur, nil
	}
	why := c.lastErr
	if c.cur != nil {
		why = c.cur.Err()
	}
	return nil, why
}

// LastError says why there is no live session (nil while there is one), for
// readiness reports.
func (c *Conn) LastError() error {
	_, err := c.Session()
	return err
}

// WaitSession returns the live session, waiting for one until ctx ends.
func (c *Conn) WaitSession(ctx context.Context) (*Session, error) {
	for {
		c.mu.Lock()
		s, ch, why := c.cur, c.changed, c.lastErr
		c.mu.Unlock()
		if s != nil {
			select {
			case <-s.done:
				// Ended but not yet unpublished: Run announces the change.
			default:
				return s, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an OpenFlow session with bridge %s (last error: %v): %w", c.cfg.Bridge, why, ctx.Err())
		}
	}
}

// current returns the live session or fails fast.
func (c *Conn) current() (*Session, error) {
	s, why := c.Session()
	if s == nil {
		return nil, fmt.Errorf("bridge %s: %w (%v)", c.cfg.Bridge, ErrDisconnected, why)
	}
	return s, nil
}

// Request sends req on the current session; see Session.Request.
func (c *Conn) Request(ctx context.Context, req openflow.Message) (openflow.Message, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	return s.Request(ctx, req)
}

// Multipart sends req on the current session; see Session.Multipart.
func (c *Conn) Multipart(ctx context.Context, req openflow.Message) ([]openflow.Message, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	return s.Multipart(ctx, req)
}

// Barrier waits on the current session; see Session.Barrier.
func (c *Conn) Barrier(ctx context.Context) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	return s.Barrier(ctx)
}

// Send writes msgs on the current session; see Session.Send.
func (c *Conn) Send(ctx context.Context, msgs ...openflow.Message) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	return s.Send(ctx, msgs...)
}

// Apply applies msgs on the current session; see Session.Apply.
func (c *Conn) Apply(ctx context.Context, msgs ...openflow.Message) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	return s.Apply(ctx, msgs...)
}

// Bundle applies msgs atomically on the current session; see
// Session.Bundle.
func (c *Conn) Bundle(ctx context.Context, msgs []openflow.Message) error {
	s, err := c.current()
	if err != nil {
		return err
	}
	return s.Bundle(ctx, msgs)
}

// DumpFlows dumps flows on the current session; see Session.DumpFlows.
func (c *Conn) DumpFlows(ctx context.Context, req *openflow.FlowStatsRequest) ([]openflow.FlowStats, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	return s.DumpFlows(ctx, req)
}

// PortDesc dumps the port descriptions on the current session; see
// Session.PortDesc.
func (c *Conn) PortDesc(ctx context.Context) ([]openflow.Port, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	return s.PortDesc(ctx)
}

// Stats are the connection's counters since New, for metrics.
type Stats struct {
	// Connected: a session is live.
	Connected bool
	// Seq of the live session, or of the last one.
	Seq uint64
	// Sessions published; Sessions-1 is the number of reconnections.
	Sessions uint64
	// ConnectFailures counts failed dials and handshakes.
	ConnectFailures uint64
	// Disconnects counts sessions that ended.
	Disconnects uint64
	// DeadPeer counts sessions ended because the switch stopped answering.
	DeadPeer uint64
	// PortStatus counts PORT_STATUS messages received.
	PortStatus uint64
	// PacketIn counts PACKET_IN messages received; PacketInDropped those
	// dropped because the PacketIn channel was full (or not set).
	PacketIn, PacketInDropped uint64
	// Errors counts OpenFlow ERROR messages received, UnsolicitedErrors
	// those matching no waiting request (e.g. for a message given to Send).
	Errors, UnsolicitedErrors uint64
	// Unexpected counts messages nobody waited for (late replies after a
	// caller gave up, unsolicited types).
	Unexpected uint64
	// DecodeErrors counts messages whose body could not be decoded.
	DecodeErrors uint64
}

type counters struct {
	sessions, connectFailures, disconnects, deadPeer   atomic.Uint64
	portStatus, packetIn, packetInDropped              atomic.Uint64
	errors, unsolicitedErrors, unexpected, decodeError atomic.Uint64
}

// Stats returns the current counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	connected := c.cur != nil && c.cur.Err() == nil
	seq := c.seq
	c.mu.Unlock()
	return Stats{
		Connected:         connected,
		Seq:               seq,
		Sessions:          c.stats.sessions.Load(),
		ConnectFailures:   c.stats.connectFailures.Load(),
		Disconnects:       c.stats.disconnects.Load(),
		DeadPeer:          c.stats.deadPeer.Load(),
		PortStatus:        c.stats.portStatus.Load(),
		PacketIn:          c.stats.packetIn.Load(),
		PacketInDropped:   c.stats.packetInDropped.Load(),
		Errors:            c.stats.errors.Load(),
		UnsolicitedErrors: c.stats.unsolicitedErrors.Load(),
		Unexpected:        c.stats.unexpected.Load(),
		DecodeErrors:      c.stats.decodeError.Load(),
	}
}

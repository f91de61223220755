// Package ovsdb is ovsnet's client of the Open_vSwitch database. It keeps a
// monitored cache of the tables the agent needs (Open_vSwitch, Bridge, Port,
// Interface), reconnects by itself, offers typed operations, and expresses
// every wait as a condition on the cache that is re-evaluated whenever the
// cache or the connection changes: no polling, no sleeps.
//
// It knows nothing of pods or Kubernetes.
package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
	"github.com/ovsnet/ovsnet/internal/ovs/sockwatch"
)

// DefaultEndpoint is where Open vSwitch's ovsdb-server listens by default.
const DefaultEndpoint = "unix:/run/openvswitch/db.sock"

// ErrNotConnected is returned by reads and writes while there is no live,
// monitored connection to ovsdb-server.
var ErrNotConnected = errors.New("not connected to ovsdb-server")

// Config configures a Client.
type Config struct {
	// Endpoint is an OVSDB endpoint: unix:/path or tcp:host:port.
	Endpoint string
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff pace reconnection attempts (defaults 50 ms
	// and 2 s). They pace retries of a server that refuses; with a unix
	// endpoint, the creation of the socket by a restarted ovsdb-server cuts
	// them short.
	MinBackoff, MaxBackoff time.Duration
}

// Client is a self-reconnecting OVSDB client with a monitored cache.
// Create it with New and start it with Run.
type Client struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	cl      client.Client // nil while disconnected
	lastErr error         // why the last connection attempt failed
	changed chan struct{} // closed and replaced on every change
	connSeq uint64        // bumped on every successful (re)connect
	running bool

	ifaceListeners []func(name string)
}

// New validates cfg and returns a client that is not yet connected.
func New(cfg Config) (*Client, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if err := checkEndpoint(cfg.Endpoint); err != nil {
		return nil, err
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log.With("ovsdb", cfg.Endpoint), changed: make(chan struct{})}, nil
}

func checkEndpoint(ep string) error {
	for _, p := range []string{"unix:", "tcp:", "ssl:"} {
		if len(ep) > len(p) && ep[:len(p)] == p {
			if p == "ssl:" {
				return fmt.Errorf("OVSDB endpoint %q: ssl is not supported yet; use a unix or tcp endpoint", ep)
			}
			return nil
		}
	}
	return fmt.Errorf("OVSDB endpoint %q: want unix:/path/to/db.sock or tcp:host:port", ep)
}

// monitoredModel is the part of the schema ovsnet reads and writes.
func monitoredModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel(vswitch.Schema().Name, map[string]model.Model{
		vswitch.OpenvSwitchTable: &vswitch.OpenvSwitch{},
		vswitch.BridgeTable:      &vswitch.Bridge{},
		vswitch.PortTable:        &vswitch.Port{},
		vswitch.InterfaceTable:   &vswitch.Interface{},
	})
}

// monitor leaves out columns that change on their own every few seconds
// (statistics), which would wake every waiter for nothing.
func monitor(cl client.Client) *client.Monitor {
	ovs := &vswitch.OpenvSwitch{}
	br := &vswitch.Bridge{}
	port := &vswitch.Port{}
	iface := &vswitch.Interface{}
	return cl.NewMonitor(
		client.WithTable(ovs, &ovs.Bridges, &ovs.CurCfg, &ovs.NextCfg, &ovs.ExternalIDs,
			&ovs.OtherConfig, &ovs.OVSVersion, &ovs.DatapathTypes, &ovs.IfaceTypes),
		client.WithTable(br, &br.Name, &br.DatapathID, &br.DatapathType, &br.ExternalIDs,
			&br.FailMode, &br.OtherConfig, &br.Ports, &br.Protocols, &br.Controller),
		client.WithTable(port, &port.Name, &port.Interfaces, &port.ExternalIDs, &port.Tag),
		client.WithTable(iface, &iface.Name, &iface.Type, &iface.Ofport, &iface.OfportRequest,
			&iface.ExternalIDs, &iface.Error, &iface.Options, &iface.MACInUse, &iface.LinkState,
			&iface.AdminState, &iface.Ifindex),
	)
}

// Run connects and stays connected until ctx ends, reconnecting whenever the
// connection drops: at once when the server's socket is created again, with
// backoff otherwise. It returns only when ctx is done.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("ovsdb client is already running")
	}
	c.running = true
	c.mu.Unlock()

	backoff := c.cfg.MinBackoff
	failures := 0
	// A restarted ovsdb-server creates its socket anew: watching for that
	// reconnects at once rather than at the next backoff tick, which has
	// grown while the server was away (a restart of the OVS container).
	var watch *sockwatch.Watcher
	defer func() { watch.Close() }()
	for ctx.Err() == nil {
		watch = c.rewatch(watch)
		cl, err := c.connect(ctx)
		if err != nil {
			failures++
			c.setDisconnected(err)
			// The first failure and then every 20th is logged: ovsdb-server
			// being down at start is normal and need not flood the log.
			if failures == 1 || failures%20 == 0 {
				c.log.Info("cannot connect to ovsdb-server, retrying", "err", err, "attempts", failures)
			}
			woke, ok := pause(ctx, backoff, watch)
			if !ok {
				break
			}
			if woke {
				// The socket was just created; should it not accept yet
				// (bound, not listening; or the signal was an older
				// creation's), try again soon.
				backoff = min(time.Millisecond, c.cfg.MinBackoff)
			} else {
				backoff = min(backoff*2, c.cfg.MaxBackoff)
			}
			continue
		}
		failures, backoff = 0, c.cfg.MinBackoff
		c.log.Info("connected to ovsdb-server")
		select {
		case <-cl.DisconnectNotify():
			c.log.Warn("connection to ovsdb-server lost, reconnecting")
			c.setDisconnected(errors.New("connection to ovsdb-server lost"))
		case <-ctx.Done():
			c.setDisconnected(ctx.Err())
			cl.Close()
		}
	}
	return nil
}

// rewatch returns a live watch for the creation of the server's unix
// socket, starting one if w is nil or over (nil when there is nothing to
// watch: a TCP endpoint, a missing directory, another platform). A signal
// is never discarded: one left from a creation the last attempt already
// saw costs one quick extra attempt, while a dropped one could leave the
// client waiting out a full backoff.
func (c *Client) rewatch(w *sockwatch.Watcher) *sockwatch.Watcher {
	if w != nil {
		select {
		case <-w.Done():
			w = nil
		default:
		}
	}
	path, ok := strings.CutPrefix(c.cfg.Endpoint, "unix:")
	if w == nil && ok {
		var err error
		if w, err = sockwatch.New(path); err != nil {
			c.log.Debug("not watching for the ovsdb-server socket; reconnecting on backoff alone", "err", err)
			w = nil
		}
	}
	return w
}

// pause waits d, or less if the watched socket is created; it reports
// which, and false when ctx ended.
func pause(ctx context.Context, d time.Duration, w *sockwatch.Watcher) (woke, ok bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false, true
	case <-w.C():
		return true, true
	case <-ctx.Done():
		return false, false
	}
}

// connect makes a fresh libovsdb client for each connection: its cache and
// monitors then start clean, and nothing depends on the library's internal
// reconnect state.
func (c *Client) connect(ctx context.Context) (client.Client, error) {
	dbModel, err := monitoredModel()
	if err != nil {
		return nil, fmt.Errorf("build OVSDB model: %w", err)
	}
	lg := logr.FromSlogHandler(c.log.Handler())
	cl, err := client.NewOVSDBClient(dbModel, client.WithEndpoint(c.cfg.Endpoint), client.WithLogger(&lg))
	if err != nil {
		return nil, fmt.Errorf("create OVSDB client for %s: %w", c.cfg.Endpoint, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.Connect(cctx); err != nil {
		return nil, fmt.Errorf("connect to ovsdb-server at %s: %w", c.cfg.Endpoint, err)
	}
	// Handlers run after the cache has applied an update, so a woken waiter
	// reads the new state.
	cl.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(_ string, m model.Model) { c.changedRow(m) },
		UpdateFunc: func(_ string, _, m model.Model) { c.changedRow(m) },
		DeleteFunc: func(_ string, m model.Model) { c.changedRow(m) },
	})
	if _, err := cl.Monitor(cctx, monitor(cl)); err != nil {
		cl.Close()
		return nil, fmt.Errorf("monitor the Open_vSwitch database at %s: %w", c.cfg.Endpoint, err)
	}
	c.mu.Lock()
	c.cl, c.lastErr = cl, nil
	c.connSeq++
	c.broadcastLocked()
	c.mu.Unlock()
	return cl, nil
}

func (c *Client) setDisconnected(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cl, c.lastErr = nil, err
	c.broadcastLocked()
}

func (c *Client) changedRow(m model.Model) {
	c.mu.Lock()
	c.broadcastLocked()
	listeners := c.ifaceListeners
	c.mu.Unlock()
	if iface, ok := m.(*vswitch.Interface); ok {
		for _, l := range listeners {
			l(iface.Name)
		}
	}
}

// OnInterfaceChange registers f to be called with the name of every
// Interface row that is added, changed or deleted, including every row
// again after a reconnect. f runs on the cache's event goroutine and must
// not block: record the name and return.
func (c *Client) OnInterfaceChange(f func(name string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ifaceListeners = append(c.ifaceListeners, f)
}

func (c *Client) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of the cache or of the
// connection. Take it before reading the state it guards.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Connected reports whether the cache is live; if not, err says why.
func (c *Client) Connected() (ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl != nil {
		return true, nil
	}
	if c.lastErr != nil {
		return false, c.lastErr
	}
	return false, ErrNotConnected
}

// ConnectionSeq counts successful connections; a change means the cache was
// rebuilt from scratch.
func (c *Client) ConnectionSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connSeq
}

func (c *Client) current() (client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl == nil {
		return nil, ErrNotConnected
	}
	return c.cl, nil
}

// Wait blocks until cond holds, re-evaluating it after every change of the
// cache or the connection. cond reads the cache through the client and must
// not block. A non-nil error from cond ends the wait with that error. what
// names the condition in the error when ctx ends first.
func (c *Client) Wait(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		ch := c.Changed()
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// WaitConnected blocks until the cache is live.
func (c *Client) WaitConnected(ctx context.Context) error {
	err := c.Wait(ctx, "a connection to ovsdb-server", func() (bool, error) {
		ok, _ := c.Connected()
		return ok, nil
	})
	if err != nil {
		if _, why := c.Connected(); why != nil {
			return fmt.Errorf("%w (last error: %v)", err, why)
		}
	}
	return err
}

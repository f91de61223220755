package ofconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Session is one live OpenFlow connection after its handshake. Seq and
// DatapathID never change; the methods are safe for concurrent use. Every
// request made on a session fails with ErrDisconnected once it ends.
type Session struct {
	// Seq numbers the sessions of a Conn from 1; a new number means a new
	// connection, possibly to a restarted ovs-vswitchd that lost all flows.
	Seq uint64
	// DatapathID is the bridge's datapath id from FEATURES_REPLY, the value
	// OVSDB shows in Bridge.datapath_id (as 16 hex digits).
	DatapathID uint64
	// NTables is the number of flow tables the switch reported.
	NTables uint8

	c      *Conn
	nc     net.Conn
	rd     *openflow.Reader
	start  time.Time
	nPorts int // ports in the handshake dump, for the log

	// wsem serialises writes; a channel so waiting for it honours ctx.
	wsem chan struct{}

	mu      sync.Mutex
	pending map[uint32]*call
	err     error
	ended   time.Time // when err was set
	done    chan struct{}

	lastRecv atomic.Int64 // nanoseconds since start of the last read
	echoReqs chan *openflow.EchoRequest
	loops    sync.WaitGroup
}

// call is one outstanding transaction.
type call struct {
	multipart bool
	parts     []openflow.Message
	// ch receives the outcome; buffered so the receive loop never blocks.
	ch chan result
	// inline, if set, runs on the receive goroutine with the complete reply
	// before anything that follows it in the stream is processed.
	inline func(parts []openflow.Message)
	// batch, if set, makes this a message without a reply whose ERROR is
	// recorded in batch under index.
	batch *batch
	index int
	msg   openflow.Message
	// ignore: nobody waits; the answer is dropped.
	ignore bool
}

type result struct {
	msgs []openflow.Message
	err  error
}

// batch collects the errors of messages that get no reply on success.
type batch struct {
	mu       sync.Mutex
	rejected []Rejected
}

func (b *batch) add(r Rejected) {
	b.mu.Lock()
	b.rejected = append(b.rejected, r)
	b.mu.Unlock()
}

func (b *batch) take() []Rejected {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rejected
	b.rejected = nil
	return r
}

func newSession(c *Conn, nc net.Conn) *Session {
	return &Session{
		c:        c,
		nc:       nc,
		rd:       openflow.NewReader(bufio.NewReaderSize(nc, 64<<10)),
		start:    time.Now(),
		wsem:     make(chan struct{}, 1),
		pending:  map[uint32]*call{},
		done:     make(chan struct{}),
		echoReqs: make(chan *openflow.EchoRequest, 16),
	}
}

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended; nil while it is live.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail ends the session with err (the first reason wins) and closes the
// socket, which unblocks the receive loop and any write. It reports whether
// err is the reason.
func (s *Session) fail(err error) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	s.err = err
	s.ended = time.Now()
	close(s.done)
	s.mu.Unlock()
	_ = s.nc.Close()
	return true
}

// failDead ends the session because the switch stopped answering.
func (s *Session) failDead(err error) {
	if s.fail(fmt.Errorf("%w: %w", ErrDeadPeer, err)) {
		s.c.stats.deadPeer.Add(1)
	}
}

// wait returns once the session's goroutines have exited.
func (s *Session) wait() { s.loops.Wait() }

// disconnected is the error for a request whose session ended.
func (s *Session) disconnected(what string) error {
	return fmt.Errorf("%s on bridge %s: %w (%v)", what, s.c.cfg.Bridge, ErrDisconnected, s.Err())
}

func (s *Session) now() int64 { return int64(time.Since(s.start)) }

// run starts the receive and keepalive loops.
func (s *Session) run() {
	s.lastRecv.Store(s.now())
	s.loops.Add(2)
	go s.receive()
	go s.keepalive()
}

func (s *Session) register(xid uint32, cl *call) {
	s.mu.Lock()
	s.pending[xid] = cl
	s.mu.Unlock()
}

func (s *Session) forget(xids ...uint32) {
	s.mu.Lock()
	for _, x := range xids {
		delete(s.pending, x)
	}
	s.mu.Unlock()
}

// await waits for cl's outcome; every error it returns names what. A
// reply that raced with the end of the session still counts.
func (s *Session) await(ctx context.Context, xid uint32, cl *call, what string) ([]openflow.Message, error) {
	outcome := func(r result) ([]openflow.Message, error) {
		if r.err != nil {
			return nil, fmt.Errorf("%s on bridge %s: %w", what, s.c.cfg.Bridge, r.err)
		}
		return r.msgs, nil
	}
	select {
	case r := <-cl.ch:
		return outcome(r)
	case <-s.done:
		select {
		case r := <-cl.ch:
			return outcome(r)
		default:
		}
		return nil, s.disconnected(what)
	case <-ctx.Done():
		s.forget(xid)
		return nil, fmt.Errorf("%s on bridge %s: %w", what, s.c.cfg.Bridge, ctx.Err())
	}
}

// writeChunk bounds each write system call: a peer that accepts nothing
// for DeadTimeout is dead, while a large batch to a busy but live switch may
// take longer than that in total.
const writeChunk = 64 << 10

// write sends b, which holds whole messages, as one unit: no other writer's
// message can interleave. A failed write ends the session, since a partial
// message has broken the stream.
func (s *Session) write(ctx context.Context, b []byte, what string) error {
	select {
	case s.wsem <- struct{}{}:
	case <-s.done:
		return s.disconnected(what)
	case <-ctx.Done():
		return fmt.Errorf("%s on bridge %s: waiting to write: %w", what, s.c.cfg.Bridge, ctx.Err())
	}
	defer func() { <-s.wsem }()
	select {
	case <-s.done:
		return s.disconnected(what)
	default:
	}
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		if err := s.nc.SetWriteDeadline(time.Now().Add(s.c.cfg.DeadTimeout)); err != nil {
			s.fail(fmt.Errorf("set write deadline: %w", err))
			return s.disconnected(what)
		}
		if _, err := s.nc.Write(b[:n]); err != nil {
			if isTimeout(err) {
				s.failDead(fmt.Errorf("write to %s: it accepted nothing for %v: %w", s.c.socket, s.c.cfg.DeadTimeout, err))
			} else {
				s.fail(fmt.Errorf("write to %s: %w", s.c.socket, err))
			}
			return s.disconnected(what)
		}
		b = b[n:]
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// appendMsg encodes m with xid in its header without changing m, so callers
// may share and reuse messages.
func appendMsg(b []byte, m openflow.Message, xid uint32) ([]byte, error) {
	if isNil(m) {
		return b, errors.New("nil message")
	}
	start := len(b)
	b, err := m.AppendBinary(b)
	if err != nil {
		return b[:start], err
	}
	if len(b)-start < openflow.HeaderLen {
		return b[:start], fmt.Errorf("encode %T: %d bytes, shorter than a header", m, len(b)-start)
	}
	b[start+4], b[start+5], b[start+6], b[start+7] = byte(xid>>24), byte(xid>>16), byte(xid>>8), byte(xid)
	return b, nil
}

// isNil reports a nil message, also a typed nil pointer, which the codec
// cannot encode.
func isNil(m openflow.Message) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// keepalive answers the switch's echo requests and probes a silent switch.
func (s *Session) keepalive() {
	defer s.loops.Done()
	interval, dead := s.c.cfg.EchoInterval, s.c.cfg.DeadTimeout
	t := time.NewTimer(interval)
	defer t.Stop()
	// probeFrom: when the unanswered probe was about to be written; any
	// message read since then proves the switch alive. probeAt: when its
	// write completed, from which the switch gets DeadTimeout to answer.
	probeFrom, probeAt := int64(-1), int64(0)
	for {
		select {
		case <-s.done:
			return
		case req := <-s.echoReqs:
			s.sendQuietly(req.Reply(), req.Xid)
		case <-t.C:
			now, last := s.now(), s.lastRecv.Load()
			if probeFrom >= 0 && last < probeFrom {
				if waited := time.Duration(now - probeAt); waited < dead {
					t.Reset(dead - waited)
					continue
				}
				s.failDead(fmt.Errorf("no message for %v, echo request unanswered after %v (ovs-vswitchd stopped or overloaded)",
					time.Duration(now-last).Round(time.Millisecond), time.Duration(now-probeAt).Round(time.Millisecond)))
				return
			}
			probeFrom = -1
			if idle := time.Duration(now - last); idle < interval {
				t.Reset(interval - idle)
				continue
			}
			// The switch answers in order, so the wait for the reply starts
			// once the probe is written, behind any large write in progress
			// (which its own no-progress deadline bounds).
			probeFrom = s.now()
			s.sendQuietly(&openflow.EchoRequest{Data: []byte("ovsnet")}, s.c.nextXID())
			probeAt = s.now()
			t.Reset(dead)
		}
	}
}

// sendQuietly writes a message whose failure ends the session anyway. It
// waits behind other writers for as long as the session lives.
func (s *Session) sendQuietly(m openflow.Message, xid uint32) {
	b, err := appendMsg(nil, m, xid)
	if err != nil {
		s.c.log.Error("encode OpenFlow message", "type", m.Type(), "err", err)
		return
	}
	_ = s.write(context.Background(), b, m.Type().String())
}

// receive is the session's only reader: it dispatches every message in
// stream order and never waits on a consumer.
func (s *Session) receive() {
	defer s.loops.Done()
	defer func() {
		if t := s.c.cfg.Ports; t != nil {
			t.Disconnected()
		}
	}()
	var ps openflow.PortStatus // reused: PORT_STATUS decoding allocates nothing
	for {
		raw, err := s.rd.ReadRaw()
		if err != nil {
			s.fail(fmt.Errorf("read from %s: %w", s.c.socket, err))
			return
		}
		at := time.Now()
		s.lastRecv.Store(int64(at.Sub(s.start)))
		h, _ := openflow.ParseHeader(raw)
		if h.Type == openflow.TypePortStatus && h.Version == openflow.Version13 {
			if err := ps.UnmarshalBinary(raw); err != nil {
				s.decodeError(err)
				continue
			}
			s.portStatus(at, &ps)
			continue
		}
		m, err := openflow.Decode(raw)
		if err != nil {
			s.decodeError(err)
			continue
		}
		s.dispatch(m)
	}
}

func (s *Session) portStatus(at time.Time, ps *openflow.PortStatus) {
	s.c.stats.portStatus.Add(1)
	if t := s.c.cfg.Ports; t != nil {
		t.Update(ps.Reason, &ps.Port)
	}
	if h := s.c.cfg.onPortStatus; h != nil {
		h(at, ps.Reason, &ps.Port)
	}
	s.c.log.Debug("PORT_STATUS", "reason", ps.Reason, "port", ps.Port.Name, "ofport", ps.Port.PortNo, "state", ps.Port.State)
}

// decodeError skips a message the codec could not decode, failing the
// request it answers if there is one.
func (s *Session) decodeError(err error) {
	s.c.stats.decodeError.Add(1)
	var de *openflow.DecodeError
	if !errors.As(err, &de) {
		s.c.log.Warn("skipping undecodable OpenFlow message", "err", err)
		return
	}
	s.mu.Lock()
	cl := s.pending[de.Header.Xid]
	if cl != nil && cl.batch == nil {
		delete(s.pending, de.Header.Xid)
	} else {
		cl = nil
	}
	s.mu.Unlock()
	if cl != nil && !cl.ignore {
		cl.ch <- result{err: err}
		return
	}
	s.c.log.Warn("skipping undecodable OpenFlow message", "err", err)
}

func (s *Session) dispatch(m openflow.Message) {
	switch m := m.(type) {
	case *openflow.EchoRequest:
		select {
		case s.echoReqs <- m:
		default:
			// The keepalive goroutine is stuck writing; the switch will
			// see the connection as slow either way.
			s.c.log.Debug("dropping ECHO_REQUEST: replies backlogged")
		}
		return
	case *openflow.PacketIn:
		s.c.stats.packetIn.Add(1)
		if ch := s.c.cfg.PacketIn; ch != nil {
			select {
			case ch <- m:
				return
			default:
			}
		}
		s.c.stats.packetInDropped.Add(1)
		return
	}

	xid := m.XID()
	e, isErr := m.(*openflow.ErrorMsg)
	if isErr {
		s.c.stats.errors.Add(1)
	}
	s.mu.Lock()
	cl := s.pending[xid]
	final := true
	if cl != nil && !isErr && cl.batch == nil && cl.multipart {
		if mp, ok := m.(interface{ More() bool }); ok && mp.More() {
			final = false
		}
	}
	if cl != nil && final {
		delete(s.pending, xid)
	}
	s.mu.Unlock()

	switch {
	case cl == nil:
		s.unmatched(m)
	case cl.ignore:
		if isErr {
			s.c.log.Debug("OpenFlow error for an abandoned request", "err", errorText(e))
		}
	case cl.batch != nil:
		if isErr {
			cl.batch.add(Rejected{Index: cl.index, Message: cl.msg, Err: e})
		} else {
			s.c.stats.unexpected.Add(1)
			s.c.log.Debug("reply to a message that expects none", "type", m.Type(), "xid", xid)
		}
	case isErr:
		cl.ch <- result{err: e}
	default:
		cl.parts = append(cl.parts, m)
		if !final {
			return
		}
		if cl.inline != nil {
			cl.inline(cl.parts)
		}
		cl.ch <- result{msgs: cl.parts}
	}
}

func (s *Session) unmatched(m openflow.Message) {
	switch m := m.(type) {
	case *openflow.EchoReply:
		// Our keepalive: receiving it was the point.
	case *openflow.ErrorMsg:
		s.c.stats.unsolicitedErrors.Add(1)
		s.c.log.Warn("OpenFlow error for no waiting request", "err", errorText(m))
	default:
		s.c.stats.unexpected.Add(1)
		s.c.log.Debug("unexpected OpenFlow message", "type", m.Type(), "xid", m.XID())
	}
}

// errorText describes an ERROR; HELLO_FAILED carries text, not a header.
func errorText(e *openflow.ErrorMsg) string {
	if e.ErrType == openflow.ErrHelloFailed {
		return fmt.Sprintf("%s: %q", e.Name(), e.Data)
	}
	return e.Error()
}

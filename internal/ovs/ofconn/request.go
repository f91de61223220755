package ofconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Every method below assigns fresh transaction ids and writes them into the
// encoding only: the messages passed in are never modified, so callers may
// share and reuse them.

// Request sends req and returns the reply with its xid. An ERROR reply is
// returned as the error (a *openflow.ErrorMsg, testable with errors.As or
// errors.Is). req must be a message the switch answers (echo, features,
// get-config, get-async, role, barrier, bundle control); multipart requests
// go through Multipart, and messages without a reply through Apply or Send.
func (s *Session) Request(ctx context.Context, req openflow.Message) (openflow.Message, error) {
	if isNil(req) {
		return nil, errors.New("OpenFlow request: nil message")
	}
	if req.Type() == openflow.TypeMultipartRequest {
		return nil, fmt.Errorf("OpenFlow request %v: a multipart request; use Multipart", req.Type())
	}
	if noReply(req) {
		return nil, fmt.Errorf("OpenFlow request %T: the switch sends no reply to it; use Apply or Send", req)
	}
	msgs, err := s.roundTrip(ctx, req, false, nil)
	if err != nil {
		return nil, err
	}
	return msgs[0], nil
}

// Multipart sends a multipart request and returns every part of the reply,
// in order, up to the one without the "more" flag. An ERROR is returned as
// the error.
func (s *Session) Multipart(ctx context.Context, req openflow.Message) ([]openflow.Message, error) {
	if isNil(req) {
		return nil, errors.New("OpenFlow multipart request: nil message")
	}
	if req.Type() != openflow.TypeMultipartRequest {
		return nil, fmt.Errorf("OpenFlow multipart request: %v is not a multipart request; use Request", req.Type())
	}
	return s.roundTrip(ctx, req, true, nil)
}

// Barrier returns once the switch has processed every message written on
// this session before it.
func (s *Session) Barrier(ctx context.Context) error {
	_, err := s.Request(ctx, &openflow.BarrierRequest{})
	return err
}

// roundTrip sends req and waits for its reply. inline, if set, runs on the
// receive goroutine with the complete reply, before later messages.
func (s *Session) roundTrip(ctx context.Context, req openflow.Message, multipart bool, inline func([]openflow.Message)) ([]openflow.Message, error) {
	xid := s.c.nextXID()
	what := fmt.Sprintf("OpenFlow %s (xid 0x%x)", describe(req), xid)
	b, err := appendMsg(nil, req, xid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	cl := &call{multipart: multipart, inline: inline, ch: make(chan result, 1)}
	s.register(xid, cl)
	if err := s.write(ctx, b, what); err != nil {
		s.forget(xid)
		return nil, err
	}
	return s.await(ctx, xid, cl, what)
}

// Send writes msgs, in order, without waiting for anything. The switch
// answers a failure with an ERROR nobody waits for: it is logged and counted
// (Stats.UnsolicitedErrors), not returned. Use it where an error changes
// nothing for the caller (PACKET_OUT); use Apply or Bundle to learn about
// failures.
func (s *Session) Send(ctx context.Context, msgs ...openflow.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var b []byte
	for i, m := range msgs {
		var err error
		if b, err = appendMsg(b, m, s.c.nextXID()); err != nil {
			return fmt.Errorf("send OpenFlow messages: message %d (%s): %w", i, describe(m), err)
		}
	}
	return s.write(ctx, b, fmt.Sprintf("send %d OpenFlow messages", len(msgs)))
}

// Apply writes msgs followed by a barrier and returns once the switch has
// processed them all. It is ordered but not atomic: when the switch rejects
// some messages the others still take effect, and Apply returns an
// *ApplyError naming each rejected one. msgs must be messages without a
// reply (flow mods, group mods, port mods, packet outs, configuration).
func (s *Session) Apply(ctx context.Context, msgs ...openflow.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	b := &batch{}
	var buf []byte
	xids := make([]uint32, len(msgs)+1)
	calls := make([]*call, len(msgs))
	for i, m := range msgs {
		xids[i] = s.c.nextXID()
		var err error
		if buf, err = appendMsg(buf, m, xids[i]); err != nil {
			return fmt.Errorf("apply OpenFlow messages: message %d (%s): %w", i, describe(m), err)
		}
		calls[i] = &call{batch: b, index: i, msg: m}
	}
	bx := s.c.nextXID()
	xids[len(msgs)] = bx
	buf, _ = appendMsg(buf, &openflow.BarrierRequest{}, bx)
	barrier := &call{ch: make(chan result, 1)}

	s.mu.Lock()
	for i, cl := range calls {
		s.pending[xids[i]] = cl
	}
	s.pending[bx] = barrier
	s.mu.Unlock()
	defer s.forget(xids...)

	what := fmt.Sprintf("apply %d OpenFlow messages (barrier xid 0x%x)", len(msgs), bx)
	if err := s.write(ctx, buf, what); err != nil {
		return err
	}
	if _, err := s.await(ctx, bx, barrier, what); err != nil {
		return err
	}
	if rej := b.take(); len(rej) > 0 {
		sortRejected(rej)
		return &ApplyError{Bridge: s.c.cfg.Bridge, Rejected: rej}
	}
	return nil
}

// DumpFlows returns the flows req selects (all flows of all tables when req
// is nil).
func (s *Session) DumpFlows(ctx context.Context, req *openflow.FlowStatsRequest) ([]openflow.FlowStats, error) {
	if req == nil {
		req = openflow.NewFlowStatsRequest(openflow.TableAll, openflow.Match{})
	}
	parts, err := s.Multipart(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("dump flows of bridge %s: %w", s.c.cfg.Bridge, err)
	}
	var flows []openflow.FlowStats
	for _, p := range parts {
		r, ok := p.(*openflow.FlowStatsReply)
		if !ok {
			return nil, fmt.Errorf("dump flows of bridge %s: switch answered with %T", s.c.cfg.Bridge, p)
		}
		flows = append(flows, r.Flows...)
	}
	return flows, nil
}

// PortDesc returns the description of every port of the bridge. It does not
// touch the port table, which every session already seeds.
func (s *Session) PortDesc(ctx context.Context) ([]openflow.Port, error) {
	parts, err := s.Multipart(ctx, &openflow.PortDescRequest{})
	if err != nil {
		return nil, fmt.Errorf("dump ports of bridge %s: %w", s.c.cfg.Bridge, err)
	}
	return portsOf(parts)
}

func portsOf(parts []openflow.Message) ([]openflow.Port, error) {
	var out []openflow.Port
	for _, p := range parts {
		r, ok := p.(*openflow.PortDescReply)
		if !ok {
			return nil, fmt.Errorf("port description: switch answered with %T", p)
		}
		out = append(out, r.Ports...)
	}
	return out, nil
}

// noReply reports messages a switch does not answer on success.
func noReply(m openflow.Message) bool {
	switch m.(type) {
	case *openflow.BundleAdd:
		return true
	}
	switch m.Type() {
	case openflow.TypeFlowMod, openflow.TypeGroupMod, openflow.TypePacketOut, openflow.TypeSetConfig,
		openflow.TypeSetAsync, openflow.TypePortMod, openflow.TypeTableMod, openflow.TypeMeterMod,
		openflow.TypeHello:
		return true
	}
	return false
}

// describe names a message for errors: its type, and for flow mods the flow.
func describe(m openflow.Message) string {
	if isNil(m) {
		return "nil message"
	}
	switch m := m.(type) {
	case *openflow.FlowMod:
		return "FLOW_MOD " + m.String()
	case *openflow.GroupMod:
		return "GROUP_MOD " + m.String()
	case *openflow.BundleControl:
		return "BUNDLE " + m.CtrlType.String()
	}
	return strings.TrimPrefix(m.Type().String(), "OFPT_")
}

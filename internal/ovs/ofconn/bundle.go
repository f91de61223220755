package ofconn

import (
	"context"
	"errors"
	"fmt"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Bundle applies msgs (flow mods, group mods...) as one atomic, ordered
// bundle: either all take effect or none does.
//
// OVS checks each message when it is added and, although the bundle is
// atomic, still commits the rest if one was rejected. So Bundle opens the
// bundle, adds every message, closes it and waits for the close reply (OVS
// answers in order, so every add's ERROR has arrived by then), and commits
// only if no add failed; otherwise it discards the bundle and returns a
// *BundleError naming each rejected message by its index in msgs.
//
// When ctx ends before the commit is sent the bundle is discarded; when it
// ends after, the outcome is unknown and the error says so: dump the flows
// or resynchronise. When the session ends, OVS drops the bundle with it.
func (s *Session) Bundle(ctx context.Context, msgs []openflow.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	id := s.c.nextBundleID()
	br := s.c.cfg.Bridge
	flags := openflow.BundleAtomic | openflow.BundleOrdered
	n := len(msgs)
	xids := make([]uint32, n+2)
	for i := range xids {
		xids[i] = s.c.nextXID()
	}
	openX, closeX := xids[0], xids[n+1]

	buf, _ := appendMsg(nil, &openflow.BundleControl{BundleID: id, CtrlType: openflow.BundleOpenRequest, Flags: flags}, openX)
	b := &batch{}
	calls := make([]*call, n)
	for i, m := range msgs {
		// BundleAdd copies its own xid into the inner header, as OVS requires.
		add := &openflow.BundleAdd{Header: openflow.Header{Xid: xids[i+1]}, BundleID: id, Flags: flags, Message: m}
		var err error
		if buf, err = appendMsg(buf, add, xids[i+1]); err != nil {
			return fmt.Errorf("bundle for bridge %s: message %d (%s): %w", br, i, describe(m), err)
		}
		calls[i] = &call{batch: b, index: i, msg: m}
	}
	buf, _ = appendMsg(buf, &openflow.BundleControl{BundleID: id, CtrlType: openflow.BundleCloseRequest, Flags: flags}, closeX)

	openCall := &call{ch: make(chan result, 1)}
	closeCall := &call{ch: make(chan result, 1)}
	s.mu.Lock()
	s.pending[openX] = openCall
	for i, cl := range calls {
		s.pending[xids[i+1]] = cl
	}
	s.pending[closeX] = closeCall
	s.mu.Unlock()
	defer s.forget(xids...)

	what := fmt.Sprintf("OpenFlow bundle %d (%d messages)", id, n)
	if err := s.write(ctx, buf, what); err != nil {
		return err
	}
	openErr, err := s.awaitCtrl(ctx, openX, openCall, what+": open")
	if err != nil {
		s.abandon(id, flags, err)
		return err
	}
	closeErr, err := s.awaitCtrl(ctx, closeX, closeCall, what+": close")
	if err != nil {
		s.abandon(id, flags, err)
		return err
	}
	if openErr != nil {
		return fmt.Errorf("%s: bridge %s refused to open it: %w", what, br, openErr)
	}
	rejected := b.take()
	if closeErr != nil || len(rejected) > 0 {
		if derr := s.discard(ctx, id, flags); derr != nil {
			s.c.log.Warn("discarding a failed OpenFlow bundle", "bundle", id, "err", derr)
		}
		if closeErr != nil {
			return fmt.Errorf("%s: bridge %s refused to close it, discarded: %w", what, br, closeErr)
		}
		sortRejected(rejected)
		return &BundleError{Bridge: br, BundleID: id, Rejected: rejected}
	}

	_, err = s.Request(ctx, &openflow.BundleControl{BundleID: id, CtrlType: openflow.BundleCommitRequest, Flags: flags})
	var em *openflow.ErrorMsg
	switch {
	case err == nil:
		return nil
	case errors.As(err, &em):
		return &BundleError{Bridge: br, BundleID: id, Commit: em}
	case ctx.Err() != nil && !errors.Is(err, ErrDisconnected):
		return fmt.Errorf("%s: commit sent, outcome unknown (dump the flows to find out): %w", what, err)
	}
	return err
}

// awaitCtrl waits for a bundle control reply. The switch's refusal comes
// back as swErr; err is a failure to get any answer.
func (s *Session) awaitCtrl(ctx context.Context, xid uint32, cl *call, what string) (swErr *openflow.ErrorMsg, err error) {
	_, err = s.await(ctx, xid, cl, what)
	if errors.As(err, &swErr) {
		return swErr, nil
	}
	return nil, err
}

// discard drops an open bundle and waits for the switch to confirm.
func (s *Session) discard(ctx context.Context, id uint32, flags openflow.BundleFlags) error {
	_, err := s.Request(ctx, &openflow.BundleControl{BundleID: id, CtrlType: openflow.BundleDiscardRequest, Flags: flags})
	return err
}

// abandon discards a bundle whose caller gave up, without waiting for the
// answer: left open, it would hold its flows in the switch until the
// session ends. Nothing is needed when the session is gone.
func (s *Session) abandon(id uint32, flags openflow.BundleFlags, why error) {
	if errors.Is(why, ErrDisconnected) {
		return
	}
	xid := s.c.nextXID()
	buf, _ := appendMsg(nil, &openflow.BundleControl{BundleID: id, CtrlType: openflow.BundleDiscardRequest, Flags: flags}, xid)
	s.register(xid, &call{ignore: true})
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.DeadTimeout)
	defer cancel()
	if err := s.write(ctx, buf, fmt.Sprintf("discard OpenFlow bundle %d", id)); err != nil {
		s.forget(xid)
	}
}

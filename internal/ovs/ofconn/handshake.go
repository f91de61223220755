package ofconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// connect dials and runs the handshake, bounded by HandshakeTimeout. On
// success the session is live and its port dump is in the table.
func (c *Conn) connect(ctx context.Context) (*Session, error) {
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	nc, err := dial(hctx, c.socket)
	if err != nil {
		return nil, err
	}
	s := newSession(c, nc)
	timedOut := func() error {
		why := hctx.Err()
		if errors.Is(why, context.DeadlineExceeded) && ctx.Err() == nil {
			why = fmt.Errorf("no complete handshake within %v (ovs-vswitchd stopped or overloaded)", c.cfg.HandshakeTimeout)
		}
		return fmt.Errorf("OpenFlow handshake with bridge %s at %s: %w", c.cfg.Bridge, c.socket, why)
	}
	// Ending the session closes the socket, which unblocks whatever step of
	// the handshake is waiting.
	stop := context.AfterFunc(hctx, func() { s.fail(timedOut()) })
	err = s.handshake(hctx)
	if !stop() && err == nil {
		err = timedOut()
	}
	if err != nil {
		// Report the most specific reason: a dead peer, the handshake
		// bound, or why the session ended under a step.
		why := s.Err()
		switch {
		case errors.Is(why, ErrDeadPeer):
			err = why
		case hctx.Err() != nil:
			err = timedOut()
		case why != nil && errors.Is(err, ErrDisconnected):
			err = why
		}
		s.fail(err)
		s.wait()
		return nil, err
	}
	return s, nil
}

func (s *Session) handshake(ctx context.Context) error {
	br := s.c.cfg.Bridge
	hello, _ := appendMsg(nil, openflow.NewHello(openflow.Version13), s.c.nextXID())
	if err := s.write(ctx, hello, "HELLO"); err != nil {
		return err
	}
	if err := s.readHello(); err != nil {
		return err
	}
	s.run()

	reply, err := s.Request(ctx, &openflow.FeaturesRequest{})
	if err != nil {
		return fmt.Errorf("OpenFlow handshake with bridge %s: %w", br, err)
	}
	feats, ok := reply.(*openflow.FeaturesReply)
	if !ok {
		return fmt.Errorf("OpenFlow handshake with bridge %s: FEATURES_REQUEST answered with %v", br, reply.Type())
	}
	s.DatapathID, s.NTables = feats.DatapathID, feats.NTables

	// OVS sends a management connection no asynchronous message until it
	// asks for them; the barrier inside Apply confirms both took effect.
	err = s.Apply(ctx,
		&openflow.SetConfig{SwitchConfig: openflow.SwitchConfig{MissSendLen: openflow.MissSendLenNoBuffer}},
		&openflow.SetAsync{AsyncConfig: openflow.AsyncConfig{
			PacketInMask:   [2]uint32{1 << openflow.ReasonAction, 0},
			PortStatusMask: [2]uint32{openflow.AllPortStatus, openflow.AllPortStatus},
		}})
	if err != nil {
		return fmt.Errorf("OpenFlow handshake with bridge %s: enable port status messages: %w", br, err)
	}

	// The table is reset on the receive goroutine, in stream order: port
	// status messages read before the dump's last part are older than it,
	// those after it newer.
	var dumpErr error
	_, err = s.roundTrip(ctx, &openflow.PortDescRequest{}, true, func(parts []openflow.Message) {
		ports, err := portsOf(parts)
		if err != nil {
			dumpErr = err
			return
		}
		s.nPorts = len(ports)
		if t := s.c.cfg.Ports; t != nil {
			t.Reset(ports)
		}
	})
	if err == nil {
		err = dumpErr
	}
	if err != nil {
		return fmt.Errorf("OpenFlow handshake with bridge %s: port dump: %w", br, err)
	}
	return nil
}

// readHello reads the switch's first message, before the receive loop
// starts: it must be a HELLO that offers OpenFlow 1.3.
func (s *Session) readHello() error {
	br := s.c.cfg.Bridge
	raw, err := s.rd.ReadRaw()
	if err != nil {
		if why := s.Err(); why != nil {
			return why
		}
		return fmt.Errorf("OpenFlow handshake with bridge %s: read HELLO from %s: %w", br, s.c.socket, err)
	}
	s.lastRecv.Store(s.now())
	m, err := openflow.Decode(raw)
	if err != nil {
		return fmt.Errorf("OpenFlow handshake with bridge %s: %w", br, err)
	}
	switch m := m.(type) {
	case *openflow.Hello:
		if m.Supports(openflow.Version13) {
			return nil
		}
		offers := m.Versions
		if len(offers) == 0 {
			offers = []uint8{m.Version}
		}
		return versionError(br, offers, "")
	case *openflow.ErrorMsg:
		if m.ErrType == openflow.ErrHelloFailed {
			return versionError(br, nil, string(m.Data))
		}
		return fmt.Errorf("OpenFlow handshake with bridge %s: switch answered HELLO with %s", br, errorText(m))
	}
	return fmt.Errorf("OpenFlow handshake with bridge %s: switch sent %v before HELLO; is %s an OpenFlow socket?", br, m.Type(), s.c.socket)
}

func versionError(bridge string, offers []uint8, text string) error {
	var detail []string
	if len(offers) > 0 {
		names := make([]string, len(offers))
		for i, v := range offers {
			names[i] = versionName(v)
		}
		detail = append(detail, "it offers "+strings.Join(names, ", "))
	}
	if text != "" {
		detail = append(detail, fmt.Sprintf("switch says %q", strings.TrimSpace(text)))
	}
	d := ""
	if len(detail) > 0 {
		d = " (" + strings.Join(detail, "; ") + ")"
	}
	return fmt.Errorf("bridge %s %w%s: set protocols=OpenFlow13 on it (ovs-vsctl set bridge %s protocols=OpenFlow13)",
		bridge, ErrUnsupportedVersion, d, bridge)
}

func versionName(v uint8) string {
	if v >= 1 && v <= 6 {
		return fmt.Sprintf("OpenFlow 1.%d", v-1)
	}
	return fmt.Sprintf("OpenFlow version 0x%02x", v)
}

package openflow

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Action is one OpenFlow or Nicira action. The concrete types are values
// (Output{Port: 2}); decoding yields the same types, and UnknownAction for
// anything this codec does not know, which re-encodes unchanged.
type Action interface {
	// AppendAction appends the action's wire encoding.
	AppendAction(b []byte) ([]byte, error)
	// String renders the action in ovs-ofctl syntax.
	String() string
}

// OpenFlow 1.3 action types.
const (
	actOutput       = 0
	actPushVLAN     = 17
	actPopVLAN      = 18
	actGroup        = 22
	actSetNwTTL     = 23
	actDecNwTTL     = 24
	actSetField     = 25
	actExperimenter = 0xffff
)

// beginAction appends an action header (type and a length to be filled).
func beginAction(b []byte, typ uint16) ([]byte, int) {
	start := len(b)
	b = appendU16(b, typ)
	return appendU16(b, 0), start
}

// endAction pads the action to 8 bytes and writes its length.
func endAction(b []byte, start int) ([]byte, error) {
	b = padTo8(b, start)
	if err := putLen16(b, start+2, start, "action"); err != nil {
		return b[:start], err
	}
	return b, nil
}

// AppendActions appends a list of actions.
func AppendActions(b []byte, actions []Action) ([]byte, error) {
	start := len(b)
	for i, a := range actions {
		var err error
		if b, err = a.AppendAction(b); err != nil {
			return b[:start], fmt.Errorf("action %d (%T): %w", i, a, err)
		}
	}
	return b, nil
}

// DecodeActions decodes a list of actions. Unknown actions become
// UnknownAction; an action whose length does not fit is an error, because
// the rest of the list cannot be found.
func DecodeActions(b []byte) ([]Action, error) {
	var out []Action
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("action list: %d trailing bytes", len(b))
		}
		typ := uint16(b[0])<<8 | uint16(b[1])
		n := int(b[2])<<8 | int(b[3])
		if n < 8 || n%8 != 0 || n > len(b) {
			return nil, fmt.Errorf("action type %d: bad length %d (%d bytes left)", typ, n, len(b))
		}
		a, err := decodeAction(typ, b[:n:n])
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		b = b[n:]
	}
	return out, nil
}

func decodeAction(typ uint16, a []byte) (Action, error) {
	r := &reader{b: a[4:]}
	var act Action
	switch typ {
	case actOutput:
		act = Output{Port: r.u32(), MaxLen: r.u16()}
	case actGroup:
		act = Group{ID: r.u32()}
	case actPushVLAN:
		act = PushVLAN{EtherType: r.u16()}
	case actPopVLAN:
		act = PopVLAN{}
	case actDecNwTTL:
		act = DecNwTTL{}
	case actSetNwTTL:
		act = SetNwTTL{TTL: r.u8()}
	case actSetField:
		f, err := decodeOXM(r)
		if err != nil {
			return nil, fmt.Errorf("set_field action: %w", err)
		}
		if f.Mask != nil {
			return nil, fmt.Errorf("set_field action: OpenFlow 1.3 set_field cannot carry a mask")
		}
		act = SetField{Field: f}
	case actExperimenter:
		return decodeExperimenterAction(a)
	default:
		return UnknownAction{Data: a}, nil
	}
	if r.err != nil {
		return nil, fmt.Errorf("action %s: %w", act, r.err)
	}
	return act, nil
}

// ActionsString renders a list as ovs-ofctl does; an empty list is "drop".
func ActionsString(actions []Action) string {
	if len(actions) == 0 {
		return "drop"
	}
	parts := make([]string, len(actions))
	for i, a := range actions {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

// Output sends the packet to a port. MaxLen is how many bytes go to the
// controller when Port is PortController (ControllerMaxLenNoBuffer for the
// whole packet); the switch ignores it for other ports.
type Output struct {
	Port   uint32
	MaxLen uint16
}

// ControllerMaxLenNoBuffer sends whole packets to the controller.
const ControllerMaxLenNoBuffer uint16 = 0xffff

func (a Output) AppendAction(b []byte) ([]byte, error) {
	b, start := beginAction(b, actOutput)
	b = appendU32(b, a.Port)
	b = appendU16(b, a.MaxLen)
	b = appendZeros(b, 6)
	return endAction(b, start)
}

func (a Output) String() string {
	switch a.Port {
	case PortController:
		return "CONTROLLER:" + strconv.Itoa(int(a.MaxLen))
	case PortInPort, PortTable, PortNormal, PortFlood, PortAll, PortLocal:
		return PortName(a.Port)
	}
	return "output:" + PortName(a.Port)
}

// Group sends the packet through a group.
type Group struct{ ID uint32 }

func (a Group) AppendAction(b []byte) ([]byte, error) {
	b, start := beginAction(b, actGroup)
	b = appendU32(b, a.ID)
	return endAction(b, start)
}

func (a Group) String() string { return "group:" + strconv.FormatUint(uint64(a.ID), 10) }

// PushVLAN pushes a VLAN header; EtherType 0 means 0x8100. Set the id with
// SetField{VLANVID(id)} after it.
type PushVLAN struct{ EtherType uint16 }

func (a PushVLAN) ethType() uint16 {
	if a.EtherType == 0 {
		return EthTypeVLAN
	}
	return a.EtherType
}

func (a PushVLAN) AppendAction(b []byte) ([]byte, error) {
	b, start := beginAction(b, actPushVLAN)
	b = appendU16(b, a.ethType())
	return endAction(b, start)
}

func (a PushVLAN) String() string { return fmt.Sprintf("push_vlan:0x%04x", a.ethType()) }

// PopVLAN removes the outer VLAN header.
type PopVLAN struct{}

func (a PopVLAN) AppendAction(b []byte) ([]byte, error) {
	b, start := beginAction(b, actPopVLAN)
	return endAction(b, start)
}

func (a PopVLAN) String() string { return "pop_vlan" }

// DecNwTTL decrements the IP TTL (OFPAT_DEC_NW_TTL); the switch drops the
// packet, or sends it to controllers that asked, when the TTL runs out.
type DecNwTTL struct{}

func (a DecNwTTL) AppendAction(b []byte) ([]byte, error) {
	b, start := beginAction(b, actDecNwTTL)
	return endAction(b, start)
}

func (a DecNwTTL) String() string { return "dec_ttl" }

// SetNwTTL sets the IP TTL.
type SetNwTTL struct{ TTL uint8 }

func (a SetNwTTL) AppendAction(b []byte) ([]byte, error) {
	b, start := beginAction(b, actSetNwTTL)
	b = append(b, a.TTL)
	return endAction(b, start)
}

func (a SetNwTTL) String() string { return "mod_nw_ttl:" + strconv.Itoa(int(a.TTL)) }

// SetField writes a field of the packet or its metadata (registers,
// conntrack mark, tunnel id...). A Field with a Mask writes only the masked
// bits; OpenFlow 1.3 has no masked set_field, so it is sent as the Nicira
// NXAST_REG_LOAD2, which OVS treats the same way.
type SetField struct{ Field Field }

func (a SetField) AppendAction(b []byte) ([]byte, error) {
	if a.Field.Mask != nil {
		return appendRegLoad2(b, a.Field)
	}
	b, start := beginAction(b, actSetField)
	b, err := a.Field.appendOXM(b)
	if err != nil {
		return b[:start], fmt.Errorf("set_field: %w", err)
	}
	return endAction(b, start)
}

func (a SetField) String() string { return "set_field:" + setFieldString(a.Field) }

// UnknownAction is an action this codec does not decode, kept whole
// (header included) so it re-encodes unchanged.
type UnknownAction struct{ Data []byte }

func (a UnknownAction) AppendAction(b []byte) ([]byte, error) {
	if len(a.Data) < 8 || len(a.Data)%8 != 0 {
		return b, fmt.Errorf("unknown action of %d bytes: not a whole action", len(a.Data))
	}
	return append(b, a.Data...), nil
}

func (a UnknownAction) String() string {
	return "unknown_action(" + hex.EncodeToString(a.Data) + ")"
}

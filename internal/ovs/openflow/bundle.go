package openflow

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// ONF experimenter message types of the bundle extension (OpenFlow 1.3).
const (
	onfBundleControl    = 2300
	onfBundleAddMessage = 2301
)

// experimenterHeaderLen is the experimenter id and type after ofp_header.
const experimenterHeaderLen = 8

func beginExperimenter(b []byte, xid, experimenter, expType uint32) ([]byte, int) {
	b, start := beginMessage(b, TypeExperimenter, xid)
	b = appendU32(b, experimenter)
	return appendU32(b, expType), start
}

func newExperimenter(body []byte) bodyDecoder {
	if len(body) >= experimenterHeaderLen && binary.BigEndian.Uint32(body) == ONFExperimenter {
		switch binary.BigEndian.Uint32(body[4:]) {
		case onfBundleControl:
			return &BundleControl{}
		case onfBundleAddMessage:
			return &BundleAdd{}
		}
	}
	return &Experimenter{}
}

// Experimenter is an experimenter message this codec does not decode.
type Experimenter struct {
	Header
	ExperimenterID uint32
	ExpType        uint32
	Data           []byte
}

func (m *Experimenter) Type() Type { return TypeExperimenter }

func (m *Experimenter) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginExperimenter(b, m.Xid, m.ExperimenterID, m.ExpType)
	return endMessage(append(b, m.Data...), start)
}

func (m *Experimenter) decodeBody(r *reader) error {
	m.ExperimenterID = r.u32()
	m.ExpType = r.u32()
	m.Data = r.rest()
	return r.err
}

// BundleCtrlType is the operation of a BundleControl.
type BundleCtrlType uint16

const (
	BundleOpenRequest    BundleCtrlType = 0
	BundleOpenReply      BundleCtrlType = 1
	BundleCloseRequest   BundleCtrlType = 2
	BundleCloseReply     BundleCtrlType = 3
	BundleCommitRequest  BundleCtrlType = 4
	BundleCommitReply    BundleCtrlType = 5
	BundleDiscardRequest BundleCtrlType = 6
	BundleDiscardReply   BundleCtrlType = 7
)

func (t BundleCtrlType) String() string {
	names := []string{"OPEN_REQUEST", "OPEN_REPLY", "CLOSE_REQUEST", "CLOSE_REPLY",
		"COMMIT_REQUEST", "COMMIT_REPLY", "DISCARD_REQUEST", "DISCARD_REPLY"}
	if int(t) < len(names) {
		return names[t]
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// BundleFlags modify how a bundle applies.
type BundleFlags uint16

const (
	// BundleAtomic: all messages apply or none does.
	BundleAtomic BundleFlags = 1 << 0
	// BundleOrdered: messages apply in the order they were added.
	BundleOrdered BundleFlags = 1 << 1
)

func (f BundleFlags) String() string {
	return formatBits(uint32(f), []bitName{{uint32(BundleAtomic), "atomic"}, {uint32(BundleOrdered), "ordered"}})
}

// BundleControl opens, closes, commits or discards a bundle, and is the
// switch's reply to each of these. Properties are raw ofp_bundle_prop TLVs.
type BundleControl struct {
	Header
	BundleID   uint32
	CtrlType   BundleCtrlType
	Flags      BundleFlags
	Properties []byte
}

func (m *BundleControl) Type() Type { return TypeExperimenter }

func (m *BundleControl) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginExperimenter(b, m.Xid, ONFExperimenter, onfBundleControl)
	b = appendU32(b, m.BundleID)
	b = appendU16(b, uint16(m.CtrlType))
	b = appendU16(b, uint16(m.Flags))
	return endMessage(append(b, m.Properties...), start)
}

func (m *BundleControl) decodeBody(r *reader) error {
	r.skip(experimenterHeaderLen)
	m.BundleID = r.u32()
	m.CtrlType = BundleCtrlType(r.u16())
	m.Flags = BundleFlags(r.u16())
	m.Properties = r.rest()
	return r.err
}

// BundleAdd adds a message (a FlowMod, GroupMod, ...) to an open bundle.
// OVS requires the inner message's xid to equal the BundleAdd's, so
// encoding writes the outer xid into the inner header whatever the inner
// message's own Xid is.
type BundleAdd struct {
	Header
	BundleID   uint32
	Flags      BundleFlags
	Message    Message
	Properties []byte
}

func (m *BundleAdd) Type() Type { return TypeExperimenter }

func (m *BundleAdd) AppendBinary(b []byte) ([]byte, error) {
	if m.Message == nil {
		return b, fmt.Errorf("encode bundle add (bundle %d, xid 0x%x): no message to add", m.BundleID, m.Xid)
	}
	b, start := beginExperimenter(b, m.Xid, ONFExperimenter, onfBundleAddMessage)
	b = appendU32(b, m.BundleID)
	b = appendZeros(b, 2)
	b = appendU16(b, uint16(m.Flags))
	inner := len(b)
	b, err := m.Message.AppendBinary(b)
	if err != nil {
		return b[:start], fmt.Errorf("encode bundle add (bundle %d): %w", m.BundleID, err)
	}
	binary.BigEndian.PutUint32(b[inner+4:], m.Xid)
	if len(m.Properties) > 0 {
		b = padTo8(b, inner)
		b = append(b, m.Properties...)
	}
	return endMessage(b, start)
}

func (m *BundleAdd) decodeBody(r *reader) error {
	r.skip(experimenterHeaderLen)
	m.BundleID = r.u32()
	r.skip(2)
	m.Flags = BundleFlags(r.u16())
	if r.err != nil {
		return r.err
	}
	h, err := ParseHeader(r.b)
	if err != nil {
		return fmt.Errorf("bundle add inner message: %w", err)
	}
	if err := h.check(); err != nil {
		return fmt.Errorf("bundle add inner message: %w", err)
	}
	if int(h.Length) > r.len() {
		return fmt.Errorf("bundle add inner message length %d (%d bytes left)", h.Length, r.len())
	}
	raw := r.bytes(int(h.Length))
	inner, err := Decode(raw)
	if err != nil {
		// Keep what the switch echoed even if this codec cannot read it.
		inner = &Unknown{Header: Header{Xid: h.Xid}, Version: h.Version, MsgType: h.Type, Body: nilIfEmpty(raw[HeaderLen:])}
	}
	m.Message = inner
	if r.len() > 0 {
		r.skip(min(pad8(int(h.Length)), r.len()))
		m.Properties = r.rest()
	}
	return r.err
}

// Bundle returns the messages that apply msgs as one bundle: an open
// request, one BundleAdd per message, and a commit request, each with an xid
// from nextXID. It does not change msgs. To learn which message failed, map
// an ERROR's xid to the BundleAdd that carried it: out[i+1] carries msgs[i].
func Bundle(bundleID uint32, flags BundleFlags, nextXID func() uint32, msgs ...Message) []Message {
	out := make([]Message, 0, len(msgs)+2)
	out = append(out, &BundleControl{Header: Header{Xid: nextXID()}, BundleID: bundleID, CtrlType: BundleOpenRequest, Flags: flags})
	for _, msg := range msgs {
		out = append(out, &BundleAdd{Header: Header{Xid: nextXID()}, BundleID: bundleID, Flags: flags, Message: msg})
	}
	return append(out, &BundleControl{Header: Header{Xid: nextXID()}, BundleID: bundleID, CtrlType: BundleCommitRequest, Flags: flags})
}

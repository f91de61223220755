package openflow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version13 is the OpenFlow 1.3 wire version, the only one this codec speaks
// beyond HELLO and ERROR.
const Version13 uint8 = 0x04

const (
	// HeaderLen is the size of the common ofp_header.
	HeaderLen = 8
	// MaxMessageLen is the largest message the 16-bit length field allows.
	MaxMessageLen = 0xffff
)

// Type is the message type in the OpenFlow 1.3 header.
type Type uint8

// OpenFlow 1.3 message types.
const (
	TypeHello                 Type = 0
	TypeError                 Type = 1
	TypeEchoRequest           Type = 2
	TypeEchoReply             Type = 3
	TypeExperimenter          Type = 4
	TypeFeaturesRequest       Type = 5
	TypeFeaturesReply         Type = 6
	TypeGetConfigRequest      Type = 7
	TypeGetConfigReply        Type = 8
	TypeSetConfig             Type = 9
	TypePacketIn              Type = 10
	TypeFlowRemoved           Type = 11
	TypePortStatus            Type = 12
	TypePacketOut             Type = 13
	TypeFlowMod               Type = 14
	TypeGroupMod              Type = 15
	TypePortMod               Type = 16
	TypeTableMod              Type = 17
	TypeMultipartRequest      Type = 18
	TypeMultipartReply        Type = 19
	TypeBarrierRequest        Type = 20
	TypeBarrierReply          Type = 21
	TypeQueueGetConfigRequest Type = 22
	TypeQueueGetConfigReply   Type = 23
	TypeRoleRequest           Type = 24
	TypeRoleReply             Type = 25
	TypeGetAsyncRequest       Type = 26
	TypeGetAsyncReply         Type = 27
	TypeSetAsync              Type = 28
	TypeMeterMod              Type = 29
)

var typeNames = [...]string{
	"HELLO", "ERROR", "ECHO_REQUEST", "ECHO_REPLY", "EXPERIMENTER",
	"FEATURES_REQUEST", "FEATURES_REPLY", "GET_CONFIG_REQUEST", "GET_CONFIG_REPLY",
	"SET_CONFIG", "PACKET_IN", "FLOW_REMOVED", "PORT_STATUS", "PACKET_OUT",
	"FLOW_MOD", "GROUP_MOD", "PORT_MOD", "TABLE_MOD", "MULTIPART_REQUEST",
	"MULTIPART_REPLY", "BARRIER_REQUEST", "BARRIER_REPLY",
	"QUEUE_GET_CONFIG_REQUEST", "QUEUE_GET_CONFIG_REPLY", "ROLE_REQUEST",
	"ROLE_REPLY", "GET_ASYNC_REQUEST", "GET_ASYNC_REPLY", "SET_ASYNC", "METER_MOD",
}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return "OFPT_" + typeNames[t]
	}
	return fmt.Sprintf("OFPT_UNKNOWN(%d)", uint8(t))
}

// Message is one OpenFlow message. Every concrete type in this package is a
// pointer to a struct embedding Header.
type Message interface {
	// Type is the message type written in the header.
	Type() Type
	// XID is the transaction id; replies and errors carry the request's.
	XID() uint32
	SetXID(xid uint32)
	// AppendBinary appends the complete wire encoding, header included.
	AppendBinary(b []byte) ([]byte, error)
}

// Header carries the transaction id; every message embeds it.
type Header struct {
	Xid uint32
}

// XID returns the transaction id.
func (h *Header) XID() uint32 { return h.Xid }

// SetXID sets the transaction id.
func (h *Header) SetXID(xid uint32) { h.Xid = xid }

// RawHeader is the ofp_header as read from the wire.
type RawHeader struct {
	Version uint8
	Type    Type
	Length  uint16
	Xid     uint32
}

// ParseHeader reads the first HeaderLen bytes of b.
func ParseHeader(b []byte) (RawHeader, error) {
	if len(b) < HeaderLen {
		return RawHeader{}, fmt.Errorf("OpenFlow header: %d bytes, need %d", len(b), HeaderLen)
	}
	return RawHeader{
		Version: b[0],
		Type:    Type(b[1]),
		Length:  binary.BigEndian.Uint16(b[2:]),
		Xid:     binary.BigEndian.Uint32(b[4:]),
	}, nil
}

// check rejects headers no OpenFlow peer sends.
func (h RawHeader) check() error {
	if h.Version == 0 || h.Version > 0x06 {
		return fmt.Errorf("version byte 0x%02x: %w", h.Version, ErrBadVersion)
	}
	if h.Length < HeaderLen {
		return fmt.Errorf("length %d: %w", h.Length, ErrBadLength)
	}
	return nil
}

// Errors a Reader reports when the stream cannot continue.
var (
	// ErrBadLength: the header's length is below the header size.
	ErrBadLength = errors.New("OpenFlow message length shorter than its header")
	// ErrBadVersion: the version byte is not an OpenFlow version (1.0-1.5),
	// which means the peer does not speak OpenFlow or the framing is lost.
	ErrBadVersion = errors.New("not an OpenFlow version byte")
)

// Reader frames OpenFlow messages from a byte stream. It reads exactly one
// message per call and never reads ahead, so the underlying reader (a socket
// with deadlines) keeps control over blocking. It is not safe for concurrent
// use.
type Reader struct {
	r   io.Reader
	hdr [HeaderLen]byte
}

// NewReader returns a Reader on r. Wrap r in a bufio.Reader to save system
// calls; a Reader does no buffering of its own.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// ReadRaw reads one whole message and returns it in a new slice that the
// caller owns. io.EOF means the stream ended cleanly between messages;
// io.ErrUnexpectedEOF that it ended inside one. Any error is final: the
// framing cannot be recovered.
func (r *Reader) ReadRaw() ([]byte, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err
	}
	h, _ := ParseHeader(r.hdr[:])
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("read OpenFlow message: %w", err)
	}
	// The length is 16 bits, so this allocation is bounded by MaxMessageLen.
	msg := make([]byte, h.Length)
	copy(msg, r.hdr[:])
	if _, err := io.ReadFull(r.r, msg[HeaderLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read OpenFlow %v body (%d bytes, xid 0x%x): %w", h.Type, h.Length-HeaderLen, h.Xid, err)
	}
	return msg, nil
}

// ReadMessage reads and decodes one message. A *DecodeError means the
// message was framed correctly but its body could not be decoded; the
// stream is still in sync and the next call reads the next message. Any
// other error is final.
func (r *Reader) ReadMessage() (Message, error) {
	b, err := r.ReadRaw()
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// ReadMessage reads one message from r; see Reader.ReadMessage.
func ReadMessage(r io.Reader) (Message, error) {
	return NewReader(r).ReadMessage()
}

// Encode returns the wire encoding of m.
func Encode(m Message) ([]byte, error) {
	return m.AppendBinary(nil)
}

// WriteMessage encodes m and writes it with a single Write call, so messages
// from concurrent writers sharing a lock never interleave.
func WriteMessage(w io.Writer, m Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write OpenFlow %v (xid 0x%x): %w", m.Type(), m.XID(), err)
	}
	return nil
}

// beginMessage appends an OpenFlow 1.3 header whose length endMessage fills.
func beginMessage(b []byte, t Type, xid uint32) ([]byte, int) {
	return beginMessageVersion(b, Version13, t, xid)
}

func beginMessageVersion(b []byte, v uint8, t Type, xid uint32) ([]byte, int) {
	start := len(b)
	b = append(b, v, uint8(t), 0, 0)
	b = appendU32(b, xid)
	return b, start
}

func endMessage(b []byte, start int) ([]byte, error) {
	if len(b)-start > MaxMessageLen {
		return b[:start], fmt.Errorf("encode %v: %d bytes exceeds the 65535-byte OpenFlow limit; split it into smaller messages",
			Type(b[start+1]), len(b)-start)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b, nil
}

// DecodeError reports a message whose header was valid but whose body was
// not. The stream stays usable; Raw holds the whole message for logging.
type DecodeError struct {
	Header RawHeader
	Raw    []byte
	Err    error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode OpenFlow %v (version 0x%02x, xid 0x%x, %d bytes): %v",
		e.Header.Type, e.Header.Version, e.Header.Xid, len(e.Raw), e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Unknown is a message this codec does not decode (a type it does not know,
// or any type but HELLO, ERROR and ECHO in a version other than 1.3). It
// re-encodes to the same bytes.
type Unknown struct {
	Header
	Version uint8
	MsgType Type
	Body    []byte
}

// Type returns the type from the message's header.
func (m *Unknown) Type() Type { return m.MsgType }

// AppendBinary re-encodes the message with its original version.
func (m *Unknown) AppendBinary(b []byte) ([]byte, error) {
	v := m.Version
	if v == 0 {
		v = Version13
	}
	b, start := beginMessageVersion(b, v, m.MsgType, m.Xid)
	b = append(b, m.Body...)
	return endMessage(b, start)
}

// Decode decodes one complete message (header included). Decoded messages
// may keep references into b (payloads, raw bytes of unknown parts), so b
// must not be reused while they are live; Reader.ReadMessage gives each
// message its own buffer.
func Decode(b []byte) (Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if err := h.check(); err != nil {
		return nil, &DecodeError{Header: h, Raw: b, Err: err}
	}
	if int(h.Length) != len(b) {
		return nil, &DecodeError{Header: h, Raw: b, Err: fmt.Errorf("header length %d but %d bytes given", h.Length, len(b))}
	}
	m, err := decodeBody(h, b)
	if err != nil {
		return nil, &DecodeError{Header: h, Raw: b, Err: err}
	}
	return m, nil
}

// bodyDecoder is what every decodable message implements.
type bodyDecoder interface {
	Message
	decodeBody(r *reader) error
}

func decodeBody(h RawHeader, b []byte) (Message, error) {
	m := newMessage(h, b[HeaderLen:])
	if m == nil {
		return &Unknown{Header: Header{Xid: h.Xid}, Version: h.Version, MsgType: h.Type, Body: nilIfEmpty(b[HeaderLen:])}, nil
	}
	m.SetXID(h.Xid)
	r := &reader{b: b[HeaderLen:]}
	if err := m.decodeBody(r); err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// newMessage returns an empty message for the header, nil if the codec does
// not know it. body lets experimenter and multipart messages pick their
// concrete type.
func newMessage(h RawHeader, body []byte) bodyDecoder {
	switch h.Type {
	case TypeHello:
		return &Hello{Version: h.Version}
	case TypeError:
		return &ErrorMsg{}
	case TypeEchoRequest:
		return &EchoRequest{}
	case TypeEchoReply:
		return &EchoReply{}
	}
	if h.Version != Version13 {
		return nil
	}
	switch h.Type {
	case TypeExperimenter:
		return newExperimenter(body)
	case TypeFeaturesRequest:
		return &FeaturesRequest{}
	case TypeFeaturesReply:
		return &FeaturesReply{}
	case TypeGetConfigRequest:
		return &GetConfigRequest{}
	case TypeGetConfigReply:
		return &GetConfigReply{}
	case TypeSetConfig:
		return &SetConfig{}
	case TypePacketIn:
		return &PacketIn{}
	case TypeFlowRemoved:
		return &FlowRemoved{}
	case TypePortStatus:
		return &PortStatus{}
	case TypePacketOut:
		return &PacketOut{}
	case TypeFlowMod:
		return &FlowMod{}
	case TypeGroupMod:
		return &GroupMod{}
	case TypeMultipartRequest:
		return newMultipartRequest(body)
	case TypeMultipartReply:
		return newMultipartReply(body)
	case TypeBarrierRequest:
		return &BarrierRequest{}
	case TypeBarrierReply:
		return &BarrierReply{}
	case TypeRoleRequest:
		return &RoleRequest{}
	case TypeRoleReply:
		return &RoleReply{}
	case TypeGetAsyncRequest:
		return &GetAsyncRequest{}
	case TypeGetAsyncReply:
		return &GetAsyncReply{}
	case TypeSetAsync:
		return &SetAsync{}
	}
	return nil
}

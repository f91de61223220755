package openflow

import (
	"fmt"
	"strconv"
	"strings"
)

// MultipartType is the kind of a multipart (statistics) request or reply.
type MultipartType uint16

const (
	MultipartDesc          MultipartType = 0
	MultipartFlow          MultipartType = 1
	MultipartAggregate     MultipartType = 2
	MultipartTable         MultipartType = 3
	MultipartPortStats     MultipartType = 4
	MultipartQueue         MultipartType = 5
	MultipartGroup         MultipartType = 6
	MultipartGroupDesc     MultipartType = 7
	MultipartGroupFeatures MultipartType = 8
	MultipartMeter         MultipartType = 9
	MultipartMeterConfig   MultipartType = 10
	MultipartMeterFeatures MultipartType = 11
	MultipartTableFeatures MultipartType = 12
	MultipartPortDesc      MultipartType = 13
	MultipartExperimenter  MultipartType = 0xffff
)

// MultipartFlags are the flags of a multipart message.
type MultipartFlags uint16

// MultipartMore (OFPMPF_REPLY_MORE on replies, OFPMPF_REQ_MORE on
// requests) says more parts with the same xid follow; the last part has it
// clear.
const MultipartMore MultipartFlags = 1

func beginMultipart(b []byte, t Type, xid uint32, mp MultipartType, flags MultipartFlags) ([]byte, int) {
	b, start := beginMessage(b, t, xid)
	b = appendU16(b, uint16(mp))
	b = appendU16(b, uint16(flags))
	return appendZeros(b, 4), start
}

// readMultipartHeader reads the multipart header and returns the flags.
func readMultipartHeader(r *reader) MultipartFlags {
	r.skip(2)
	flags := MultipartFlags(r.u16())
	r.skip(4)
	return flags
}

func multipartType(body []byte) (MultipartType, bool) {
	if len(body) < 2 {
		return 0, false
	}
	return MultipartType(uint16(body[0])<<8 | uint16(body[1])), true
}

func newMultipartRequest(body []byte) bodyDecoder {
	mp, _ := multipartType(body)
	switch mp {
	case MultipartPortDesc:
		return &PortDescRequest{}
	case MultipartFlow:
		return &FlowStatsRequest{}
	}
	return &MultipartRequest{}
}

func newMultipartReply(body []byte) bodyDecoder {
	mp, _ := multipartType(body)
	switch mp {
	case MultipartPortDesc:
		return &PortDescReply{}
	case MultipartFlow:
		return &FlowStatsReply{}
	}
	return &MultipartReply{}
}

// MultipartRequest is a multipart request of a kind this codec does not
// decode; Body follows the multipart header.
type MultipartRequest struct {
	Header
	MPType MultipartType
	Flags  MultipartFlags
	Body   []byte
}

func (m *MultipartRequest) Type() Type { return TypeMultipartRequest }

func (m *MultipartRequest) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMultipart(b, TypeMultipartRequest, m.Xid, m.MPType, m.Flags)
	return endMessage(append(b, m.Body...), start)
}

func (m *MultipartRequest) decodeBody(r *reader) error {
	m.MPType = MultipartType(r.u16())
	m.Flags = MultipartFlags(r.u16())
	r.skip(4)
	m.Body = r.rest()
	return r.err
}

// MultipartReply is a multipart reply of a kind this codec does not decode.
type MultipartReply struct {
	Header
	MPType MultipartType
	Flags  MultipartFlags
	Body   []byte
}

func (m *MultipartReply) Type() Type { return TypeMultipartReply }

func (m *MultipartReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMultipart(b, TypeMultipartReply, m.Xid, m.MPType, m.Flags)
	return endMessage(append(b, m.Body...), start)
}

func (m *MultipartReply) decodeBody(r *reader) error {
	m.MPType = MultipartType(r.u16())
	m.Flags = MultipartFlags(r.u16())
	r.skip(4)
	m.Body = r.rest()
	return r.err
}

// More reports whether more parts of this reply follow.
func (m *MultipartReply) More() bool { return m.Flags&MultipartMore != 0 }

// PortDescRequest asks for the description of every port.
type PortDescRequest struct {
	Header
	Flags MultipartFlags
}

func (m *PortDescRequest) Type() Type { return TypeMultipartRequest }

func (m *PortDescRequest) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMultipart(b, TypeMultipartRequest, m.Xid, MultipartPortDesc, m.Flags)
	return endMessage(b, start)
}

func (m *PortDescRequest) decodeBody(r *reader) error {
	m.Flags = readMultipartHeader(r)
	return r.err
}

// PortDescReply is one part of the port description dump. A switch with
// many ports splits it: collect parts with the request's xid until More is
// false.
type PortDescReply struct {
	Header
	Flags MultipartFlags
	Ports []Port
}

func (m *PortDescReply) Type() Type { return TypeMultipartReply }

// More reports whether more parts of this reply follow.
func (m *PortDescReply) More() bool { return m.Flags&MultipartMore != 0 }

func (m *PortDescReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMultipart(b, TypeMultipartReply, m.Xid, MultipartPortDesc, m.Flags)
	for i := range m.Ports {
		var err error
		if b, err = m.Ports[i].append(b); err != nil {
			return b[:start], err
		}
	}
	return endMessage(b, start)
}

func (m *PortDescReply) decodeBody(r *reader) error {
	m.Flags = readMultipartHeader(r)
	if r.err != nil {
		return r.err
	}
	if r.len()%portLen != 0 {
		return fmt.Errorf("port description reply body of %d bytes is not a whole number of %d-byte ports", r.len(), portLen)
	}
	m.Ports = make([]Port, r.len()/portLen)
	for i := range m.Ports {
		if err := m.Ports[i].decode(r); err != nil {
			return err
		}
	}
	return nil
}

// FlowStatsRequest asks for the flows in Table (TableAll for all) that
// match Match (non-strictly), output to OutPort, use OutGroup, and whose
// cookie matches Cookie under CookieMask. NewFlowStatsRequest fills the
// "any" values in.
type FlowStatsRequest struct {
	Header
	Flags      MultipartFlags
	Table      uint8
	OutPort    uint32
	OutGroup   uint32
	Cookie     uint64
	CookieMask uint64
	Match      Match
}

// NewFlowStatsRequest returns a request for every flow of table that
// matches match.
func NewFlowStatsRequest(table uint8, match Match) *FlowStatsRequest {
	return &FlowStatsRequest{Table: table, OutPort: PortAny, OutGroup: GroupAny, Match: match}
}

func (m *FlowStatsRequest) Type() Type { return TypeMultipartRequest }

func (m *FlowStatsRequest) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMultipart(b, TypeMultipartRequest, m.Xid, MultipartFlow, m.Flags)
	b = append(b, m.Table, 0, 0, 0)
	b = appendU32(b, m.OutPort)
	b = appendU32(b, m.OutGroup)
	b = appendZeros(b, 4)
	b = appendU64(b, m.Cookie)
	b = appendU64(b, m.CookieMask)
	b, err := m.Match.appendMatch(b)
	if err != nil {
		return b[:start], fmt.Errorf("flow stats request: %w", err)
	}
	return endMessage(b, start)
}

func (m *FlowStatsRequest) decodeBody(r *reader) error {
	m.Flags = readMultipartHeader(r)
	m.Table = r.u8()
	r.skip(3)
	m.OutPort = r.u32()
	m.OutGroup = r.u32()
	r.skip(4)
	m.Cookie = r.u64()
	m.CookieMask = r.u64()
	if r.err != nil {
		return r.err
	}
	var err error
	m.Match, err = decodeMatch(r)
	return err
}

// FlowStats is one flow of a flow stats reply.
type FlowStats struct {
	Table        uint8
	DurationSec  uint32
	DurationNsec uint32
	Priority     uint16
	IdleTimeout  uint16
	HardTimeout  uint16
	Flags        FlowModFlags
	Cookie       uint64
	PacketCount  uint64
	ByteCount    uint64
	Match        Match
	Instructions []Instruction
}

// flowStatsFixedLen is the part of ofp_flow_stats before the match.
const flowStatsFixedLen = 48

func (f *FlowStats) append(b []byte) ([]byte, error) {
	start := len(b)
	b = appendU16(b, 0)
	b = append(b, f.Table, 0)
	b = appendU32(b, f.DurationSec)
	b = appendU32(b, f.DurationNsec)
	b = appendU16(b, f.Priority)
	b = appendU16(b, f.IdleTimeout)
	b = appendU16(b, f.HardTimeout)
	b = appendU16(b, uint16(f.Flags))
	b = appendZeros(b, 4)
	b = appendU64(b, f.Cookie)
	b = appendU64(b, f.PacketCount)
	b = appendU64(b, f.ByteCount)
	var err error
	if b, err = f.Match.appendMatch(b); err != nil {
		return b[:start], err
	}
	if b, err = AppendInstructions(b, f.Instructions); err != nil {
		return b[:start], err
	}
	if err := putLen16(b, start, start, "flow stats entry"); err != nil {
		return b[:start], err
	}
	return b, nil
}

func (f *FlowStats) decode(r *reader) error {
	n := int(r.u16())
	if r.err != nil {
		return r.err
	}
	if n < flowStatsFixedLen || n-2 > r.len() {
		return fmt.Errorf("flow stats entry length %d (%d bytes left)", n, r.len()+2)
	}
	er := &reader{b: r.bytes(n - 2)}
	f.Table = er.u8()
	er.skip(1)
	f.DurationSec = er.u32()
	f.DurationNsec = er.u32()
	f.Priority = er.u16()
	f.IdleTimeout = er.u16()
	f.HardTimeout = er.u16()
	f.Flags = FlowModFlags(er.u16())
	er.skip(4)
	f.Cookie = er.u64()
	f.PacketCount = er.u64()
	f.ByteCount = er.u64()
	if er.err != nil {
		return er.err
	}
	var err error
	if f.Match, err = decodeMatch(er); err != nil {
		return fmt.Errorf("flow stats entry: %w", err)
	}
	if f.Instructions, err = DecodeInstructions(er.rest()); err != nil {
		return fmt.Errorf("flow stats entry: %w", err)
	}
	return nil
}

// String renders the flow as ovs-ofctl dump-flows does, e.g.
// "cookie=0x0, duration=1.5s, table=0, n_packets=0, n_bytes=0,
// priority=100,ip,in_port=3 actions=output:2".
func (f *FlowStats) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "cookie=0x%x, duration=%s, table=%d, n_packets=%d, n_bytes=%d, ",
		f.Cookie, formatDuration(f.DurationSec, f.DurationNsec), f.Table, f.PacketCount, f.ByteCount)
	if f.IdleTimeout != 0 {
		s.WriteString("idle_timeout=" + strconv.Itoa(int(f.IdleTimeout)) + ", ")
	}
	if f.HardTimeout != 0 {
		s.WriteString("hard_timeout=" + strconv.Itoa(int(f.HardTimeout)) + ", ")
	}
	s.WriteString(f.FlowString())
	return s.String()
}

// formatDuration prints seconds with the fraction in groups of three
// digits, as ovs-ofctl does: 1s, 1.500s, 1.000001s.
func formatDuration(sec, nsec uint32) string {
	s := strconv.FormatUint(uint64(sec), 10)
	if nsec > 0 {
		frac := fmt.Sprintf("%09d", nsec)
		for strings.HasSuffix(frac, "000") {
			frac = frac[:len(frac)-3]
		}
		s += "." + frac
	}
	return s + "s"
}

// FlowString renders the flow without statistics, as `ovs-ofctl
// --no-stats dump-flows` does: "cookie=0x51, table=10, priority=100,ip
// actions=drop", with the cookie and table left out when zero.
func (f *FlowStats) FlowString() string {
	var prefix string
	if f.Cookie != 0 {
		prefix += fmt.Sprintf("cookie=0x%x, ", f.Cookie)
	}
	if f.Table != 0 {
		prefix += "table=" + strconv.Itoa(int(f.Table)) + ", "
	}
	var head []string
	if f.Priority != DefaultPriority {
		head = append(head, "priority="+strconv.Itoa(int(f.Priority)))
	}
	if ms := f.Match.String(); ms != "" {
		head = append(head, ms)
	}
	h := strings.Join(head, ",")
	if h != "" {
		h += " "
	}
	return prefix + h + "actions=" + InstructionsString(f.Instructions)
}

// FlowStatsReply is one part of a flow dump; collect parts with the
// request's xid until More is false.
type FlowStatsReply struct {
	Header
	Flags MultipartFlags
	Flows []FlowStats
}

func (m *FlowStatsReply) Type() Type { return TypeMultipartReply }

// More reports whether more parts of this reply follow.
func (m *FlowStatsReply) More() bool { return m.Flags&MultipartMore != 0 }

func (m *FlowStatsReply) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMultipart(b, TypeMultipartReply, m.Xid, MultipartFlow, m.Flags)
	for i := range m.Flows {
		var err error
		if b, err = m.Flows[i].append(b); err != nil {
			return b[:start], fmt.Errorf("flow stats reply entry %d: %w", i, err)
		}
	}
	return endMessage(b, start)
}

func (m *FlowStatsReply) decodeBody(r *reader) error {
	m.Flags = readMultipartHeader(r)
	for r.err == nil && r.len() > 0 {
		var f FlowStats
		if err := f.decode(r); err != nil {
			return err
		}
		m.Flows = append(m.Flows, f)
	}
	return r.err
}

package openflow

import (
	"fmt"
	"strconv"
	"strings"
)

// FlowModCommand is what a FLOW_MOD does.
type FlowModCommand uint8

const (
	FlowAdd          FlowModCommand = 0
	FlowModify       FlowModCommand = 1
	FlowModifyStrict FlowModCommand = 2
	FlowDelete       FlowModCommand = 3
	FlowDeleteStrict FlowModCommand = 4
)

func (c FlowModCommand) String() string {
	switch c {
	case FlowAdd:
		return "ADD"
	case FlowModify:
		return "MOD"
	case FlowModifyStrict:
		return "MOD_STRICT"
	case FlowDelete:
		return "DEL"
	case FlowDeleteStrict:
		return "DEL_STRICT"
	}
	return "CMD" + strconv.Itoa(int(c))
}

// FlowModFlags are the OFPFF_* flags of a flow.
type FlowModFlags uint16

const (
	FlowSendFlowRem  FlowModFlags = 1 << 0
	FlowCheckOverlap FlowModFlags = 1 << 1
	FlowResetCounts  FlowModFlags = 1 << 2
	FlowNoPktCounts  FlowModFlags = 1 << 3
	FlowNoBytCounts  FlowModFlags = 1 << 4
)

var flowFlagNames = []string{"send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts"}

func (f FlowModFlags) String() string {
	bn := make([]bitName, len(flowFlagNames))
	for i, n := range flowFlagNames {
		bn[i] = bitName{1 << i, n}
	}
	return formatBits(uint32(f), bn)
}

// "None" values of FLOW_MOD, PACKET_OUT and GROUP_MOD fields.
const (
	// NoBuffer: the message carries no buffered packet (OFP_NO_BUFFER).
	NoBuffer uint32 = 0xffffffff
	// GroupAny: no group filter (OFPG_ANY).
	GroupAny uint32 = 0xffffffff
	// GroupAll: every group, for group deletion (OFPG_ALL).
	GroupAll uint32 = 0xfffffffc
	// TableAll: every table, for deletes and stats requests (OFPTT_ALL).
	TableAll uint8 = 0xff
	// DefaultPriority is OpenFlow's default flow priority.
	DefaultPriority uint16 = 0x8000
)

// FlowMod adds, modifies or deletes flows. BufferID, OutPort and OutGroup
// are wire values whose "none" is all ones (NoBuffer, PortAny, GroupAny), not
// zero: build a FlowMod with NewFlowMod, or set them yourself.
type FlowMod struct {
	Header
	Cookie       uint64
	CookieMask   uint64
	Table        uint8
	Command      FlowModCommand
	IdleTimeout  uint16
	HardTimeout  uint16
	Priority     uint16
	BufferID     uint32
	OutPort      uint32
	OutGroup     uint32
	Flags        FlowModFlags
	Match        Match
	Instructions []Instruction
}

// NewFlowMod returns a FlowMod for cmd with no buffer, no out_port or
// out_group filter and the default priority.
func NewFlowMod(cmd FlowModCommand) *FlowMod {
	return &FlowMod{Command: cmd, Priority: DefaultPriority, BufferID: NoBuffer, OutPort: PortAny, OutGroup: GroupAny}
}

// AddFlow returns an ADD of a flow.
func AddFlow(table uint8, priority uint16, match Match, insts ...Instruction) *FlowMod {
	m := NewFlowMod(FlowAdd)
	m.Table, m.Priority, m.Match, m.Instructions = table, priority, match, insts
	return m
}

// DeleteFlows returns a non-strict DELETE of the flows in table (TableAll
// for every table) whose match includes match and whose cookie matches
// cookie under cookieMask (0 mask: any cookie).
func DeleteFlows(table uint8, match Match, cookie, cookieMask uint64) *FlowMod {
	m := NewFlowMod(FlowDelete)
	m.Table, m.Match, m.Cookie, m.CookieMask = table, match, cookie, cookieMask
	return m
}

func (m *FlowMod) Type() Type { return TypeFlowMod }

func (m *FlowMod) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeFlowMod, m.Xid)
	b = appendU64(b, m.Cookie)
	b = appendU64(b, m.CookieMask)
	b = append(b, m.Table, uint8(m.Command))
	b = appendU16(b, m.IdleTimeout)
	b = appendU16(b, m.HardTimeout)
	b = appendU16(b, m.Priority)
	b = appendU32(b, m.BufferID)
	b = appendU32(b, m.OutPort)
	b = appendU32(b, m.OutGroup)
	b = appendU16(b, uint16(m.Flags))
	b = appendZeros(b, 2)
	var err error
	if b, err = m.Match.appendMatch(b); err != nil {
		return b[:start], fmt.Errorf("flow mod: %w", err)
	}
	if b, err = AppendInstructions(b, m.Instructions); err != nil {
		return b[:start], fmt.Errorf("flow mod: %w", err)
	}
	return endMessage(b, start)
}

func (m *FlowMod) decodeBody(r *reader) error {
	m.Cookie = r.u64()
	m.CookieMask = r.u64()
	m.Table = r.u8()
	m.Command = FlowModCommand(r.u8())
	m.IdleTimeout = r.u16()
	m.HardTimeout = r.u16()
	m.Priority = r.u16()
	m.BufferID = r.u32()
	m.OutPort = r.u32()
	m.OutGroup = r.u32()
	m.Flags = FlowModFlags(r.u16())
	r.skip(2)
	if r.err != nil {
		return r.err
	}
	var err error
	if m.Match, err = decodeMatch(r); err != nil {
		return err
	}
	m.Instructions, err = DecodeInstructions(r.rest())
	return err
}

// String renders the flow mod as the command and a flow in the syntax
// ovs-ofctl add-flow accepts, e.g.
// "ADD table=3,cookie=0x10,priority=9,ip,nw_src=10.0.0.2 actions=output:2".
func (m *FlowMod) String() string {
	var s strings.Builder
	s.WriteString(m.Command.String())
	s.WriteByte(' ')
	var head []string
	if m.Table != 0 {
		head = append(head, "table="+strconv.Itoa(int(m.Table)))
	}
	if m.Cookie != 0 || m.CookieMask != 0 {
		c := fmt.Sprintf("cookie=0x%x", m.Cookie)
		if m.Command != FlowAdd {
			c += fmt.Sprintf("/0x%x", m.CookieMask)
		}
		head = append(head, c)
	}
	if m.IdleTimeout != 0 {
		head = append(head, "idle_timeout="+strconv.Itoa(int(m.IdleTimeout)))
	}
	if m.HardTimeout != 0 {
		head = append(head, "hard_timeout="+strconv.Itoa(int(m.HardTimeout)))
	}
	if m.Priority != DefaultPriority {
		head = append(head, "priority="+strconv.Itoa(int(m.Priority)))
	}
	for i, n := range flowFlagNames {
		if m.Flags&(1<<i) != 0 {
			head = append(head, n)
		}
	}
	if m.OutPort != PortAny && m.Command >= FlowDelete {
		head = append(head, "out_port="+PortName(m.OutPort))
	}
	if ms := m.Match.String(); ms != "" {
		head = append(head, ms)
	}
	s.WriteString(strings.Join(head, ","))
	if m.Command < FlowDelete {
		if len(head) > 0 {
			s.WriteByte(' ')
		}
		s.WriteString("actions=" + InstructionsString(m.Instructions))
	}
	return s.String()
}

// FlowRemovedReason says why a flow expired.
type FlowRemovedReason uint8

const (
	FlowRemovedIdleTimeout FlowRemovedReason = 0
	FlowRemovedHardTimeout FlowRemovedReason = 1
	FlowRemovedDelete      FlowRemovedReason = 2
	FlowRemovedGroupDelete FlowRemovedReason = 3
)

// FlowRemoved reports a flow that had FlowSendFlowRem and went away.
type FlowRemoved struct {
	Header
	Cookie       uint64
	Priority     uint16
	Reason       FlowRemovedReason
	Table        uint8
	DurationSec  uint32
	DurationNsec uint32
	IdleTimeout  uint16
	HardTimeout  uint16
	PacketCount  uint64
	ByteCount    uint64
	Match        Match
}

func (m *FlowRemoved) Type() Type { return TypeFlowRemoved }

func (m *FlowRemoved) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeFlowRemoved, m.Xid)
	b = appendU64(b, m.Cookie)
	b = appendU16(b, m.Priority)
	b = append(b, uint8(m.Reason), m.Table)
	b = appendU32(b, m.DurationSec)
	b = appendU32(b, m.DurationNsec)
	b = appendU16(b, m.IdleTimeout)
	b = appendU16(b, m.HardTimeout)
	b = appendU64(b, m.PacketCount)
	b = appendU64(b, m.ByteCount)
	b, err := m.Match.appendMatch(b)
	if err != nil {
		return b[:start], fmt.Errorf("flow removed: %w", err)
	}
	return endMessage(b, start)
}

func (m *FlowRemoved) decodeBody(r *reader) error {
	m.Cookie = r.u64()
	m.Priority = r.u16()
	m.Reason = FlowRemovedReason(r.u8())
	m.Table = r.u8()
	m.DurationSec = r.u32()
	m.DurationNsec = r.u32()
	m.IdleTimeout = r.u16()
	m.HardTimeout = r.u16()
	m.PacketCount = r.u64()
	m.ByteCount = r.u64()
	if r.err != nil {
		return r.err
	}
	var err error
	m.Match, err = decodeMatch(r)
	return err
}

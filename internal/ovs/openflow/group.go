package openflow

import (
	"fmt"
	"strconv"
	"strings"
)

// GroupModCommand is what a GROUP_MOD does.
type GroupModCommand uint16

const (
	GroupAdd    GroupModCommand = 0
	GroupModify GroupModCommand = 1
	GroupDelete GroupModCommand = 2
)

// GroupType is the kind of group.
type GroupType uint8

const (
	// GroupTypeAll runs every bucket (flooding, multicast).
	GroupTypeAll GroupType = 0
	// GroupTypeSelect runs one bucket chosen by hash and weight (load
	// balancing).
	GroupTypeSelect GroupType = 1
	// GroupTypeIndirect has exactly one bucket.
	GroupTypeIndirect GroupType = 2
	// GroupTypeFastFailover runs the first bucket whose watched port or
	// group is live.
	GroupTypeFastFailover GroupType = 3
)

func (t GroupType) String() string {
	switch t {
	case GroupTypeAll:
		return "all"
	case GroupTypeSelect:
		return "select"
	case GroupTypeIndirect:
		return "indirect"
	case GroupTypeFastFailover:
		return "ff"
	}
	return "type" + strconv.Itoa(int(t))
}

// Bucket is one set of actions of a group. WatchPort and WatchGroup are wire
// values whose "none" is PortAny and GroupAny; NewBucket sets them.
type Bucket struct {
	Weight     uint16
	WatchPort  uint32
	WatchGroup uint32
	Actions    []Action
}

// NewBucket returns a bucket that watches nothing.
func NewBucket(weight uint16, actions ...Action) Bucket {
	return Bucket{Weight: weight, WatchPort: PortAny, WatchGroup: GroupAny, Actions: actions}
}

// bucketHeaderLen is sizeof(struct ofp_bucket).
const bucketHeaderLen = 16

func (bk Bucket) append(b []byte) ([]byte, error) {
	start := len(b)
	b = appendU16(b, 0)
	b = appendU16(b, bk.Weight)
	b = appendU32(b, bk.WatchPort)
	b = appendU32(b, bk.WatchGroup)
	b = appendZeros(b, 4)
	b, err := AppendActions(b, bk.Actions)
	if err != nil {
		return b[:start], err
	}
	if err := putLen16(b, start, start, "bucket"); err != nil {
		return b[:start], err
	}
	return b, nil
}

func (bk Bucket) String() string {
	var parts []string
	if bk.Weight != 0 {
		parts = append(parts, "weight:"+strconv.Itoa(int(bk.Weight)))
	}
	if bk.WatchPort != PortAny {
		parts = append(parts, "watch_port:"+PortName(bk.WatchPort))
	}
	if bk.WatchGroup != GroupAny {
		parts = append(parts, "watch_group:"+strconv.FormatUint(uint64(bk.WatchGroup), 10))
	}
	parts = append(parts, "actions="+ActionsString(bk.Actions))
	return "bucket=" + strings.Join(parts, ",")
}

// GroupMod adds, modifies or deletes a group.
type GroupMod struct {
	Header
	Command   GroupModCommand
	GroupType GroupType
	GroupID   uint32
	Buckets   []Bucket
}

func (m *GroupMod) Type() Type { return TypeGroupMod }

func (m *GroupMod) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeGroupMod, m.Xid)
	b = appendU16(b, uint16(m.Command))
	b = append(b, uint8(m.GroupType), 0)
	b = appendU32(b, m.GroupID)
	for i, bk := range m.Buckets {
		var err error
		if b, err = bk.append(b); err != nil {
			return b[:start], fmt.Errorf("group %d bucket %d: %w", m.GroupID, i, err)
		}
	}
	return endMessage(b, start)
}

func (m *GroupMod) decodeBody(r *reader) error {
	m.Command = GroupModCommand(r.u16())
	m.GroupType = GroupType(r.u8())
	r.skip(1)
	m.GroupID = r.u32()
	for r.err == nil && r.len() > 0 {
		n := int(r.u16())
		if r.err != nil {
			break
		}
		if n < bucketHeaderLen || n-2 > r.len() {
			return fmt.Errorf("group bucket length %d (%d bytes left)", n, r.len()+2)
		}
		br := &reader{b: r.bytes(n - 2)}
		bk := Bucket{Weight: br.u16(), WatchPort: br.u32(), WatchGroup: br.u32()}
		br.skip(4)
		if br.err != nil {
			return br.err
		}
		acts, err := DecodeActions(br.rest())
		if err != nil {
			return fmt.Errorf("group bucket: %w", err)
		}
		bk.Actions = acts
		m.Buckets = append(m.Buckets, bk)
	}
	return r.err
}

func (m *GroupMod) String() string {
	cmd := map[GroupModCommand]string{GroupAdd: "ADD", GroupModify: "MOD", GroupDelete: "DEL"}[m.Command]
	if cmd == "" {
		cmd = "CMD" + strconv.Itoa(int(m.Command))
	}
	parts := []string{"group_id=" + strconv.FormatUint(uint64(m.GroupID), 10), "type=" + m.GroupType.String()}
	for _, bk := range m.Buckets {
		parts = append(parts, bk.String())
	}
	return cmd + " " + strings.Join(parts, ",")
}

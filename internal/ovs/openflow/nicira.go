package openflow

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Nicira action subtypes (NXAST_*).
const (
	nxastResubmit      = 1
	nxastRegMove       = 6
	nxastRegLoad       = 7
	nxastNote          = 8
	nxastResubmitTable = 14
	nxastController    = 20
	nxastConjunction   = 34
	nxastCT            = 35
	nxastNAT           = 36
	nxastRegLoad2      = 33
)

// nxHeaderLen is type, length, vendor and subtype.
const nxHeaderLen = 10

func beginNX(b []byte, subtype uint16) ([]byte, int) {
	b, start := beginAction(b, actExperimenter)
	b = appendU32(b, NiciraExperimenter)
	return appendU16(b, subtype), start
}

func decodeExperimenterAction(a []byte) (Action, error) {
	r := &reader{b: a[4:]}
	if r.u32() != NiciraExperimenter || len(a) < 16 {
		return UnknownAction{Data: a}, nil
	}
	sub := r.u16()
	var (
		act Action
		err error
	)
	switch sub {
	case nxastResubmit, nxastResubmitTable:
		port := r.u16()
		table := ResubmitCurrentTable
		if sub == nxastResubmitTable {
			table = r.u8()
		}
		a := Resubmit{Port: port32(port), Table: table}
		if a.Port == PortInPort {
			a.Port = 0
		}
		act = a
	case nxastRegMove:
		act, err = decodeRegMove(r)
	case nxastRegLoad:
		act, err = decodeRegLoad(r)
	case nxastRegLoad2:
		var f Field
		if f, err = decodeOXM(r); err == nil {
			act = SetField{Field: f}
		}
	case nxastNote:
		act = Note{Data: r.rest()}
	case nxastController:
		act = Controller{MaxLen: r.u16(), ID: r.u16(), Reason: PacketInReason(r.u8())}
	case nxastConjunction:
		clause, n := r.u8(), r.u8()
		act = Conjunction{Clause: clause + 1, NClauses: n, ID: r.u32()}
	case nxastCT:
		act, err = decodeCT(r)
	case nxastNAT:
		act, err = decodeNAT(r)
	default:
		return UnknownAction{Data: a}, nil
	}
	if err == nil {
		err = r.err
	}
	if err != nil {
		return nil, fmt.Errorf("nicira action subtype %d: %w", sub, err)
	}
	return act, nil
}

// port32 widens a 16-bit port of the Nicira actions: the reserved ports
// 0xff00 and up map to their 32-bit values.
func port32(p uint16) uint32 {
	if p >= 0xff00 {
		return 0xffff0000 | uint32(p)
	}
	return uint32(p)
}

func port16(p uint32) (uint16, error) {
	switch {
	case p >= PortMax:
		return uint16(p), nil
	case p >= 0xff00:
		return 0, fmt.Errorf("port %d does not fit a 16-bit Nicira port field", p)
	}
	return uint16(p), nil
}

// FieldSlice names bits Ofs..Ofs+NBits-1 of a field, for the Nicira
// actions that move and load bits (and the conntrack zone source). NBits 0
// means the whole field.
type FieldSlice struct {
	Field FieldID
	Ofs   uint16
	NBits uint16
}

// Slice returns bits [ofs, ofs+nbits) of a field.
func Slice(id FieldID, ofs, nbits uint16) FieldSlice {
	return FieldSlice{Field: id, Ofs: ofs, NBits: nbits}
}

// Whole returns the whole field as a slice.
func Whole(id FieldID) FieldSlice { return FieldSlice{Field: id} }

// resolve checks the slice against the field's width and fills in NBits.
func (s FieldSlice) resolve() (FieldSlice, fieldDef, error) {
	d, ok := fieldDefs[s.Field]
	if !ok {
		return s, d, fmt.Errorf("field %v: width unknown to this codec", s.Field)
	}
	if s.NBits == 0 {
		if s.Ofs != 0 {
			return s, d, fmt.Errorf("field %s: NBits 0 (whole field) with offset %d", d.name, s.Ofs)
		}
		s.NBits = uint16(d.width * 8)
	}
	if int(s.Ofs)+int(s.NBits) > d.width*8 {
		return s, d, fmt.Errorf("field %s: bits %d..%d exceed its %d bits", d.name, s.Ofs, int(s.Ofs)+int(s.NBits)-1, d.width*8)
	}
	return s, d, nil
}

// header32 is the field's NXM header as used in actions: no mask bit, the
// field's width as length. Experimenter fields need 64 bits and are
// refused.
func (s FieldSlice) header32() (uint32, error) {
	_, d, err := s.resolve()
	if err != nil {
		return 0, err
	}
	if s.Field.Class == ClassExperimenter {
		return 0, fmt.Errorf("field %s: experimenter fields are not supported in Nicira actions", d.name)
	}
	return oxmHeader(s.Field, false, d.width), nil
}

// fieldFromHeader32 reads an NXM header and ignores its length, which is
// implied by the field.
func fieldFromHeader32(h uint32) FieldID {
	return FieldID{Class: OXMClass(h >> 16), Field: uint8(h>>9) & 0x7f}
}

// ofsNBits packs an offset and width as Nicira actions do.
func ofsNBits(ofs, nbits uint16) uint16 { return ofs<<6 | (nbits - 1) }

func (s FieldSlice) String() string {
	r, d, err := s.resolve()
	if err != nil {
		return fmt.Sprintf("%v[%d..%d]", s.Field, s.Ofs, int(s.Ofs)+int(s.NBits)-1)
	}
	switch {
	case r.Ofs == 0 && int(r.NBits) == d.width*8:
		return d.nxm + "[]"
	case r.NBits == 1:
		return fmt.Sprintf("%s[%d]", d.nxm, r.Ofs)
	}
	return fmt.Sprintf("%s[%d..%d]", d.nxm, r.Ofs, r.Ofs+r.NBits-1)
}

// ResubmitCurrentTable in Resubmit.Table searches the current table again.
const ResubmitCurrentTable uint8 = 0xff

// Resubmit runs the packet through another table (NXAST_RESUBMIT_TABLE) and
// comes back. Port 0 keeps the packet's in_port; another value pretends
// the packet arrived there. Table ResubmitCurrentTable means the current
// table, so the zero value Resubmit{} is resubmit(,0).
type Resubmit struct {
	Port  uint32
	Table uint8
}

func (a Resubmit) AppendAction(b []byte) ([]byte, error) {
	port := a.Port
	if port == 0 {
		port = PortInPort
	}
	p, err := port16(port)
	if err != nil {
		return b, fmt.Errorf("resubmit: %w", err)
	}
	b, start := beginNX(b, nxastResubmitTable)
	b = appendU16(b, p)
	b = append(b, a.Table)
	return endAction(b, start)
}

func (a Resubmit) String() string {
	port := ""
	if a.Port != 0 && a.Port != PortInPort {
		port = PortName(a.Port)
	}
	if a.Table == ResubmitCurrentTable {
		if port == "" {
			return "resubmit:IN_PORT"
		}
		return "resubmit:" + port
	}
	return fmt.Sprintf("resubmit(%s,%d)", port, a.Table)
}

// RegLoad writes a constant into bits of a field (NXAST_REG_LOAD, shown by
// ovs-ofctl as load:VALUE->FIELD[bits]).
type RegLoad struct {
	Dst   FieldSlice
	Value uint64
}

func (a RegLoad) AppendAction(b []byte) ([]byte, error) {
	dst, _, err := a.Dst.resolve()
	if err != nil {
		return b, fmt.Errorf("load: %w", err)
	}
	h, err := dst.header32()
	if err != nil {
		return b, fmt.Errorf("load: %w", err)
	}
	if dst.NBits > 64 {
		return b, fmt.Errorf("load: %d bits do not fit the 64-bit value; use SetField", dst.NBits)
	}
	if dst.NBits < 64 && a.Value>>dst.NBits != 0 {
		return b, fmt.Errorf("load: value 0x%x does not fit %d bits", a.Value, dst.NBits)
	}
	b, start := beginNX(b, nxastRegLoad)
	b = appendU16(b, ofsNBits(dst.Ofs, dst.NBits))
	b = appendU32(b, h)
	b = appendU64(b, a.Value)
	return endAction(b, start)
}

func decodeRegLoad(r *reader) (Action, error) {
	on := r.u16()
	dst := fieldFromHeader32(r.u32())
	v := r.u64()
	a := RegLoad{Dst: FieldSlice{Field: dst, Ofs: on >> 6, NBits: on&0x3f + 1}, Value: v}
	if _, _, err := a.Dst.resolve(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return a, r.err
}

func (a RegLoad) String() string { return fmt.Sprintf("load:0x%x->%v", a.Value, a.Dst) }

// RegMove copies bits between fields (NXAST_REG_MOVE); both slices must be
// the same width.
type RegMove struct {
	Src FieldSlice
	Dst FieldSlice
}

func (a RegMove) AppendAction(b []byte) ([]byte, error) {
	src, _, err := a.Src.resolve()
	if err != nil {
		return b, fmt.Errorf("move source: %w", err)
	}
	dst, _, err := a.Dst.resolve()
	if err != nil {
		return b, fmt.Errorf("move destination: %w", err)
	}
	if src.NBits != dst.NBits {
		return b, fmt.Errorf("move: source has %d bits, destination %d", src.NBits, dst.NBits)
	}
	sh, err := src.header32()
	if err != nil {
		return b, fmt.Errorf("move source: %w", err)
	}
	dh, err := dst.header32()
	if err != nil {
		return b, fmt.Errorf("move destination: %w", err)
	}
	b, start := beginNX(b, nxastRegMove)
	b = appendU16(b, src.NBits)
	b = appendU16(b, src.Ofs)
	b = appendU16(b, dst.Ofs)
	b = appendU32(b, sh)
	b = appendU32(b, dh)
	return endAction(b, start)
}

func decodeRegMove(r *reader) (Action, error) {
	n, so, do := r.u16(), r.u16(), r.u16()
	src, dst := fieldFromHeader32(r.u32()), fieldFromHeader32(r.u32())
	if n == 0 {
		return nil, fmt.Errorf("move of 0 bits")
	}
	a := RegMove{Src: FieldSlice{src, so, n}, Dst: FieldSlice{dst, do, n}}
	if _, _, err := a.Src.resolve(); err != nil {
		return nil, fmt.Errorf("move source: %w", err)
	}
	if _, _, err := a.Dst.resolve(); err != nil {
		return nil, fmt.Errorf("move destination: %w", err)
	}
	return a, r.err
}

func (a RegMove) String() string { return fmt.Sprintf("move:%v->%v", a.Src, a.Dst) }

func appendRegLoad2(b []byte, f Field) ([]byte, error) {
	b, start := beginNX(b, nxastRegLoad2)
	b, err := f.appendOXM(b)
	if err != nil {
		return b[:start], fmt.Errorf("set_field: %w", err)
	}
	return endAction(b, start)
}

// Note carries opaque bytes that OVS keeps with the flow and otherwise
// ignores; useful to tag flows for humans. It is zero-padded on the wire, so
// a decoded Note may end in zeros.
type Note struct{ Data []byte }

func (a Note) AppendAction(b []byte) ([]byte, error) {
	b, start := beginNX(b, nxastNote)
	b = append(b, a.Data...)
	// An action is at least 16 bytes, and the padding must not be empty
	// for the shortest notes.
	if len(b)-start < 16 {
		b = appendZeros(b, 16-(len(b)-start))
	}
	return endAction(b, start)
}

// String shows the note as it is on the wire, padding included, which is
// what OVS shows after a round trip.
func (a Note) String() string {
	n := max(16, nxHeaderLen+len(a.Data))
	n += pad8(n)
	parts := make([]string, n-nxHeaderLen)
	for i := range parts {
		var c byte
		if i < len(a.Data) {
			c = a.Data[i]
		}
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return "note:" + strings.Join(parts, ".")
}

// PacketInReason says why a packet went to the controller.
type PacketInReason uint8

const (
	ReasonNoMatch    PacketInReason = 0
	ReasonAction     PacketInReason = 1
	ReasonInvalidTTL PacketInReason = 2
)

func (r PacketInReason) String() string {
	switch r {
	case ReasonNoMatch:
		return "no_match"
	case ReasonAction:
		return "action"
	case ReasonInvalidTTL:
		return "invalid_ttl"
	}
	return "reason" + strconv.Itoa(int(r))
}

// Controller sends the packet to controllers (NXAST_CONTROLLER) with a
// chosen reason and controller id, which Output{Port: PortController} cannot
// set.
type Controller struct {
	MaxLen uint16
	ID     uint16
	Reason PacketInReason
}

func (a Controller) AppendAction(b []byte) ([]byte, error) {
	b, start := beginNX(b, nxastController)
	b = appendU16(b, a.MaxLen)
	b = appendU16(b, a.ID)
	b = append(b, uint8(a.Reason))
	return endAction(b, start)
}

func (a Controller) String() string {
	if a.Reason == ReasonAction && a.ID == 0 {
		return "CONTROLLER:" + strconv.Itoa(int(a.MaxLen))
	}
	var parts []string
	if a.Reason != ReasonAction {
		parts = append(parts, "reason="+a.Reason.String())
	}
	if a.MaxLen != ControllerMaxLenNoBuffer {
		parts = append(parts, "max_len="+strconv.Itoa(int(a.MaxLen)))
	}
	if a.ID != 0 {
		parts = append(parts, "id="+strconv.Itoa(int(a.ID)))
	}
	return "controller(" + strings.Join(parts, ",") + ")"
}

// Conjunction makes the flow one clause of a conjunctive match: packets
// matching one flow of every clause 1..NClauses of conjunction ID get
// conj_id=ID. Clause is 1-based, as in ovs-ofctl.
type Conjunction struct {
	ID       uint32
	Clause   uint8
	NClauses uint8
}

func (a Conjunction) AppendAction(b []byte) ([]byte, error) {
	if a.NClauses < 2 || a.NClauses > 64 || a.Clause < 1 || a.Clause > a.NClauses {
		return b, fmt.Errorf("conjunction(%d,%d/%d): need 2 <= clauses <= 64 and 1 <= clause <= clauses", a.ID, a.Clause, a.NClauses)
	}
	b, start := beginNX(b, nxastConjunction)
	b = append(b, a.Clause-1, a.NClauses)
	b = appendU32(b, a.ID)
	return endAction(b, start)
}

func (a Conjunction) String() string {
	return fmt.Sprintf("conjunction(%d,%d/%d)", a.ID, a.Clause, a.NClauses)
}

// Conntrack ALG ports understood by OVS.
const (
	CTAlgFTP  uint16 = 21
	CTAlgTFTP uint16 = 69
)

// CT sends the packet through the connection tracker (NXAST_CT).
//   - Zone is the zone; ZoneField, if set, takes it from a field instead.
//   - Recirc and Table: when Recirc is set the packet continues, with its
//     ct_state filled in, in Table; otherwise the ct action ends in place.
//   - Actions run on a committed connection (only SetField of ct_mark or
//     ct_label, and NAT).
type CT struct {
	Commit    bool
	Force     bool
	Zone      uint16
	ZoneField *FieldSlice
	Recirc    bool
	Table     uint8
	Alg       uint16
	Actions   []Action
}

const (
	ctFlagCommit = 1 << 0
	ctFlagForce  = 1 << 1
	ctNoTable    = 0xff
)

func (a CT) AppendAction(b []byte) ([]byte, error) {
	var flags uint16
	if a.Commit {
		flags |= ctFlagCommit
	}
	if a.Force {
		flags |= ctFlagForce
	}
	table := uint8(ctNoTable)
	if a.Recirc {
		if a.Table == ctNoTable {
			return b, fmt.Errorf("ct: table 255 cannot be a recirculation table")
		}
		table = a.Table
	}
	var zoneSrc uint32
	zone := a.Zone
	if a.ZoneField != nil {
		zs, _, err := a.ZoneField.resolve()
		if err != nil {
			return b, fmt.Errorf("ct zone: %w", err)
		}
		if zs.NBits > 16 {
			return b, fmt.Errorf("ct zone: %d bits exceed the 16-bit zone", zs.NBits)
		}
		if zoneSrc, err = zs.header32(); err != nil {
			return b, fmt.Errorf("ct zone: %w", err)
		}
		zone = ofsNBits(zs.Ofs, zs.NBits)
	}
	b, start := beginNX(b, nxastCT)
	b = appendU16(b, flags)
	b = appendU32(b, zoneSrc)
	b = appendU16(b, zone)
	b = append(b, table, 0, 0, 0)
	b = appendU16(b, a.Alg)
	b, err := AppendActions(b, a.Actions)
	if err != nil {
		return b[:start], fmt.Errorf("ct: %w", err)
	}
	return endAction(b, start)
}

func decodeCT(r *reader) (Action, error) {
	flags := r.u16()
	zoneSrc := r.u32()
	zone := r.u16()
	table := r.u8()
	r.skip(3)
	a := CT{
		Commit: flags&ctFlagCommit != 0,
		Force:  flags&ctFlagForce != 0,
		Recirc: table != ctNoTable,
		Alg:    r.u16(),
	}
	if a.Recirc {
		a.Table = table
	}
	if zoneSrc != 0 {
		zs := FieldSlice{Field: fieldFromHeader32(zoneSrc), Ofs: zone >> 6, NBits: zone&0x3f + 1}
		if _, _, err := zs.resolve(); err != nil {
			return nil, fmt.Errorf("ct zone: %w", err)
		}
		a.ZoneField = &zs
	} else {
		a.Zone = zone
	}
	if r.err != nil {
		return nil, r.err
	}
	acts, err := DecodeActions(r.rest())
	if err != nil {
		return nil, fmt.Errorf("ct nested actions: %w", err)
	}
	a.Actions = acts
	return a, nil
}

func (a CT) String() string {
	var parts []string
	if a.Commit {
		parts = append(parts, "commit")
	}
	if a.Force {
		parts = append(parts, "force")
	}
	if a.Recirc {
		parts = append(parts, "table="+strconv.Itoa(int(a.Table)))
	}
	if a.ZoneField != nil {
		parts = append(parts, "zone="+a.ZoneField.String())
	} else if a.Zone != 0 {
		parts = append(parts, "zone="+strconv.Itoa(int(a.Zone)))
	}
	if len(a.Actions) == 1 {
		if _, ok := a.Actions[0].(NAT); ok {
			parts = append(parts, a.Actions[0].String())
		} else {
			parts = append(parts, "exec("+ActionsString(a.Actions)+")")
		}
	} else if len(a.Actions) > 1 {
		parts = append(parts, "exec("+ActionsString(a.Actions)+")")
	}
	switch a.Alg {
	case 0:
	case CTAlgFTP:
		parts = append(parts, "alg=ftp")
	case CTAlgTFTP:
		parts = append(parts, "alg=tftp")
	default:
		parts = append(parts, "alg="+strconv.Itoa(int(a.Alg)))
	}
	return "ct(" + strings.Join(parts, ",") + ")"
}

// NAT is the nat action inside a CT action's Actions. With neither Src nor
// Dst set it applies the NAT already recorded for the connection. Address
// and port ranges are optional: leave IPMin invalid and PortMin zero to let
// the tracker choose.
type NAT struct {
	Src         bool
	Dst         bool
	Persistent  bool
	ProtoHash   bool
	ProtoRandom bool
	IPMin       netip.Addr
	IPMax       netip.Addr
	PortMin     uint16
	PortMax     uint16
}

const (
	natFlagSrc         = 1 << 0
	natFlagDst         = 1 << 1
	natFlagPersistent  = 1 << 2
	natFlagProtoHash   = 1 << 3
	natFlagProtoRandom = 1 << 4

	natRangeIPv4Min  = 1 << 0
	natRangeIPv4Max  = 1 << 1
	natRangeIPv6Min  = 1 << 2
	natRangeIPv6Max  = 1 << 3
	natRangeProtoMin = 1 << 4
	natRangeProtoMax = 1 << 5
)

func (a NAT) AppendAction(b []byte) ([]byte, error) {
	if a.Src && a.Dst {
		return b, fmt.Errorf("nat: src and dst are exclusive")
	}
	if (a.IPMin.IsValid() || a.PortMin != 0) && !a.Src && !a.Dst {
		return b, fmt.Errorf("nat: a range needs src or dst")
	}
	if a.IPMax.IsValid() && (!a.IPMin.IsValid() || a.IPMax.Is4() != a.IPMin.Is4()) {
		return b, fmt.Errorf("nat: IPMax %v needs an IPMin of the same family", a.IPMax)
	}
	var flags, present uint16
	for _, f := range []struct {
		on  bool
		bit uint16
	}{{a.Src, natFlagSrc}, {a.Dst, natFlagDst}, {a.Persistent, natFlagPersistent},
		{a.ProtoHash, natFlagProtoHash}, {a.ProtoRandom, natFlagProtoRandom}} {
		if f.on {
			flags |= f.bit
		}
	}
	b, start := beginNX(b, nxastNAT)
	b = appendZeros(b, 2)
	b = appendU16(b, flags)
	presentAt := len(b)
	b = appendU16(b, 0)
	if a.IPMin.IsValid() {
		minBit, maxBit := uint16(natRangeIPv4Min), uint16(natRangeIPv4Max)
		if a.IPMin.Is6() && !a.IPMin.Is4In6() {
			minBit, maxBit = natRangeIPv6Min, natRangeIPv6Max
		}
		present |= minBit
		b = append(b, a.IPMin.Unmap().AsSlice()...)
		if a.IPMax.IsValid() {
			present |= maxBit
			b = append(b, a.IPMax.Unmap().AsSlice()...)
		}
	}
	if a.PortMin != 0 {
		present |= natRangeProtoMin
		b = appendU16(b, a.PortMin)
		if a.PortMax != 0 {
			present |= natRangeProtoMax
			b = appendU16(b, a.PortMax)
		}
	}
	b[presentAt], b[presentAt+1] = byte(present>>8), byte(present)
	return endAction(b, start)
}

func decodeNAT(r *reader) (Action, error) {
	r.skip(2)
	flags, present := r.u16(), r.u16()
	a := NAT{
		Src: flags&natFlagSrc != 0, Dst: flags&natFlagDst != 0,
		Persistent: flags&natFlagPersistent != 0, ProtoHash: flags&natFlagProtoHash != 0,
		ProtoRandom: flags&natFlagProtoRandom != 0,
	}
	addr := func(n int) netip.Addr {
		ip, _ := netip.AddrFromSlice(r.bytes(n))
		return ip
	}
	if present&natRangeIPv4Min != 0 {
		a.IPMin = addr(4)
	}
	if present&natRangeIPv4Max != 0 {
		a.IPMax = addr(4)
	}
	if present&natRangeIPv6Min != 0 {
		a.IPMin = addr(16)
	}
	if present&natRangeIPv6Max != 0 {
		a.IPMax = addr(16)
	}
	if present&natRangeProtoMin != 0 {
		a.PortMin = r.u16()
	}
	if present&natRangeProtoMax != 0 {
		a.PortMax = r.u16()
	}
	return a, r.err
}

func (a NAT) String() string {
	if !a.Src && !a.Dst {
		return "nat"
	}
	var s strings.Builder
	s.WriteString("nat(")
	if a.Src {
		s.WriteString("src")
	} else {
		s.WriteString("dst")
	}
	if a.IPMin.IsValid() {
		s.WriteByte('=')
		bracket := a.IPMin.Is6() && a.PortMin != 0
		writeIP := func(ip netip.Addr) {
			if bracket {
				s.WriteString("[" + ip.String() + "]")
			} else {
				s.WriteString(ip.String())
			}
		}
		writeIP(a.IPMin)
		if a.IPMax.IsValid() && a.IPMax != a.IPMin {
			s.WriteByte('-')
			writeIP(a.IPMax)
		}
	}
	if a.PortMin != 0 {
		fmt.Fprintf(&s, ":%d", a.PortMin)
		if a.PortMax != 0 && a.PortMax != a.PortMin {
			fmt.Fprintf(&s, "-%d", a.PortMax)
		}
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{a.Persistent, "persistent"}, {a.ProtoHash, "hash"}, {a.ProtoRandom, "random"}} {
		if f.on {
			s.WriteString("," + f.name)
		}
	}
	s.WriteByte(')')
	return s.String()
}

package openflow

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// extraSamples are messages OVS cannot print (or prints differently) but
// the codec must round-trip: the raw forms of everything it does not know.
func extraSamples() []Message {
	return []Message{
		&Unknown{Header: hdr(1), Version: Version13, MsgType: TypeMeterMod, Body: []byte{0, 0, 0, 1}},
		&Unknown{Header: hdr(2), Version: 0x01, MsgType: 14, Body: []byte{1, 2, 3}},
		&Hello{Header: hdr(3), Version: 0x01},
		&Experimenter{Header: hdr(4), ExperimenterID: NiciraExperimenter, ExpType: 20, Data: []byte{1, 2, 3, 4}},
		&MultipartRequest{Header: hdr(5), MPType: MultipartDesc},
		&MultipartReply{Header: hdr(6), MPType: MultipartTable, Flags: MultipartMore, Body: make([]byte, 24)},
		&BundleControl{Header: hdr(7), BundleID: 9, CtrlType: BundleOpenReply, Properties: []byte{0, 1, 0, 8, 0, 0, 0, 0}},
		&BundleAdd{Header: hdr(8), BundleID: 9, Message: &PortDescRequest{Header: hdr(8)}, Properties: []byte{0xff, 0xff, 0, 8, 0, 0, 0, 1}},
		&FlowMod{Header: hdr(9), Command: FlowAdd, BufferID: NoBuffer, Instructions: []Instruction{
			UnknownInstruction{Data: []byte{0, 6, 0, 8, 0, 0, 0, 1}},
			Apply(UnknownAction{Data: []byte{0, 11, 0, 8, 0, 0, 0, 0}}),
		}},
		&FlowMod{Header: hdr(10), Match: NewMatch(
			Field{ID: FieldID{Class: ClassExperimenter, Field: 5, Experimenter: 0x1234}, Value: []byte{1, 2}},
			Field{ID: FieldID{Class: 0x8000, Field: 40}, Value: []byte{1}, Mask: []byte{3}},
		)},
	}
}

func allSamples() []Message {
	var out []Message
	for _, s := range messageSamples() {
		out = append(out, s.msg)
	}
	for _, s := range flowSamples() {
		out = append(out, s.fm)
	}
	return append(out, extraSamples()...)
}

// TestRoundTrip encodes every sample, decodes it, and checks the decoded
// message equals the original (up to what the wire normalises) and
// re-encodes to the same bytes.
func TestRoundTrip(t *testing.T) {
	for i, msg := range allSamples() {
		b, err := Encode(msg)
		if err != nil {
			t.Fatalf("sample %d (%T): encode: %v", i, msg, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("sample %d (%T): decode %x: %v", i, msg, b, err)
		}
		if reflect.TypeOf(got) != reflect.TypeOf(msg) {
			t.Fatalf("sample %d: decoded %T, want %T", i, got, msg)
		}
		again, err := Encode(got)
		if err != nil || !bytes.Equal(again, b) {
			t.Errorf("sample %d (%T): re-encode %v\n got %x\nwant %x", i, msg, err, again, b)
		}
		if want := normalised(msg); !reflect.DeepEqual(got, want) {
			t.Errorf("sample %d (%T): decoded\n%#v\nwant\n%#v", i, msg, got, want)
		}
	}
}

// normalised returns what decoding msg's encoding yields where the wire
// form carries less than the Go value.
func normalised(msg Message) Message {
	switch m := msg.(type) {
	case *BundleAdd:
		c := *m
		inner, _ := Decode(must(Encode(m.Message)))
		inner.SetXID(m.Xid)
		c.Message = inner
		return &c
	case *FlowMod:
		// Field slices and notes come back in their explicit wire form.
		d, _ := Decode(must(Encode(m)))
		return d
	}
	return msg
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestReaderStream(t *testing.T) {
	var stream []byte
	samples := allSamples()
	for _, m := range samples {
		stream = append(stream, must(Encode(m))...)
	}
	// One byte per Read: framing must not depend on read sizes.
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)))
	for i, want := range samples {
		got, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Type() != want.Type() || got.XID() != want.XID() {
			t.Fatalf("message %d: got %v xid %d, want %v xid %d", i, got.Type(), got.XID(), want.Type(), want.XID())
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("after the last message: %v, want io.EOF", err)
	}
}

// countingReader counts what the Reader consumed.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReaderReadsExactlyOneMessage(t *testing.T) {
	first := must(Encode(&EchoRequest{Header: hdr(1), Data: []byte("ping")}))
	cr := &countingReader{r: bytes.NewReader(append(first, 0xde, 0xad))}
	if _, err := NewReader(cr).ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if cr.n != len(first) {
		t.Fatalf("consumed %d bytes, message is %d", cr.n, len(first))
	}
}

func TestReaderErrors(t *testing.T) {
	echo := must(Encode(&EchoRequest{Header: hdr(1), Data: []byte("ping")}))
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty", nil, io.EOF},
		{"short header", echo[:5], io.ErrUnexpectedEOF},
		{"short body", echo[:10], io.ErrUnexpectedEOF},
		{"length below header", []byte{4, 0, 0, 7, 0, 0, 0, 0}, ErrBadLength},
		{"version zero", []byte{0, 0, 0, 8, 0, 0, 0, 0}, ErrBadVersion},
		{"not OpenFlow", []byte("GET / HTTP/1.1\r\n"), ErrBadVersion},
		{"huge length, short stream", []byte{4, 2, 0xff, 0xff, 0, 0, 0, 1, 1, 2, 3}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.input)).ReadMessage()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A reader error is returned as is, not hidden.
	boom := errors.New("boom")
	if _, err := NewReader(iotest.ErrReader(boom)).ReadMessage(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
}

// TestReaderContinuesAfterBadBody: a malformed body is a *DecodeError and
// the next message still decodes.
func TestReaderContinuesAfterBadBody(t *testing.T) {
	bad := []byte{4, byte(TypePortStatus), 0, 12, 0, 0, 0, 7, 1, 2, 3, 4} // port status without a port
	good := must(Encode(&BarrierReply{Header: hdr(8)}))
	r := NewReader(bytes.NewReader(append(bad, good...)))
	_, err := r.ReadMessage()
	var de *DecodeError
	if !errors.As(err, &de) || de.Header.Xid != 7 || de.Header.Type != TypePortStatus || !bytes.Equal(de.Raw, bad) {
		t.Fatalf("got %v, want a DecodeError for xid 7", err)
	}
	m, err := r.ReadMessage()
	if err != nil || m.Type() != TypeBarrierReply || m.XID() != 8 {
		t.Fatalf("next message: %v %v", m, err)
	}
}

func TestEncodeTooLong(t *testing.T) {
	_, err := Encode(&EchoRequest{Data: make([]byte, MaxMessageLen)})
	if err == nil || !strings.Contains(err.Error(), "65535") {
		t.Fatalf("got %v, want a length error", err)
	}
	_, err = Encode(&PacketOut{Actions: []Action{Note{Data: make([]byte, 70000)}}})
	if err == nil {
		t.Fatal("a 70000-byte note encoded")
	}
}

func TestEncodeRejectsBadFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  Message
	}{
		{"reg16", AddFlow(0, 1, NewMatch(Reg(16, 1)))},
		{"xreg8", AddFlow(0, 1, NewMatch(XReg(8, 1)))},
		{"bad mac", AddFlow(0, 1, NewMatch(EthSrc([]byte{1, 2})))},
		{"ipv6 in ipv4 field", AddFlow(0, 1, NewMatch(IPv4Src(ip4("fe80::1"))))},
		{"mask on exact field", AddFlow(0, 1, NewMatch(Field{ID: FieldEthType, Value: []byte{8, 0}, Mask: []byte{0xff, 0xff}}))},
		{"short value", AddFlow(0, 1, NewMatch(Field{ID: FieldInPort, Value: []byte{1}}))},
		{"load too wide", AddFlow(0, 1, NewMatch(), Apply(RegLoad{Dst: Slice(RegField(0), 0, 4), Value: 0x10}))},
		{"slice beyond field", AddFlow(0, 1, NewMatch(), Apply(RegLoad{Dst: Slice(RegField(0), 30, 4), Value: 1}))},
		{"move width mismatch", AddFlow(0, 1, NewMatch(), Apply(RegMove{Src: Slice(RegField(0), 0, 8), Dst: Slice(RegField(1), 0, 16)}))},
		{"conjunction clause", AddFlow(0, 1, NewMatch(), Apply(Conjunction{ID: 1, Clause: 3, NClauses: 2}))},
		{"nat src and dst", AddFlow(0, 1, NewMatch(), Apply(CT{Actions: []Action{NAT{Src: true, Dst: true}}}))},
		{"resubmit port", AddFlow(0, 1, NewMatch(), Apply(Resubmit{Port: 0x10000}))},
		{"port name", &PortStatus{Port: Port{Name: "a-very-long-port-name"}}},
		{"bundle add without message", &BundleAdd{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := Encode(tc.msg); err == nil {
				t.Fatalf("encoded %x, want an error", b)
			}
		})
	}
}

func TestBundleHelper(t *testing.T) {
	next := uint32(100)
	xid := func() uint32 { next++; return next }
	fm1 := AddFlow(0, 10, NewMatch(InPort(1)), Apply(Output{Port: 2}))
	fm2 := AddFlow(0, 10, NewMatch(InPort(2)), Apply(Output{Port: 1}))
	fm1.Xid = 7
	msgs := Bundle(5, BundleAtomic|BundleOrdered, xid, fm1, fm2)
	if len(msgs) != 4 {
		t.Fatalf("got %d messages", len(msgs))
	}
	open, ok := msgs[0].(*BundleControl)
	if !ok || open.CtrlType != BundleOpenRequest || open.Xid != 101 || open.BundleID != 5 || open.Flags != BundleAtomic|BundleOrdered {
		t.Fatalf("open: %#v", msgs[0])
	}
	commit, ok := msgs[3].(*BundleControl)
	if !ok || commit.CtrlType != BundleCommitRequest || commit.Xid != 104 {
		t.Fatalf("commit: %#v", msgs[3])
	}
	for i, want := range []*FlowMod{fm1, fm2} {
		add := msgs[i+1].(*BundleAdd)
		if add.Xid != uint32(102+i) || add.Message != want {
			t.Fatalf("add %d: %#v", i, add)
		}
		d, err := Decode(must(Encode(add)))
		if err != nil {
			t.Fatal(err)
		}
		inner := d.(*BundleAdd).Message
		if inner.XID() != add.Xid {
			t.Errorf("add %d: inner xid %d, want the add's %d", i, inner.XID(), add.Xid)
		}
	}
	if fm1.Xid != 7 {
		t.Errorf("Bundle changed the caller's message xid to %d", fm1.Xid)
	}
}

func TestHelloNegotiation(t *testing.T) {
	if h := NewHello(1, 4, 4); !h.Supports(4) || h.Supports(5) || h.Version != 4 {
		t.Errorf("bitmap hello %+v", h)
	}
	if h := (&Hello{Version: 6}); !h.Supports(4) || h.Supports(7) {
		t.Errorf("plain hello %+v", h)
	}
}

func TestErrorMsgIs(t *testing.T) {
	d, err := Decode(must(Encode(&ErrorMsg{Header: hdr(3), ErrType: ErrExperimenter, Code: BundleErrMsgFailed, Experimenter: ONFExperimenter})))
	if err != nil {
		t.Fatal(err)
	}
	var asErr error = d.(*ErrorMsg)
	if !errors.Is(asErr, &ErrorMsg{ErrType: ErrExperimenter, Code: BundleErrMsgFailed, Experimenter: ONFExperimenter}) {
		t.Error("errors.Is does not match the same error")
	}
	if errors.Is(asErr, &ErrorMsg{ErrType: ErrBadMatch, Code: 6}) {
		t.Error("errors.Is matches another error")
	}
}

func TestPortStatusUnmarshalAllocs(t *testing.T) {
	b := must(Encode(&PortStatus{Reason: PortReasonModify, Port: samplePort(7, "veth1", PortStateLive)}))
	var ps PortStatus
	if err := ps.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !ps.Port.Live() || ps.Port.Name != "veth1" || ps.Port.PortNo != 7 || ps.Reason != PortReasonModify {
		t.Fatalf("decoded %+v", ps)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := ps.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("UnmarshalBinary into a reused PortStatus allocates %v times, want 0", allocs)
	}
	if err := ps.UnmarshalBinary(must(Encode(&BarrierReply{}))); err == nil {
		t.Error("UnmarshalBinary accepted a barrier reply")
	}
}

func TestFieldAccessors(t *testing.T) {
	m := NewMatch(IPv4SrcPrefix(pfx("10.1.0.0/16")), EthSrc(mac1), Reg(3, 9))
	f, _ := m.Get(FieldIPv4Src)
	if f.Addr() != ip4("10.1.0.0") || f.MaskUint() != 0xffff0000 {
		t.Errorf("ipv4 field %v", f)
	}
	if f, _ := m.Get(FieldEthSrc); f.MAC().String() != mac1.String() {
		t.Errorf("mac field %v", f)
	}
	if f, ok := m.Get(RegField(3)); !ok || f.Uint() != 9 || f.Masked() {
		t.Errorf("reg field %v", f)
	}
	if _, ok := m.Get(FieldInPort); ok {
		t.Error("found a field that is not there")
	}
	// A /32 prefix is an exact match.
	if f := IPv4SrcPrefix(pfx("10.0.0.1/32")); f.Mask != nil {
		t.Errorf("/32 has mask %x", f.Mask)
	}
}

func TestPacketInInPort(t *testing.T) {
	pi := &PacketIn{Match: NewMatch(InPort(5))}
	if p, ok := pi.InPort(); !ok || p != 5 {
		t.Errorf("InPort() = %d, %v", p, ok)
	}
}

package openflow

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// seedMessages are the encodings of every sample message.
func seedMessages() [][]byte {
	var out [][]byte
	for _, m := range allSamples() {
		out = append(out, must(Encode(m)))
	}
	return out
}

// seedParts returns the encoded matches, instruction lists and action lists
// of the sample flows.
func seedParts() (matches, insts, actions [][]byte) {
	for _, s := range flowSamples() {
		matches = append(matches, must(s.fm.Match.appendMatch(nil)))
		insts = append(insts, must(AppendInstructions(nil, s.fm.Instructions)))
		for _, in := range s.fm.Instructions {
			switch in := in.(type) {
			case ApplyActions:
				actions = append(actions, must(AppendActions(nil, in.Actions)))
			case WriteActions:
				actions = append(actions, must(AppendActions(nil, in.Actions)))
			}
		}
	}
	return matches, insts, actions
}

// checkReencode: whatever decodes and encodes again must decode to
// something that encodes to the same bytes.
func checkReencode(t *testing.T, m Message) {
	b, err := Encode(m)
	if err != nil {
		return // the decoder accepts some things the encoder refuses (e.g. 16-byte port names)
	}
	m2, err := Decode(b)
	if err != nil {
		t.Fatalf("re-decode of %T %x: %v", m, b, err)
	}
	b2, err := Encode(m2)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("%T: encoding not stable: %v\n%x\n%x", m, err, b, b2)
	}
	_ = m2.Type().String()
	if s, ok := m2.(interface{ String() string }); ok {
		_ = s.String()
	}
	if e, ok := m2.(*ErrorMsg); ok {
		_ = e.Error()
	}
}

func FuzzReader(f *testing.F) {
	seeds := seedMessages()
	f.Add(bytes.Join(seeds, nil))
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		// Every successful read consumes at least a header, so this ends.
		for range len(data)/HeaderLen + 1 {
			m, err := r.ReadMessage()
			var de *DecodeError
			if errors.As(err, &de) {
				continue
			}
			if err != nil {
				return
			}
			checkReencode(t, m)
		}
		if _, err := r.ReadMessage(); err == nil {
			t.Fatalf("read more messages than the input can hold")
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range seedMessages() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		checkReencode(t, m)
	})
}

func FuzzPortStatus(f *testing.F) {
	f.Add(must(Encode(&PortStatus{Reason: PortReasonAdd, Port: samplePort(3, "veth3", PortStateLive)})))
	f.Add(must(Encode(&PortDescReply{Ports: []Port{samplePort(1, "a", 0), samplePort(2, "b", 0)}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps PortStatus
		if err := ps.UnmarshalBinary(data); err != nil {
			return
		}
		_ = ps.Port.String()
		checkReencode(t, &ps)
	})
}

func FuzzDecodeMatch(f *testing.F) {
	matches, _, _ := seedParts()
	for _, s := range matches {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMatch(&reader{b: data})
		if err != nil {
			return
		}
		_ = m.String()
		b, err := m.appendMatch(nil)
		if err != nil {
			return
		}
		m2, err := decodeMatch(&reader{b: b})
		if err != nil {
			t.Fatalf("re-decode %x: %v", b, err)
		}
		if b2 := must(m2.appendMatch(nil)); !bytes.Equal(b, b2) {
			t.Fatalf("match encoding not stable:\n%x\n%x", b, b2)
		}
	})
}

func FuzzDecodeActions(f *testing.F) {
	_, _, actions := seedParts()
	for _, s := range actions {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		acts, err := DecodeActions(data)
		if err != nil {
			return
		}
		_ = ActionsString(acts)
		b, err := AppendActions(nil, acts)
		if err != nil {
			return
		}
		acts2, err := DecodeActions(b)
		if err != nil {
			t.Fatalf("re-decode %x: %v", b, err)
		}
		if b2 := must(AppendActions(nil, acts2)); !bytes.Equal(b, b2) {
			t.Fatalf("action encoding not stable:\n%x\n%x", b, b2)
		}
	})
}

func FuzzDecodeInstructions(f *testing.F) {
	_, insts, _ := seedParts()
	for _, s := range insts {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ins, err := DecodeInstructions(data)
		if err != nil {
			return
		}
		_ = InstructionsString(ins)
		b, err := AppendInstructions(nil, ins)
		if err != nil {
			return
		}
		ins2, err := DecodeInstructions(b)
		if err != nil {
			t.Fatalf("re-decode %x: %v", b, err)
		}
		if b2 := must(AppendInstructions(nil, ins2)); !bytes.Equal(b, b2) {
			t.Fatalf("instruction encoding not stable:\n%x\n%x", b, b2)
		}
	})
}

// TestDecodeAllocationBounded: decoding allocates in proportion to the
// bytes actually present, never to a length or count field claiming more.
func TestDecodeAllocationBounded(t *testing.T) {
	inputs := seedMessages()
	hostile := [][]byte{
		// Hello element claiming 64 KiB.
		{4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0xff, 0xff, 0, 0, 0, 0x10},
		// Port desc reply with a partial port.
		append([]byte{4, 19, 0, 24, 0, 0, 0, 1, 0, 13, 0, 0, 0, 0, 0, 0}, make([]byte, 8)...),
		// Flow stats entry claiming 65535 bytes.
		append([]byte{4, 19, 0, 24, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, make([]byte, 6)...),
		// Match claiming 65535 bytes in a flow mod.
		append(append([]byte{4, 14, 0, 60, 0, 0, 0, 1}, make([]byte, 40)...), 0, 1, 0xff, 0xff, 0x80, 0, 0, 4, 0, 0, 0, 1),
		// Packet out whose actions length exceeds the message.
		append([]byte{4, 13, 0, 24, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0xff, 0xf0}, make([]byte, 6)...),
	}
	for _, h := range hostile {
		h[2], h[3] = byte(len(h)>>8), byte(len(h))
		inputs = append(inputs, h)
	}
	const runs = 50
	for i, in := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range runs {
			m, err := Decode(in)
			_, _ = m, err
		}
		runtime.ReadMemStats(&after)
		perDecode := (after.TotalAlloc - before.TotalAlloc) / runs
		if limit := uint64(64*len(in) + 2048); perDecode > limit {
			t.Errorf("input %d (%d bytes): %d bytes allocated per decode, limit %d", i, len(in), perDecode, limit)
		}
	}
}

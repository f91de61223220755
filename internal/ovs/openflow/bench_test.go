package openflow

import (
	"testing"
)

func BenchmarkPortStatusUnmarshal(b *testing.B) {
	raw := must(Encode(&PortStatus{Reason: PortReasonModify, Port: samplePort(7, "veth1", PortStateLive)}))
	var ps PortStatus
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := ps.UnmarshalBinary(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePortStatus(b *testing.B) {
	raw := must(Encode(&PortStatus{Reason: PortReasonModify, Port: samplePort(7, "veth1", PortStateLive)}))
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeFlowMod(b *testing.B) {
	fm := flowSamples()[1].fm // the one with many match fields
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = fm.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeFlowMod(b *testing.B) {
	raw := must(Encode(flowSamples()[1].fm))
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

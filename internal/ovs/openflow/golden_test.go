package openflow

import (
	"strings"
	"testing"
)

// TestGoldenOVSDecodesOurMessages encodes messages and has OVS's own
// decoder print them.
func TestGoldenOVSDecodesOurMessages(t *testing.T) {
	for _, s := range messageSamples() {
		t.Run(s.name, func(t *testing.T) {
			b, err := Encode(s.msg)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			out := ofpPrint(t, b)
			if strings.Contains(out, "***") {
				t.Fatalf("OVS could not decode %x:\n%s", b, out)
			}
			for _, want := range s.ovs {
				if !strings.Contains(out, want) {
					t.Errorf("OVS decoding lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestGoldenOVSDecodesOurFlows checks the flow text OVS prints for each
// flow mod, and that FlowMod.String prints the same.
func TestGoldenOVSDecodesOurFlows(t *testing.T) {
	for _, s := range flowSamples() {
		t.Run(s.name, func(t *testing.T) {
			b, err := Encode(s.fm)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			out := strings.TrimSpace(ofpPrint(t, b))
			const prefix = "OFPT_FLOW_MOD (OF1.3) (xid=0x10): "
			if got, ok := strings.CutPrefix(out, prefix); !ok || got != s.text {
				t.Errorf("OVS prints\n%s\nwant\n%s%s", out, prefix, s.text)
			}
			if !s.ovsOnly {
				if got := s.fm.String(); got != s.text {
					t.Errorf("FlowMod.String():\n got %s\nwant %s", got, s.text)
				}
			}
		})
	}
}

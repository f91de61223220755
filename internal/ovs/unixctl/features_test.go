package unixctl

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// featuresNetdev31 is dpif/show-dp-features for a datapath_type=netdev
// bridge of OVS 3.1.0, as captured from the daemon.
const featuresNetdev31 = "Masked set action: Yes\nTunnel push pop: Yes\nUfid: Yes\nTruncate action: Yes\nClone action: Yes\nSample nesting: 10\nConntrack eventmask: Yes\nConntrack clear: Yes\nMax dp_hash algorithm: 1\nCheck pkt length action: Yes\nConntrack timeout policy: Yes\nExplicit Drop action: Yes\nOptimized Balance TCP mode: Yes\nConntrack all-zero IP SNAT: Yes\nMPLS Label add: Yes\nMax VLAN headers: 1\nMax MPLS depth: 3\nRecirc: Yes\nCT state: Yes\nCT zone: Yes\nCT mark: Yes\nCT label: Yes\nCT state NAT: Yes\nCT orig tuple: Yes\nCT orig tuple for IPv6: Yes\nIPv6 ND Extension: Yes\n"

// wantNetdev31 is what featuresNetdev31 must parse to.
var wantNetdev31 = Features{
	MaskedSetAction: true, TunnelPushPop: true, UFID: true, TruncateAction: true,
	CloneAction: true, SampleNesting: 10, CTEventMask: true, CTClear: true,
	MaxDPHashAlgorithm: 1, CheckPktLenAction: true, CTTimeoutPolicy: true,
	ExplicitDropAction: true, OptimizedBalanceTCP: true, CTZeroSNAT: true,
	MPLSLabelAdd: true, MaxVLANHeaders: 1, MaxMPLSDepth: 3, Recirc: true,
	CTState: true, CTZone: true, CTMark: true, CTLabel: true, CTStateNAT: true,
	CTOrigTuple: true, CTOrigTuple6: true, IPv6NDExtension: true,
}

func TestParseFeaturesNetdev31(t *testing.T) {
	f, err := ParseFeatures(featuresNetdev31)
	if err != nil {
		t.Fatal(err)
	}
	if f.Unknown != nil {
		t.Errorf("every 3.1 line should be known, unknown: %q", f.Unknown)
	}
	want := wantNetdev31
	if !featuresEqual(*f, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", *f, want)
	}
	// Every line of the real output maps to a constant that reads back.
	for line := range strings.SplitSeq(strings.TrimSpace(featuresNetdev31), "\n") {
		name, _, _ := strings.Cut(line, ":")
		if !f.Supported(Feature(name)) {
			t.Errorf("Supported(%q) = false", name)
		}
	}
	if m := f.Missing(RequiredFeatures()...); m != nil {
		t.Errorf("Missing = %q", m)
	}
}

func featuresEqual(a, b Features) bool {
	a.Unknown, b.Unknown = nil, nil
	return reflect.DeepEqual(a, b)
}

func TestParseFeaturesKeepsUnknownLines(t *testing.T) {
	text := "Recirc: Yes\nPsample action: Yes\nMax frobs: 4\nFancy thing: No\nsome header\n\n  CT zone :  Yes  \n"
	f, err := ParseFeatures(text)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Recirc || !f.CTZone {
		t.Errorf("known lines not parsed: %+v", f)
	}
	want := map[string]string{"Psample action": "Yes", "Max frobs": "4", "Fancy thing": "No", "some header": ""}
	if len(f.Unknown) != len(want) {
		t.Errorf("Unknown = %q, want %q", f.Unknown, want)
	}
	for k, v := range want {
		if f.Unknown[k] != v {
			t.Errorf("Unknown[%q] = %q, want %q", k, f.Unknown[k], v)
		}
	}
	for name, want := range map[Feature]bool{"Psample action": true, "Max frobs": true, "Fancy thing": false, "Nonexistent": false, FeatureCTLabel: false} {
		if got := f.Supported(name); got != want {
			t.Errorf("Supported(%q) = %v, want %v", name, got, want)
		}
	}
	if got := f.Missing(RequiredFeatures()...); !slices.Equal(got, []string{"CT state", "CT mark", "CT label"}) {
		t.Errorf("Missing = %q", got)
	}
}

func TestParseFeaturesNumericZeroIsUnsupported(t *testing.T) {
	f, err := ParseFeatures("Max MPLS depth: 0\nSample nesting: 3\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.Supported(FeatureMaxMPLSDepth) || !f.Supported(FeatureSampleNesting) {
		t.Errorf("numeric support wrong: %+v", f)
	}
}

func TestParseFeaturesRejects(t *testing.T) {
	for _, text := range []string{
		"",
		"\n\n",
		"no colon anywhere\n",
		"CT state: maybe\n",
		"Recirc: yes\n", // OVS writes Yes; anything else means the format changed
		"Max MPLS depth: three\n",
		"Max MPLS depth: -1\n",
		"Sample nesting: 99999999999999999999999\n",
	} {
		if f, err := ParseFeatures(text); err == nil {
			t.Errorf("ParseFeatures(%q) = %+v, want an error", text, f)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		"ovs-vswitchd (Open vSwitch) 3.1.0\n":            "3.1.0",
		"ovs-vswitchd (Open vSwitch) 2.17.9\nDPDK 21.11": "2.17.9",
		"ovs-vswitchd (Open vSwitch) 3.5.90-rc1":         "3.5.90-rc1",
		"":                                               "",
		"3.1.0":                                          "",
		"ovs-vswitchd (Open vSwitch) unknown":            "",
		"\novs-vswitchd (Open vSwitch) 3.1.0":            "",
	} {
		got, ok := parseVersion(in)
		if got != want || ok != (want != "") {
			t.Errorf("parseVersion(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

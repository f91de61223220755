package unixctl

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Feature names a line of `ovs-appctl dpif/show-dp-features <bridge>`,
// spelled exactly as OVS prints it, so error messages match what an
// operator sees.
type Feature string

// The features OVS 3.1 reports, in its order.
const (
	FeatureMaskedSetAction     Feature = "Masked set action"
	FeatureTunnelPushPop       Feature = "Tunnel push pop"
	FeatureUFID                Feature = "Ufid"
	FeatureTruncateAction      Feature = "Truncate action"
	FeatureCloneAction         Feature = "Clone action"
	FeatureSampleNesting       Feature = "Sample nesting"
	FeatureCTEventMask         Feature = "Conntrack eventmask"
	FeatureCTClear             Feature = "Conntrack clear"
	FeatureMaxDPHashAlgorithm  Feature = "Max dp_hash algorithm"
	FeatureCheckPktLenAction   Feature = "Check pkt length action"
	FeatureCTTimeoutPolicy     Feature = "Conntrack timeout policy"
	FeatureExplicitDropAction  Feature = "Explicit Drop action"
	FeatureOptimizedBalanceTCP Feature = "Optimized Balance TCP mode"
	FeatureCTZeroSNAT          Feature = "Conntrack all-zero IP SNAT"
	FeatureMPLSLabelAdd        Feature = "MPLS Label add"
	FeatureMaxVLANHeaders      Feature = "Max VLAN headers"
	FeatureMaxMPLSDepth        Feature = "Max MPLS depth"
	FeatureRecirc              Feature = "Recirc"
	FeatureCTState             Feature = "CT state"
	FeatureCTZone              Feature = "CT zone"
	FeatureCTMark              Feature = "CT mark"
	FeatureCTLabel             Feature = "CT label"
	FeatureCTStateNAT          Feature = "CT state NAT"
	FeatureCTOrigTuple         Feature = "CT orig tuple"
	FeatureCTOrigTuple6        Feature = "CT orig tuple for IPv6"
	FeatureIPv6NDExtension     Feature = "IPv6 ND Extension"
)

// RequiredFeatures returns the features ovsnet's pipeline cannot work
// without: conntrack state, zones, marks and labels, and recirculation to
// come back from the conntrack action.
func RequiredFeatures() []Feature {
	return []Feature{FeatureRecirc, FeatureCTState, FeatureCTZone, FeatureCTMark, FeatureCTLabel}
}

// Features is what the datapath behind a bridge supports, as probed by
// ovs-vswitchd when it opened the datapath. Numeric fields are limits (0:
// unsupported).
type Features struct {
	Bridge string

	MaskedSetAction     bool
	TunnelPushPop       bool
	UFID                bool
	TruncateAction      bool
	CloneAction         bool
	SampleNesting       int
	CTEventMask         bool
	CTClear             bool
	MaxDPHashAlgorithm  int
	CheckPktLenAction   bool
	CTTimeoutPolicy     bool
	ExplicitDropAction  bool
	OptimizedBalanceTCP bool
	CTZeroSNAT          bool
	MPLSLabelAdd        bool
	MaxVLANHeaders      int
	MaxMPLSDepth        int
	Recirc              bool
	CTState             bool
	CTZone              bool
	CTMark              bool
	CTLabel             bool
	CTStateNAT          bool
	CTOrigTuple         bool
	CTOrigTuple6        bool
	IPv6NDExtension     bool

	// Unknown holds lines this package does not know, name -> value, so a
	// newer OVS adds features without breaking the parser.
	Unknown map[string]string
	// Text is the daemon's reply as received, for operators.
	Text string
}

// field maps a feature to its typed field: a flag or a number.
func (f *Features) field(name Feature) (*bool, *int) {
	switch name {
	case FeatureMaskedSetAction:
		return &f.MaskedSetAction, nil
	case FeatureTunnelPushPop:
		return &f.TunnelPushPop, nil
	case FeatureUFID:
		return &f.UFID, nil
	case FeatureTruncateAction:
		return &f.TruncateAction, nil
	case FeatureCloneAction:
		return &f.CloneAction, nil
	case FeatureSampleNesting:
		return nil, &f.SampleNesting
	case FeatureCTEventMask:
		return &f.CTEventMask, nil
	case FeatureCTClear:
		return &f.CTClear, nil
	case FeatureMaxDPHashAlgorithm:
		return nil, &f.MaxDPHashAlgorithm
	case FeatureCheckPktLenAction:
		return &f.CheckPktLenAction, nil
	case FeatureCTTimeoutPolicy:
		return &f.CTTimeoutPolicy, nil
	case FeatureExplicitDropAction:
		return &f.ExplicitDropAction, nil
	case FeatureOptimizedBalanceTCP:
		return &f.OptimizedBalanceTCP, nil
	case FeatureCTZeroSNAT:
		return &f.CTZeroSNAT, nil
	case FeatureMPLSLabelAdd:
		return &f.MPLSLabelAdd, nil
	case FeatureMaxVLANHeaders:
		return nil, &f.MaxVLANHeaders
	case FeatureMaxMPLSDepth:
		return nil, &f.MaxMPLSDepth
	case FeatureRecirc:
		return &f.Recirc, nil
	case FeatureCTState:
		return &f.CTState, nil
	case FeatureCTZone:
		return &f.CTZone, nil
	case FeatureCTMark:
		return &f.CTMark, nil
	case FeatureCTLabel:
		return &f.CTLabel, nil
	case FeatureCTStateNAT:
		return &f.CTStateNAT, nil
	case FeatureCTOrigTuple:
		return &f.CTOrigTuple, nil
	case FeatureCTOrigTuple6:
		return &f.CTOrigTuple6, nil
	case FeatureIPv6NDExtension:
		return &f.IPv6NDExtension, nil
	}
	return nil, nil
}

// ParseFeatures parses the text of dpif/show-dp-features: one
// "Name: value" line per feature, value Yes, No or a number. A known feature
// with an unexpected value is an error; unknown lines go to Unknown; a
// feature missing from the text counts as unsupported.
func ParseFeatures(text string) (*Features, error) {
	f := &Features{}
	lines := 0
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			// Not a feature line (a header in some future OVS?): keep it.
			f.setUnknown(line, "")
			continue
		}
		lines++
		flag, num := f.field(Feature(name))
		switch {
		case flag != nil:
			switch value {
			case "Yes":
				*flag = true
			case "No":
				*flag = false
			default:
				return nil, fmt.Errorf("datapath feature line %s: want Yes or No", shorten(line))
			}
		case num != nil:
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("datapath feature line %s: want a count", shorten(line))
			}
			*num = n
		default:
			f.setUnknown(name, value)
		}
	}
	if lines == 0 {
		return nil, fmt.Errorf("no \"name: value\" line in datapath features %s", shorten(text))
	}
	return f, nil
}

func (f *Features) setUnknown(name, value string) {
	if f.Unknown == nil {
		f.Unknown = make(map[string]string)
	}
	f.Unknown[name] = value
}

// Supported reports whether the datapath has feature name: Yes, or a
// non-zero limit. Names outside the constants are looked up in Unknown.
func (f *Features) Supported(name Feature) bool {
	flag, num := f.field(name)
	switch {
	case flag != nil:
		return *flag
	case num != nil:
		return *num > 0
	}
	v, ok := f.Unknown[string(name)]
	if !ok {
		return false
	}
	if v == "Yes" {
		return true
	}
	n, err := strconv.Atoi(v)
	return err == nil && n > 0
}

// Missing returns the names of the required features the datapath lacks,
// in the order given.
func (f *Features) Missing(required ...Feature) []string {
	var out []string
	for _, r := range required {
		if !f.Supported(r) {
			out = append(out, string(r))
		}
	}
	return out
}

// Require returns a *MissingFeaturesError naming every required feature the
// datapath lacks, or nil.
func (f *Features) Require(required ...Feature) error {
	if m := f.Missing(required...); len(m) > 0 {
		return &MissingFeaturesError{Bridge: f.Bridge, Missing: m}
	}
	return nil
}

// DatapathFeatures asks ovs-vswitchd what the datapath of bridge supports.
// Until the daemon has built the bridge this fails with ErrNotValidCommand or
// ErrNoSuchBridge (both transient): wait for the bridge to be ready first.
func (c *Client) DatapathFeatures(ctx context.Context, bridge string) (*Features, error) {
	const method = "dpif/show-dp-features"
	out, err := c.Call(ctx, method, bridge)
	if err != nil {
		return nil, fmt.Errorf("datapath features of bridge %s: %w", bridge, err)
	}
	f, err := ParseFeatures(out)
	if err != nil {
		return nil, fmt.Errorf("datapath features of bridge %s: %w", bridge,
			&ProtocolError{Method: method, Reason: "unexpected features text", Err: err})
	}
	f.Bridge, f.Text = bridge, out
	return f, nil
}

package openflow

import (
	"fmt"
)

// ErrorType is the ofp_error_type of an ERROR message.
type ErrorType uint16

// OpenFlow 1.3 error types.
const (
	ErrHelloFailed         ErrorType = 0
	ErrBadRequest          ErrorType = 1
	ErrBadAction           ErrorType = 2
	ErrBadInstruction      ErrorType = 3
	ErrBadMatch            ErrorType = 4
	ErrFlowModFailed       ErrorType = 5
	ErrGroupModFailed      ErrorType = 6
	ErrPortModFailed       ErrorType = 7
	ErrTableModFailed      ErrorType = 8
	ErrQueueOpFailed       ErrorType = 9
	ErrSwitchConfigFailed  ErrorType = 10
	ErrRoleRequestFailed   ErrorType = 11
	ErrMeterModFailed      ErrorType = 12
	ErrTableFeaturesFailed ErrorType = 13
	ErrExperimenter        ErrorType = 0xffff
)

// errorTypeInfo names a type and its codes, with the prefix the OpenFlow
// specification (and OVS's messages) use for them.
type errorTypeInfo struct {
	name   string
	prefix string
	codes  []string
}

var errorTypes = map[ErrorType]errorTypeInfo{
	ErrHelloFailed: {"HELLO_FAILED", "OFPHFC_", []string{"INCOMPATIBLE", "EPERM"}},
	ErrBadRequest: {"BAD_REQUEST", "OFPBRC_", []string{"BAD_VERSION", "BAD_TYPE", "BAD_MULTIPART",
		"BAD_EXPERIMENTER", "BAD_EXP_TYPE", "EPERM", "BAD_LEN", "BUFFER_EMPTY", "BUFFER_UNKNOWN",
		"BAD_TABLE_ID", "IS_SLAVE", "BAD_PORT", "BAD_PACKET", "MULTIPART_BUFFER_OVERFLOW"}},
	ErrBadAction: {"BAD_ACTION", "OFPBAC_", []string{"BAD_TYPE", "BAD_LEN", "BAD_EXPERIMENTER",
		"BAD_EXP_TYPE", "BAD_OUT_PORT", "BAD_ARGUMENT", "EPERM", "TOO_MANY", "BAD_QUEUE",
		"BAD_OUT_GROUP", "MATCH_INCONSISTENT", "UNSUPPORTED_ORDER", "BAD_TAG", "BAD_SET_TYPE",
		"BAD_SET_LEN", "BAD_SET_ARGUMENT"}},
	ErrBadInstruction: {"BAD_INSTRUCTION", "OFPBIC_", []string{"UNKNOWN_INST", "UNSUP_INST",
		"BAD_TABLE_ID", "UNSUP_METADATA", "UNSUP_METADATA_MASK", "BAD_EXPERIMENTER",
		"BAD_EXP_TYPE", "BAD_LEN", "EPERM"}},
	ErrBadMatch: {"BAD_MATCH", "OFPBMC_", []string{"BAD_TYPE", "BAD_LEN", "BAD_TAG",
		"BAD_DL_ADDR_MASK", "BAD_NW_ADDR_MASK", "BAD_WILDCARDS", "BAD_FIELD", "BAD_VALUE",
		"BAD_MASK", "BAD_PREREQ", "DUP_FIELD", "EPERM"}},
	ErrFlowModFailed: {"FLOW_MOD_FAILED", "OFPFMFC_", []string{"UNKNOWN", "TABLE_FULL",
		"BAD_TABLE_ID", "OVERLAP", "EPERM", "BAD_TIMEOUT", "BAD_COMMAND", "BAD_FLAGS"}},
	ErrGroupModFailed: {"GROUP_MOD_FAILED", "OFPGMFC_", []string{"GROUP_EXISTS", "INVALID_GROUP",
		"WEIGHT_UNSUPPORTED", "OUT_OF_GROUPS", "OUT_OF_BUCKETS", "CHAINING_UNSUPPORTED",
		"WATCH_UNSUPPORTED", "LOOP", "UNKNOWN_GROUP", "CHAINED_GROUP", "BAD_TYPE",
		"BAD_COMMAND", "BAD_BUCKET", "BAD_WATCH", "EPERM"}},
	ErrPortModFailed: {"PORT_MOD_FAILED", "OFPPMFC_", []string{"BAD_PORT", "BAD_HW_ADDR",
		"BAD_CONFIG", "BAD_ADVERTISE", "EPERM"}},
	ErrTableModFailed:     {"TABLE_MOD_FAILED", "OFPTMFC_", []string{"BAD_TABLE", "BAD_CONFIG", "EPERM"}},
	ErrQueueOpFailed:      {"QUEUE_OP_FAILED", "OFPQOFC_", []string{"BAD_PORT", "BAD_QUEUE", "EPERM"}},
	ErrSwitchConfigFailed: {"SWITCH_CONFIG_FAILED", "OFPSCFC_", []string{"BAD_FLAGS", "BAD_LEN", "EPERM"}},
	ErrRoleRequestFailed:  {"ROLE_REQUEST_FAILED", "OFPRRFC_", []string{"STALE", "UNSUP", "BAD_ROLE"}},
	ErrMeterModFailed: {"METER_MOD_FAILED", "OFPMMFC_", []string{"UNKNOWN", "METER_EXISTS",
		"INVALID_METER", "UNKNOWN_METER", "BAD_COMMAND", "BAD_FLAGS", "BAD_RATE", "BAD_BURST",
		"BAD_BAND", "BAD_BAND_VALUE", "OUT_OF_METERS", "OUT_OF_BANDS"}},
	ErrTableFeaturesFailed: {"TABLE_FEATURES_FAILED", "OFPTFFC_", []string{"BAD_TABLE",
		"BAD_METADATA", "BAD_TYPE", "BAD_LEN", "BAD_ARGUMENT", "EPERM"}},
}

func (t ErrorType) String() string {
	if t == ErrExperimenter {
		return "OFPET_EXPERIMENTER"
	}
	if info, ok := errorTypes[t]; ok {
		return "OFPET_" + info.name
	}
	return fmt.Sprintf("OFPET_UNKNOWN(%d)", uint16(t))
}

// Experimenter ids seen in errors, actions and messages.
const (
	// NiciraExperimenter is NX_VENDOR_ID, the Nicira (OVS) extensions.
	NiciraExperimenter uint32 = 0x00002320
	// ONFExperimenter is ONF_VENDOR_ID, used for the OpenFlow 1.3 form of
	// bundles.
	ONFExperimenter uint32 = 0x4f4e4600
)

// ONF bundle error codes (the OpenFlow 1.3 extension numbers them from 2300)
// carried in experimenter errors with ONFExperimenter.
const (
	BundleErrUnknown          uint16 = 2300
	BundleErrEPerm            uint16 = 2301
	BundleErrBadID            uint16 = 2302
	BundleErrBundleExist      uint16 = 2303
	BundleErrBundleClosed     uint16 = 2304
	BundleErrOutOfBundles     uint16 = 2305
	BundleErrBadType          uint16 = 2306
	BundleErrBadFlags         uint16 = 2307
	BundleErrMsgBadLen        uint16 = 2308
	BundleErrMsgBadXID        uint16 = 2309
	BundleErrMsgUnsup         uint16 = 2310
	BundleErrMsgConflict      uint16 = 2311
	BundleErrMsgTooMany       uint16 = 2312
	BundleErrMsgFailed        uint16 = 2313
	BundleErrTimeout          uint16 = 2314
	BundleErrBundleInProgress uint16 = 2315
)

var bundleErrNames = []string{"UNKNOWN", "EPERM", "BAD_ID", "BUNDLE_EXIST", "BUNDLE_CLOSED",
	"OUT_OF_BUNDLES", "BAD_TYPE", "BAD_FLAGS", "MSG_BAD_LEN", "MSG_BAD_XID", "MSG_UNSUP",
	"MSG_CONFLICT", "MSG_TOO_MANY", "MSG_FAILED", "TIMEOUT", "BUNDLE_IN_PROGRESS"}

// niciraErrNames names the Nicira experimenter errors OVS sends to an
// OpenFlow 1.3 controller for the extensions ovsnet uses.
var niciraErrNames = map[uint16]string{
	2:  "NXBRC_NXM_INVALID",
	3:  "NXBRC_NXM_BAD_TYPE",
	5:  "NXBRC_BAD_REASON",
	9:  "NXBRC_FM_BAD_EVENT",
	11: "NXBAC_MUST_BE_ZERO",
	12: "NXFMFC_HARDWARE",
	13: "NXFMFC_BAD_TABLE_ID",
	42: "NXBAC_CT_DATAPATH_SUPPORT",
}

// ErrorMsg is an OpenFlow ERROR. For ErrExperimenter, Code is the
// experimenter's own code (exp_code) and Experimenter says whose. Data holds
// at least the first 64 bytes of the message that failed. *ErrorMsg is an
// error, so a connection can return it as is.
type ErrorMsg struct {
	Header
	ErrType      ErrorType
	Code         uint16
	Experimenter uint32
	Data         []byte
}

func (m *ErrorMsg) Type() Type { return TypeError }

func (m *ErrorMsg) AppendBinary(b []byte) ([]byte, error) {
	b, start := beginMessage(b, TypeError, m.Xid)
	b = appendU16(b, uint16(m.ErrType))
	b = appendU16(b, m.Code)
	if m.ErrType == ErrExperimenter {
		b = appendU32(b, m.Experimenter)
	}
	b = append(b, m.Data...)
	return endMessage(b, start)
}

func (m *ErrorMsg) decodeBody(r *reader) error {
	m.ErrType = ErrorType(r.u16())
	m.Code = r.u16()
	if m.ErrType == ErrExperimenter {
		m.Experimenter = r.u32()
	}
	m.Data = r.rest()
	return r.err
}

// Name is the symbolic name of the error, e.g. "OFPBMC_BAD_FIELD" or
// "OFPBFC_MSG_FAILED", or a numeric form for codes it does not know.
func (m *ErrorMsg) Name() string {
	if m.ErrType == ErrExperimenter {
		switch {
		case m.Experimenter == ONFExperimenter && m.Code >= BundleErrUnknown && int(m.Code-BundleErrUnknown) < len(bundleErrNames):
			return "OFPBFC_" + bundleErrNames[m.Code-BundleErrUnknown]
		case m.Experimenter == NiciraExperimenter && niciraErrNames[m.Code] != "":
			return niciraErrNames[m.Code]
		}
		return fmt.Sprintf("experimenter 0x%08x code %d", m.Experimenter, m.Code)
	}
	if info, ok := errorTypes[m.ErrType]; ok && int(m.Code) < len(info.codes) {
		return info.prefix + info.codes[m.Code]
	}
	return fmt.Sprintf("%v code %d", m.ErrType, m.Code)
}

// Is lets errors.Is match an ERROR by type and code (and experimenter):
// errors.Is(err, &ErrorMsg{ErrType: ErrBadMatch, Code: 6}).
func (m *ErrorMsg) Is(target error) bool {
	t, ok := target.(*ErrorMsg)
	return ok && t.ErrType == m.ErrType && t.Code == m.Code && t.Experimenter == m.Experimenter
}

// Error describes the failure and, when the data allows, which request
// failed.
func (m *ErrorMsg) Error() string {
	s := fmt.Sprintf("OpenFlow error %s (type %d, code %d)", m.Name(), uint16(m.ErrType), m.Code)
	if h, err := ParseHeader(m.Data); err == nil {
		s += fmt.Sprintf(" for %v xid 0x%x", h.Type, h.Xid)
	} else {
		s += fmt.Sprintf(" for xid 0x%x", m.Xid)
	}
	return s
}

// Offending returns the header of the request that failed, from Data.
func (m *ErrorMsg) Offending() (RawHeader, bool) {
	h, err := ParseHeader(m.Data)
	return h, err == nil
}

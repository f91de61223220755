package cniplugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// PluginType is the "type" of ovsnet network configurations: the name of the
// plugin binary in the runtime's CNI bin directory.
const PluginType = "ovsnet"

// MaxTimeoutSeconds bounds "timeoutSeconds".
const MaxTimeoutSeconds = 3600

// maxSocketPath is the longest path a unix socket address can hold.
const maxSocketPath = 107

// Default time the plugin gives the agent per verb. They are generous: the
// runtime's own timeout is the real bound, and the plugin only needs one so
// that a wedged agent cannot keep it forever.
const (
	defaultAddTimeout    = 2 * time.Minute
	defaultDelTimeout    = 2 * time.Minute
	defaultCheckTimeout  = time.Minute
	defaultGCTimeout     = 2 * time.Minute
	defaultStatusTimeout = 10 * time.Second
)

// NetConf is a parsed ovsnet network configuration:
//
//	{
//	  "cniVersion": "1.1.0",            // 0.3.0, 0.3.1, 0.4.0, 1.0.0 or 1.1.0
//	  "name": "ovsnet",
//	  "type": "ovsnet",
//	  "agentSocket": "/run/ovsnet/cni.sock",  // optional, absolute
//	  "timeoutSeconds": 120             // optional, 1..3600, all verbs
//	}
//
// plus the fields runtimes add (runtimeConfig, args, prevResult,
// cni.dev/valid-attachments), which are passed to the agent. Unknown fields
// are ignored, as CNI requires.
type NetConf struct {
	CNIVersion  string
	Name        string
	AgentSocket string
	// Timeout overrides the per-verb defaults when non-zero.
	Timeout time.Duration
	// RuntimeConfig is the "runtimeConfig" object, or nil.
	RuntimeConfig json.RawMessage
	// PrevResult is "prevResult" converted to cniapi.CurrentCNIVersion, or nil.
	PrevResult *current.Result
	// ValidAttachments is "cni.dev/valid-attachments" (GC only). When the
	// field is absent, as with cnitool or libcni given no GC arguments, it is
	// empty: nothing is valid, which is what those callers mean.
	ValidAttachments []types.GCAttachment
	// Raw is the configuration as read from stdin.
	Raw []byte
}

// rawConf mirrors the JSON fields ovsnet reads.
type rawConf struct {
	CNIVersion       string                `json:"cniVersion"`
	Name             string                `json:"name"`
	Type             string                `json:"type"`
	AgentSocket      *string               `json:"agentSocket"`
	TimeoutSeconds   *int                  `json:"timeoutSeconds"`
	RuntimeConfig    json.RawMessage       `json:"runtimeConfig"`
	Args             json.RawMessage       `json:"args"`
	PrevResult       json.RawMessage       `json:"prevResult"`
	ValidAttachments *[]types.GCAttachment `json:"cni.dev/valid-attachments"`
	// Attachments is the name an earlier revision of the spec used.
	Attachments *[]types.GCAttachment `json:"cni.dev/attachments"`
}

// ParseConfig parses and validates a network configuration. Its errors are
// *types.Error with the code the runtime should see:
//   - 6 (failed to decode content): stdin is not a JSON object, or its
//     "cniVersion" or "name" is not a string (the CNI library's own decoding
//     reports these as 6 before ovsnet sees the configuration; ParseConfig
//     agrees with it);
//   - 1 (incompatible CNI version): a cniVersion ovsnet does not speak;
//   - 7 (invalid network configuration): any other field of the wrong type or
//     with an invalid value.
func ParseConfig(data []byte) (*NetConf, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		if err == nil {
			err = errors.New("it is null")
		}
		return nil, types.NewError(types.ErrDecodingFailure, "cannot decode the network configuration as a JSON object", err.Error())
	}
	for _, k := range []string{"cniVersion", "name"} {
		if v, ok := top[k]; ok {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network configuration field %q must be a string", k), err.Error())
			}
		}
	}

	var rc rawConf
	if err := json.Unmarshal(data, &rc); err != nil {
		return nil, invalidConfig(fieldError(err), "fix the field's JSON type")
	}

	if !slices.Contains(cniapi.SupportedCNIVersions(), rc.CNIVersion) {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion,
			fmt.Sprintf("unsupported cniVersion %q", rc.CNIVersion),
			fmt.Sprintf("ovsnet supports %s", strings.Join(cniapi.SupportedCNIVersions(), ", ")))
	}
	if err := utils.ValidateNetworkName(rc.Name); err != nil {
		return nil, invalidConfig(fmt.Sprintf("invalid network name %q: %s", truncate(rc.Name, 64), err.Msg), "use letters, digits, '_', '.' and '-'")
	}
	if rc.Type != PluginType {
		return nil, invalidConfig(fmt.Sprintf("network configuration type is %q, not %q", truncate(rc.Type, 64), PluginType), "")
	}

	conf := &NetConf{
		CNIVersion:  rc.CNIVersion,
		Name:        rc.Name,
		AgentSocket: cniapi.DefaultSocket,
		Raw:         data,
	}
	if rc.AgentSocket != nil {
		sock, err := validateSocket(*rc.AgentSocket)
		if err != nil {
			return nil, err
		}
		conf.AgentSocket = sock
	}
	if rc.TimeoutSeconds != nil {
		t := *rc.TimeoutSeconds
		if t < 1 || t > MaxTimeoutSeconds {
			return nil, invalidConfig(fmt.Sprintf("timeoutSeconds %d is out of range", t), fmt.Sprintf("use 1..%d or omit it for the defaults", MaxTimeoutSeconds))
		}
		conf.Timeout = time.Duration(t) * time.Second
	}
	if !isObjectOrNull(rc.RuntimeConfig) {
		return nil, invalidConfig("runtimeConfig must be a JSON object", "")
	}
	if !isNull(rc.RuntimeConfig) {
		conf.RuntimeConfig = rc.RuntimeConfig
	}
	if !isObjectOrNull(rc.Args) {
		return nil, invalidConfig("args must be a JSON object", "")
	}
	if !isNull(rc.PrevResult) {
		prev, err := parsePrevResult(rc.CNIVersion, rc.PrevResult)
		if err != nil {
			return nil, err
		}
		conf.PrevResult = prev
	}

	va := rc.ValidAttachments
	if va == nil {
		va = rc.Attachments
	}
	conf.ValidAttachments = []types.GCAttachment{}
	if va != nil && *va != nil {
		for i, a := range *va {
			if a.ContainerID == "" || a.IfName == "" {
				return nil, invalidConfig(fmt.Sprintf("cni.dev/valid-attachments[%d] lacks containerID or ifname", i), "")
			}
		}
		conf.ValidAttachments = *va
	}
	return conf, nil
}

// TimeoutFor returns the time the plugin allows the agent for verb.
func (c *NetConf) TimeoutFor(verb cniapi.Verb) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	switch verb {
	case cniapi.VerbAdd:
		return defaultAddTimeout
	case cniapi.VerbDel:
		return defaultDelTimeout
	case cniapi.VerbCheck:
		return defaultCheckTimeout
	case cniapi.VerbGC:
		return defaultGCTimeout
	}
	return defaultStatusTimeout
}

func validateSocket(s string) (string, error) {
	switch {
	case s == "":
		return "", invalidConfig("agentSocket is empty", "omit it to use "+cniapi.DefaultSocket)
	case strings.ContainsRune(s, 0):
		return "", invalidConfig("agentSocket contains a NUL byte", "")
	case !filepath.IsAbs(s):
		return "", invalidConfig(fmt.Sprintf("agentSocket %q is not an absolute path", truncate(s, 128)), "use the agent's --cni-socket, e.g. "+cniapi.DefaultSocket)
	}
	s = filepath.Clean(s)
	if len(s) > maxSocketPath {
		return "", invalidConfig(fmt.Sprintf("agentSocket %q is longer than %d bytes", truncate(s, 128), maxSocketPath), "unix socket paths are limited; use a shorter path")
	}
	return s, nil
}

// parsePrevResult decodes prevResult in the version it declares (or the
// configuration's, if it declares none) and converts it for the agent.
func parsePrevResult(confVersion string, raw json.RawMessage) (*current.Result, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, invalidConfig("prevResult must be a JSON object", err.Error())
	}
	ver := confVersion
	if v, ok := obj["cniVersion"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, invalidConfig("prevResult cniVersion must be a string", err.Error())
		}
		if s != "" {
			ver = s
		}
	}
	if !slices.Contains(cniapi.SupportedCNIVersions(), ver) {
		return nil, invalidConfig(fmt.Sprintf("prevResult has unsupported cniVersion %q", truncate(ver, 32)), "")
	}
	v, _ := json.Marshal(ver)
	obj["cniVersion"] = v
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, invalidConfig("cannot re-encode prevResult", err.Error())
	}
	r, err := create.Create(ver, data)
	if err != nil {
		return nil, invalidConfig("cannot decode prevResult", err.Error())
	}
	cur, err := current.GetResult(r)
	if err != nil {
		return nil, invalidConfig("cannot convert prevResult", err.Error())
	}
	return cur, nil
}

func invalidConfig(msg, details string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, "invalid ovsnet network configuration: "+msg, details)
}

// fieldError names the offending field of a JSON type error.
func fieldError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q must be %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	return err.Error()
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "ptr":
		return "a value of another type"
	}
	return "of another type"
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

func isObjectOrNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return isNull(t) || t[0] == '{'
}

package cniapi

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// DefaultSocket is where the agent listens and the plugin dials unless the
// network configuration says otherwise ("agentSocket").
const DefaultSocket = "/run/ovsnet/cni.sock"

// APIVersion is the version of this wire API; it prefixes every path.
const APIVersion = "v1"

// Endpoint paths of API version v1.
const (
	PathAdd     = "/v1/cni/add"
	PathDel     = "/v1/cni/del"
	PathCheck   = "/v1/cni/check"
	PathGC      = "/v1/cni/gc"
	PathStatus  = "/v1/cni/status"
	PathVersion = "/v1/version"
)

// HeaderTimeout carries the time the agent may spend on a call, as a Go
// duration string.
const HeaderTimeout = "Ovsnet-Timeout"

// MaxTimeout bounds HeaderTimeout. Longer values are refused as malformed so
// that a corrupted header cannot pin a request in the agent for days.
const MaxTimeout = 24 * time.Hour

// MaxRequestBytes is the largest request body the agent accepts by default.
// A network configuration with a prevResult is a few kilobytes; the limit only
// stops a misbehaving client from exhausting the agent's memory.
const MaxRequestBytes = 1 << 20

// Error codes ovsnet adds to those of the CNI specification (codes 100 and up
// are free for plugins).
const (
	// CodeAgentInternal: the agent failed without a more specific code.
	CodeAgentInternal uint = 100
	// CodeProtocol: plugin and agent did not understand each other.
	CodeProtocol uint = 101
)

// CurrentCNIVersion is the CNI result version the agent answers ADD with; the
// plugin converts it to the version the runtime asked for.
const CurrentCNIVersion = current.ImplementedSpecVersion

// SupportedCNIVersions lists the CNI specification versions ovsnet accepts in
// network configurations, oldest first.
func SupportedCNIVersions() []string {
	return []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
}

// Verb names a CNI operation; it is used in logs and errors.
type Verb string

// The CNI operations the agent serves.
const (
	VerbAdd    Verb = "ADD"
	VerbDel    Verb = "DEL"
	VerbCheck  Verb = "CHECK"
	VerbGC     Verb = "GC"
	VerbStatus Verb = "STATUS"
)

// Path returns the endpoint serving the verb.
func (v Verb) Path() string {
	switch v {
	case VerbAdd:
		return PathAdd
	case VerbDel:
		return PathDel
	case VerbCheck:
		return PathCheck
	case VerbGC:
		return PathGC
	case VerbStatus:
		return PathStatus
	}
	return ""
}

// PodRef identifies the Kubernetes pod of a sandbox, from the K8S_POD_* keys of
// CNI_ARGS. All fields are empty when the runtime is not Kubernetes.
type PodRef struct {
	Namespace        string `json:"namespace,omitempty"`
	Name             string `json:"name,omitempty"`
	UID              string `json:"uid,omitempty"`
	InfraContainerID string `json:"infraContainerID,omitempty"`
}

// String formats the pod as namespace/name, or "" when unknown.
func (p PodRef) String() string {
	if p.Namespace == "" && p.Name == "" {
		return ""
	}
	return p.Namespace + "/" + p.Name
}

// Request is the body of ADD, DEL and CHECK.
type Request struct {
	// CNIVersion is the version of the runtime's network configuration. The
	// agent answers in CurrentCNIVersion regardless; it is here for logs and
	// version-dependent behaviour.
	CNIVersion string `json:"cniVersion"`
	// Network is the network name from the configuration.
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	// Netns is CNI_NETNS: an absolute path for ADD and CHECK, possibly empty
	// for DEL (the namespace may already be gone).
	Netns  string `json:"netns,omitempty"`
	IfName string `json:"ifName"`
	// Pod holds the K8S_POD_* keys of CNI_ARGS.
	Pod PodRef `json:"pod,omitzero"`
	// Args holds the other CNI_ARGS keys, unchanged.
	Args map[string]string `json:"args,omitempty"`
	// RuntimeConfig is the configuration's "runtimeConfig" object (capability
	// arguments such as portMappings), if any.
	RuntimeConfig json.RawMessage `json:"runtimeConfig,omitempty"`
	// PrevResult is the configuration's prevResult converted to
	// CurrentCNIVersion: always present for CHECK, optional for DEL and ADD.
	PrevResult *current.Result `json:"prevResult,omitempty"`
	// NetConf is the network configuration as the runtime passed it on stdin
	// (whitespace may differ).
	NetConf json.RawMessage `json:"netConf"`
}

// Validate checks what the agent relies on. The plugin has already checked
// the same; this protects the agent from other clients.
func (r *Request) Validate(v Verb) error {
	if r.ContainerID == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%s request without a container id", v), "set CNI_CONTAINERID")
	}
	if r.IfName == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%s request for container %s without an interface name", v, r.ContainerID), "set CNI_IFNAME")
	}
	if (v == VerbAdd || v == VerbCheck) && r.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%s request for container %s without a network namespace", v, r.ContainerID), "set CNI_NETNS")
	}
	if v == VerbCheck && r.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("CHECK request for container %s without prevResult", r.ContainerID), "CHECK needs the result of the earlier ADD")
	}
	return nil
}

// GCRequest is the body of GC.
type GCRequest struct {
	CNIVersion string `json:"cniVersion"`
	Network    string `json:"network"`
	// ValidAttachments lists the attachments of this network the runtime still
	// uses; everything else of this network may be released. An empty list
	// means none is valid.
	ValidAttachments []types.GCAttachment `json:"validAttachments"`
	NetConf          json.RawMessage      `json:"netConf"`
}

// StatusRequest is the body of STATUS.
type StatusRequest struct {
	CNIVersion string          `json:"cniVersion"`
	Network    string          `json:"network"`
	NetConf    json.RawMessage `json:"netConf"`
}

// VersionInfo is the answer of GET /v1/version.
type VersionInfo struct {
	// APIVersions lists the wire API versions the agent serves.
	APIVersions []string `json:"apiVersions"`
	// Agent is the agent's build version.
	Agent string `json:"agent,omitempty"`
}

// TimeoutHeaderValue formats d for HeaderTimeout, rounded up to a millisecond
// so that a positive budget never becomes zero.
func TimeoutHeaderValue(d time.Duration) string {
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d.String()
}

// ParseTimeoutHeader parses a HeaderTimeout value.
func ParseTimeoutHeader(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parse %s header %q: %w", HeaderTimeout, s, err)
	}
	if d <= 0 || d > MaxTimeout {
		return 0, fmt.Errorf("%s header %q is outside (0, %s]", HeaderTimeout, s, MaxTimeout)
	}
	return d, nil
}

// AgentBudget is how much of the plugin's remaining time the agent gets: a
// little less, so that the agent's own error (saying what it was waiting for)
// reaches the plugin before the plugin's deadline passes.
func AgentBudget(remaining time.Duration) time.Duration {
	margin := min(remaining/10, 2*time.Second)
	return remaining - margin
}

// Package agentapi holds the JSON types of the agent's local operator API
// (served beside /healthz on --health-addr), shared by the agent and
// ovsnetctl so the CLI does not link the agent.
package agentapi

import "time"

// Paths of the operator API.
const (
	PathStatus   = "/v1/status"
	PathFeatures = "/v1/features"
	PathPods     = "/v1/pods"
	PathPorts    = "/v1/ports"
	PathFlows    = "/v1/flows"
	// PathPolicy takes ?pod=<namespace>/<name>.
	PathPolicy = "/v1/policy"
)

// Status is the agent's state.
type Status struct {
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	Bridge Bridge    `json:"bridge"`
	// OpenFlow connection counters.
	OpenFlow OpenFlow `json:"openflow"`
	PodCIDR  string   `json:"podCIDR,omitempty"`
	Gateway  string   `json:"gateway,omitempty"`
	Pods     int      `json:"pods"`
	// FlowRound is the current cookie round of the installed flows.
	FlowRound uint16 `json:"flowRound"`
}

// Bridge is what the last pass of the bridge gate learned.
type Bridge struct {
	Name          string `json:"name"`
	DatapathType  string `json:"datapathType"`
	DatapathID    string `json:"datapathID,omitempty"`
	ConfigSeq     int    `json:"configSeq,omitempty"`
	ControlSocket string `json:"controlSocket,omitempty"`
}

// OpenFlow summarises the controller connection.
type OpenFlow struct {
	Connected   bool   `json:"connected"`
	Sessions    uint64 `json:"sessions"`
	Disconnects uint64 `json:"disconnects"`
	DeadPeer    uint64 `json:"deadPeer"`
	PortStatus  uint64 `json:"portStatus"`
	Errors      uint64 `json:"errors"`
}

// Feature is one datapath feature as ovs-vswitchd reports it.
type Feature struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Pod is one pod interface.
type Pod struct {
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Netns       string `json:"netns"`
	Port        string `json:"port"`
	OFPort      uint32 `json:"ofport"`
	State       string `json:"state"`
	IP          string `json:"ip"`
	MAC         string `json:"mac"`
	FlowsIn     bool   `json:"flowsInstalled"`
	// Lifecycle is the attachment's state: pending, plumbed, ready,
	// deleting.
	Lifecycle string `json:"lifecycle,omitempty"`
	// FlowError is why the last attempt to install or remove the pod's
	// flows failed.
	FlowError string `json:"flowError,omitempty"`
	// Conflict is why the attachment gets no flows (its address is held
	// by another).
	Conflict string     `json:"conflict,omitempty"`
	Created  time.Time  `json:"created"`
	Async    bool       `json:"async,omitempty"`
	Restored bool       `json:"restored,omitempty"`
	Timeline []Phase    `json:"timeline,omitempty"`
	ReadyAt  *time.Time `json:"readyAt,omitempty"`
}

// Phase is one step of a pod's ADD.
type Phase struct {
	Name         string  `json:"name"`
	Milliseconds float64 `json:"ms"`
}

// Port is one OpenFlow port of the bridge.
type Port struct {
	OFPort uint32 `json:"ofport"`
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	State  string `json:"state"`
	Config string `json:"config"`
}

// Flow is one installed flow.
type Flow struct {
	Table     uint8  `json:"table"`
	TableName string `json:"tableName,omitempty"`
	Priority  uint16 `json:"priority"`
	Cookie    string `json:"cookie"`
	// Owner is whom the flow belongs to (base, gateway, pod/<id>/<ifname>);
	// empty for a flow of no owner of the current round (stale, foreign).
	Owner   string `json:"owner,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Text    string `json:"text"`
}

// PodPolicy is what NetworkPolicy does to one local pod.
type PodPolicy struct {
	Pod string `json:"pod"`
	IP  string `json:"ip"`
	// Enforced is false when the agent runs without NetworkPolicy.
	Enforced bool `json:"enforced"`
	// IngressIsolated and EgressIsolated: some policy selects the pod for
	// that direction, so only what a rule allows passes.
	IngressIsolated bool         `json:"ingressIsolated"`
	EgressIsolated  bool         `json:"egressIsolated"`
	Policies        []string     `json:"policies,omitempty"`
	Rules           []PolicyRule `json:"rules"`
	// Isolation holds the pod's drop flows; their packet counts are what
	// the isolation denied.
	Isolation []Flow `json:"isolation"`
}

// PolicyRule is one compiled rule that allows traffic to or from the pod.
type PolicyRule struct {
	ID          string `json:"id"`
	Policy      string `json:"policy"`
	Direction   string `json:"direction"`
	Describe    string `json:"describe"`
	Conjunction uint32 `json:"conjunction"`
	Priority    uint16 `json:"priority"`
	Flows       []Flow `json:"flows"`
}

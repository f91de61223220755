// Package cniapi is the versioned wire API between the ovsnet CNI plugin and
// the ovsnet agent, and the client the plugin uses to call it.
//
// # Transport
//
// HTTP/1.1 with JSON bodies over a root-only unix socket (DefaultSocket).
// HTTP+JSON was chosen over gRPC after measuring both on the target machines:
// dial plus one call took 84 us (p50) against 205 us for gRPC, and the plugin
// binary is 6 MB instead of 10 MB. The plugin runs once per CNI call, so both
// the start-up cost and the size count.
//
// # Endpoints (version v1)
//
//	POST /v1/cni/add     Request       -> 200 with a CNI result (spec 1.1.0)
//	POST /v1/cni/del     Request       -> 200 with {}
//	POST /v1/cni/check   Request       -> 200 with {}
//	POST /v1/cni/gc      GCRequest     -> 200 with {}
//	POST /v1/cni/status  StatusRequest -> 200 with {}
//	GET  /v1/version                   -> 200 with VersionInfo
//
// Every failure is answered with a non-2xx status and a CNI error object
// {"code","msg","details"} (types.Error), which the plugin prints unchanged.
// The version is in the path: an incompatible change gets /v2 and the agent
// serves both during an upgrade.
//
// # Deadlines
//
// The plugin sends the time the agent may spend on a call in the
// Ovsnet-Timeout header (a Go duration such as "118s"). It is relative rather
// than an absolute time so that neither side compares wall clocks. The agent
// bounds its work, including the wait behind earlier operations on the same
// container, by it. The plugin gives the agent slightly less than its own
// budget (AgentBudget) so that the agent's own, more precise error arrives
// before the plugin gives up. When the plugin dies (the runtime kills it at its
// own timeout), the connection closes and the agent's request context is
// cancelled too.
//
// # Error codes
//
// Besides the codes of the CNI specification, ovsnet uses:
//
//	100 CodeAgentInternal  the agent failed without a more specific code
//	                       (an unexpected error or a recovered panic); the
//	                       agent log has the details.
//	101 CodeProtocol       plugin and agent did not understand each other
//	                       (unexpected status or body, unknown endpoint: an
//	                       agent older than the plugin).
//
// An agent that cannot be reached, does not answer in time or answers "not
// ready" yields code 11 (try again later) for ADD, DEL, CHECK and GC; the
// runtime retries. STATUS reports such an agent as code 50 (plugin not
// available).
package cniapi

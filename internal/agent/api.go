package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ovsnet/ovsnet/internal/agentapi"
	"github.com/ovsnet/ovsnet/internal/health"
	of "github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// httpHandler serves health, metrics and the read-only operator API that
// ovsnetctl uses. It listens on --health-addr, loopback by default.
func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", health.Handler(a.status, a.registry))
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.apiStatus()) })
	mux.HandleFunc("GET "+agentapi.PathFeatures, a.apiFeatures)
	mux.HandleFunc("GET "+agentapi.PathPods, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.apiPods()) })
	mux.HandleFunc("GET "+agentapi.PathPorts, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.apiPorts()) })
	mux.HandleFunc("GET "+agentapi.PathFlows, a.apiFlows)
	mux.HandleFunc("GET "+agentapi.PathPolicy, a.apiPolicy)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	http.Error(w, msg, code)
}

func (a *Agent) apiStatus() agentapi.Status {
	st := a.status.Status()
	ofs := a.of.Stats()
	out := agentapi.Status{
		State: st.State.String(), Reason: st.Reason, Since: st.Since,
		Bridge: agentapi.Bridge{Name: a.cfg.Bridge, DatapathType: a.cfg.DatapathType},
		OpenFlow: agentapi.OpenFlow{Connected: ofs.Connected, Sessions: ofs.Sessions, Disconnects: ofs.Disconnects,
			DeadPeer: ofs.DeadPeer, PortStatus: ofs.PortStatus, Errors: ofs.Errors},
		FlowRound: a.flows.Round(),
	}
	if br := a.Bridge(); br != nil {
		out.Bridge.DatapathID, out.Bridge.ConfigSeq, out.Bridge.ControlSocket = br.DatapathID, br.Seq, br.ControlSocket
	}
	if p := a.podService(); p != nil {
		a.mu.Lock()
		out.Gateway = a.network.GatewayIP.String()
		out.PodCIDR = a.network.PodCIDR.String()
		a.mu.Unlock()
		out.Pods = len(p.Attachments())
	}
	return out
}

func (a *Agent) apiFeatures(w http.ResponseWriter, _ *http.Request) {
	br := a.Bridge()
	if br == nil || br.Features == nil {
		apiError(w, http.StatusServiceUnavailable, "datapath features not known yet: "+a.status.Status().Reason)
		return
	}
	var out []agentapi.Feature
	for line := range strings.SplitSeq(br.Features.Text, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok {
			out = append(out, agentapi.Feature{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
		}
	}
	writeJSON(w, out)
}

func (a *Agent) apiPods() []agentapi.Pod {
	svc := a.podService()
	if svc == nil {
		return []agentapi.Pod{}
	}
	out := []agentapi.Pod{}
	for _, p := range svc.Attachments() {
		ap := agentapi.Pod{
			Namespace: p.Pod.Namespace, Name: p.Pod.Name, ContainerID: p.ContainerID, IfName: p.IfName,
			Netns: p.Netns, Port: p.HostIfName, IP: p.IP.String(), MAC: p.MAC.String(), Created: p.Created,
			Async: p.Async, Restored: p.Restored,
			FlowsIn: p.FlowsIn(), Lifecycle: p.State.String(), Conflict: p.Conflict,
		}
		if p.Flows.Err != nil {
			ap.FlowError = p.Flows.Err.Error()
		}
		port, ok, fresh := a.ports.Port(p.HostIfName)
		switch {
		case !ok:
			ap.State = "no port"
		case !fresh:
			ap.State = "unknown (OpenFlow down)"
		default:
			ap.OFPort = port.PortNo
			ap.State = port.State.String()
			if port.Live() {
				ap.State = "LIVE"
			}
		}
		for _, ph := range p.Timeline {
			ap.Timeline = append(ap.Timeline, agentapi.Phase{Name: ph.Name, Milliseconds: float64(ph.Duration) / float64(time.Millisecond)})
		}
		if !p.ReadyAt.IsZero() {
			t := p.ReadyAt
			ap.ReadyAt = &t
		}
		out = append(out, ap)
	}
	slices.SortFunc(out, func(x, y agentapi.Pod) int { return x.Created.Compare(y.Created) })
	return out
}

func (a *Agent) apiPorts() []agentapi.Port {
	out := []agentapi.Port{}
	for _, p := range a.ports.Ports() {
		out = append(out, agentapi.Port{OFPort: p.PortNo, Name: p.Name, MAC: p.MAC().String(),
			State: p.State.String(), Config: p.Config.String()})
	}
	slices.SortFunc(out, func(x, y agentapi.Port) int { return int(x.OFPort) - int(y.OFPort) })
	return out
}

// apiFlows dumps the bridge's flows live (?table=N for one table).
func (a *Agent) apiFlows(w http.ResponseWriter, r *http.Request) {
	table := of.TableAll
	if v := r.URL.Query().Get("table"); v != "" {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n == uint64(of.TableAll) {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("table %q: want a table number 0-254", v))
			return
		}
		table = uint8(n)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	flows, err := a.of.DumpFlows(ctx, of.NewFlowStatsRequest(table, of.Match{}))
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "dump flows: "+err.Error())
		return
	}
	owners := a.flows.CookieOwners()
	out := make([]agentapi.Flow, 0, len(flows))
	for i := range flows {
		f := &flows[i]
		out = append(out, agentapi.Flow{Table: f.Table, TableName: pipeline.TableNames[f.Table], Priority: f.Priority,
			Cookie: fmt.Sprintf("0x%x", f.Cookie), Owner: string(owners[f.Cookie]), Packets: f.PacketCount, Bytes: f.ByteCount, Text: f.FlowString()})
	}
	slices.SortStableFunc(out, func(x, y agentapi.Flow) int {
		if x.Table != y.Table {
			return int(x.Table) - int(y.Table)
		}
		return int(y.Priority) - int(x.Priority)
	})
	writeJSON(w, out)
}

package pods

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/attachments"
	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
	"github.com/ovsnet/ovsnet/internal/pipeline"
)

// Check implements CNI CHECK: the runtime's prevResult must be what this
// attachment is (interfaces, MACs, addresses, routes), the port live, the
// flows on the switch (asked from the switch itself, not from the agent's
// bookkeeping) and the interface as configured. The CNI server calls it in
// the container's turn.
func (s *Service) Check(ctx context.Context, req *cniapi.Request) error {
	k := keyOf(req.ContainerID, req.IfName)
	a, ok := s.store.Get(k)
	if !ok {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("no attachment of container %s interface %s on this node", req.ContainerID, req.IfName),
			"the container was never added here, or it was deleted; run ADD again")
	}
	switch a.State {
	case attachments.Deleting:
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("attachment of container %s interface %s is being deleted", req.ContainerID, req.IfName), "")
	case attachments.Pending:
		return types.NewError(types.ErrTryAgainLater, "attachment is still being added", "")
	}
	if req.PrevResult != nil {
		if problems := compareResult(s.result(a), req.PrevResult); len(problems) > 0 {
			return types.NewError(types.ErrInternal, "prevResult does not describe the attachment: "+strings.Join(problems, "; "),
				"the runtime's cached result is stale; delete and add the container again")
		}
	}
	if a.Conflict != "" {
		return types.NewError(types.ErrInternal, a.Conflict, "delete one of the two pods")
	}
	if a.PlumbErr != nil {
		return cniserver.WithCode(types.ErrInternal, fmt.Errorf("pod interface setup failed: %w", a.PlumbErr), "")
	}
	if _, ok, why := s.cfg.Ports.Check(a.Port, ports.Live); !ok {
		return types.NewError(types.ErrTryAgainLater, "pod port not ready yet: "+why, "")
	}
	if !a.FlowsIn() {
		return types.NewError(types.ErrTryAgainLater, "pod flows not installed yet: "+flowsPending(a), "")
	}
	if err := s.cfg.Flows.Verify(ctx, ownerOf(k)); err != nil {
		if errors.Is(err, pipeline.ErrNoSession) {
			return cniserver.WithCode(types.ErrTryAgainLater, err, "")
		}
		var drift *pipeline.DriftError
		if errors.As(err, &drift) {
			// Verify marked the owner not installed: the next pass puts
			// the flows back.
			s.store.MarkDirty(k)
			return cniserver.WithCode(types.ErrInternal, err, "the agent is reinstalling the pod's flows")
		}
		return cniserver.WithCode(types.ErrTryAgainLater, err, "")
	}
	if err := s.cfg.Plumber.Check(ctx, s.podnetConfig(a)); err != nil {
		return cniserver.WithCode(types.ErrInternal, err, "")
	}
	return nil
}

// compareResult lists every way prev differs from what the attachment is
// (want, the result ADD returned): each of its interfaces with name, MAC
// and sandbox, each address with gateway and interface, each route.
// Entries prev has beyond these (another plugin's in the chain) are fine.
func compareResult(want, prev *current.Result) []string {
	var problems []string
	findIface := func(name string) (int, *current.Interface) {
		for i, ifc := range prev.Interfaces {
			if ifc != nil && ifc.Name == name {
				return i, ifc
			}
		}
		return -1, nil
	}
	for _, w := range want.Interfaces {
		_, got := findIface(w.Name)
		switch {
		case got == nil:
			problems = append(problems, fmt.Sprintf("interface %s missing", w.Name))
			continue
		case w.Mac != "" && got.Mac != "" && !sameMAC(w.Mac, got.Mac):
			problems = append(problems, fmt.Sprintf("interface %s has MAC %s, want %s", w.Name, got.Mac, w.Mac))
		case w.Mac != "" && got.Mac == "" && w.Sandbox != "":
			problems = append(problems, fmt.Sprintf("interface %s has no MAC, want %s", w.Name, w.Mac))
		}
		if got.Sandbox != w.Sandbox {
			problems = append(problems, fmt.Sprintf("interface %s has sandbox %q, want %q", w.Name, got.Sandbox, w.Sandbox))
		}
	}
	for _, w := range want.IPs {
		var got *current.IPConfig
		for _, ip := range prev.IPs {
			if ip != nil && ip.Address.IP.Equal(w.Address.IP) {
				got = ip
			}
		}
		if got == nil {
			problems = append(problems, fmt.Sprintf("address %s missing", w.Address.String()))
			continue
		}
		if got.Address.String() != w.Address.String() {
			problems = append(problems, fmt.Sprintf("address %s, want %s", got.Address.String(), w.Address.String()))
		}
		if !got.Gateway.Equal(w.Gateway) {
			problems = append(problems, fmt.Sprintf("address %s has gateway %v, want %v", w.Address.String(), got.Gateway, w.Gateway))
		}
		podIf := want.Interfaces[*w.Interface].Name
		if got.Interface == nil || *got.Interface < 0 || *got.Interface >= len(prev.Interfaces) ||
			prev.Interfaces[*got.Interface] == nil || prev.Interfaces[*got.Interface].Name != podIf {
			problems = append(problems, fmt.Sprintf("address %s is not on interface %s", w.Address.String(), podIf))
		}
	}
	for _, w := range want.Routes {
		found := false
		for _, r := range prev.Routes {
			if r != nil && r.Dst.String() == w.Dst.String() && r.GW.Equal(w.GW) {
				found = true
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("route %s via %v missing", w.Dst.String(), w.GW))
		}
	}
	return problems
}

func sameMAC(a, b string) bool {
	x, err1 := net.ParseMAC(a)
	y, err2 := net.ParseMAC(b)
	if err1 != nil || err2 != nil {
		return strings.EqualFold(a, b)
	}
	return x.String() == y.String()
}

package ovsdb

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// BridgeSpec is the bridge the agent owns.
type BridgeSpec struct {
	Name string
	// DatapathType is "system" (kernel datapath) or "netdev" (userspace).
	DatapathType string
	// Protocols are the OpenFlow versions the bridge accepts; default
	// OpenFlow13.
	Protocols []string
	// ExternalIDs are merged into the bridge's external_ids; other keys are
	// left alone. ovsnet marks its ownership here.
	ExternalIDs map[string]string
	// OtherConfig is merged into the bridge's other_config.
	OtherConfig map[string]string
	// FailMode is "secure" (the default: no flow but the agent's) or
	// "standalone" (OVS's NORMAL switching, for an uplink bridge).
	FailMode string
}

// EnsureBridge creates the bridge or brings its configuration in line with
// spec, with fail_mode=secure unless spec says otherwise (no NORMAL flow
// while the agent is away), and in the same transaction increments Open_vSwitch.next_cfg. It
// returns the new next_cfg: once Open_vSwitch.cur_cfg reaches it, a live
// ovs-vswitchd has applied this very configuration (ovs-vsctl waits the same
// way). The bump happens on every call, so calling again after ovs-vswitchd
// restarted yields a sequence number only the new process can acknowledge.
func (c *Client) EnsureBridge(ctx context.Context, spec BridgeSpec) (nextCfg int, err error) {
	if spec.Name == "" {
		return 0, fmt.Errorf("ensure bridge: empty bridge name")
	}
	if spec.DatapathType != "system" && spec.DatapathType != "netdev" {
		return 0, fmt.Errorf("ensure bridge %s: datapath type %q: want system or netdev", spec.Name, spec.DatapathType)
	}
	protocols := spec.Protocols
	if len(protocols) == 0 {
		protocols = []string{vswitch.BridgeProtocolsOpenflow13}
	}
	cl, err := c.current()
	if err != nil {
		return 0, fmt.Errorf("ensure bridge %s: %w", spec.Name, err)
	}
	root, haveRoot, err := c.OpenVSwitch()
	if err != nil {
		return 0, err
	}
	br, haveBridge, err := c.Bridge(spec.Name)
	if err != nil {
		return 0, err
	}

	var ops []ovsdb.Operation
	failMode := vswitch.BridgeFailModeSecure
	if spec.FailMode != "" {
		if spec.FailMode != vswitch.BridgeFailModeSecure && spec.FailMode != vswitch.BridgeFailModeStandalone {
			return 0, fmt.Errorf("ensure bridge %s: fail mode %q: want secure or standalone", spec.Name, spec.FailMode)
		}
		failMode = spec.FailMode
	}
	if !haveBridge {
		iface := &vswitch.Interface{UUID: "ovsnet_br_iface", Name: spec.Name, Type: "internal"}
		port := &vswitch.Port{UUID: "ovsnet_br_port", Name: spec.Name, Interfaces: []string{iface.UUID}}
		br = vswitch.Bridge{
			UUID:         "ovsnet_br",
			Name:         spec.Name,
			DatapathType: spec.DatapathType,
			FailMode:     &failMode,
			Protocols:    protocols,
			Ports:        []string{port.UUID},
			ExternalIDs:  maps.Clone(spec.ExternalIDs),
			OtherConfig:  maps.Clone(spec.OtherConfig),
		}
		for _, m := range []model.Model{iface, port, &br} {
			op, err := cl.Create(m)
			if err != nil {
				return 0, fmt.Errorf("ensure bridge %s: build insert: %w", spec.Name, err)
			}
			ops = append(ops, op...)
		}
	} else {
		want := br
		want.DatapathType = spec.DatapathType
		want.FailMode = &failMode
		want.Protocols = protocols
		want.ExternalIDs = merged(br.ExternalIDs, spec.ExternalIDs)
		want.OtherConfig = merged(br.OtherConfig, spec.OtherConfig)
		if !bridgeEqual(br, want) {
			op, err := cl.Where(&want).Update(&want, &want.DatapathType, &want.FailMode,
				&want.Protocols, &want.ExternalIDs, &want.OtherConfig)
			if err != nil {
				return 0, fmt.Errorf("ensure bridge %s: build update: %w", spec.Name, err)
			}
			ops = append(ops, op...)
		}
	}

	if haveRoot {
		mutations := []model.Mutation{{Field: &root.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1}}
		if !haveBridge {
			mutations = append(mutations, model.Mutation{Field: &root.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: []string{br.UUID}})
		}
		op, err := cl.Where(&root).Mutate(&root, mutations...)
		if err != nil {
			return 0, fmt.Errorf("ensure bridge %s: build next_cfg increment: %w", spec.Name, err)
		}
		ops = append(ops, op...)
	} else {
		// A fresh conf.db has no root row until someone initialises it (the
		// distribution's start script runs `ovs-vsctl init`); do it here.
		root = vswitch.OpenvSwitch{UUID: "ovsnet_root", NextCfg: 1, Bridges: []string{br.UUID}}
		op, err := cl.Create(&root)
		if err != nil {
			return 0, fmt.Errorf("ensure bridge %s: build Open_vSwitch insert: %w", spec.Name, err)
		}
		ops = append(ops, op...)
	}
	// Read back the incremented value inside the same transaction.
	ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationSelect, Table: vswitch.OpenvSwitchTable,
		Where: []ovsdb.Condition{}, Columns: []string{"next_cfg"}})

	res, err := c.transact(ctx, cl, ops)
	if err != nil {
		return 0, fmt.Errorf("ensure bridge %s: %w", spec.Name, err)
	}
	sel := res[len(res)-1]
	if len(sel.Rows) != 1 {
		return 0, fmt.Errorf("ensure bridge %s: Open_vSwitch table has %d rows after the transaction, want 1", spec.Name, len(sel.Rows))
	}
	n, ok := sel.Rows[0]["next_cfg"].(float64)
	if !ok {
		// libovsdb decodes JSON integers as float64; anything else means the
		// server answered something unexpected.
		return 0, fmt.Errorf("ensure bridge %s: next_cfg read back as %T, want a number", spec.Name, sel.Rows[0]["next_cfg"])
	}
	return int(n), nil
}

// transact runs ops and turns per-operation failures into one error.
func (c *Client) transact(ctx context.Context, cl client.Client, ops []ovsdb.Operation) ([]ovsdb.OperationResult, error) {
	res, err := cl.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("OVSDB transaction: %w", err)
	}
	if _, err := ovsdb.CheckOperationResults(res, ops); err != nil {
		return nil, fmt.Errorf("OVSDB transaction rejected: %w", err)
	}
	return res, nil
}

// BridgeApplied reports whether a live ovs-vswitchd has applied configuration
// sequence seq (cur_cfg >= seq) and has given the bridge a datapath id. Only
// the pair is a sound sign of readiness: datapath_id alone survives a
// vswitchd restart in conf.db, and cur_cfg alone says nothing of the bridge.
func (c *Client) BridgeApplied(name string, seq int) (ok bool, why string, err error) {
	root, haveRoot, err := c.OpenVSwitch()
	if err != nil {
		return false, "", err
	}
	if !haveRoot {
		return false, "the Open_vSwitch table has no row yet", nil
	}
	if root.CurCfg < seq {
		return false, fmt.Sprintf("ovs-vswitchd has not applied configuration %d yet (cur_cfg %d)", seq, root.CurCfg), nil
	}
	br, ok, err := c.Bridge(name)
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, fmt.Sprintf("bridge %s is not in OVSDB", name), nil
	}
	if br.DatapathID == nil || *br.DatapathID == "" {
		why := fmt.Sprintf("bridge %s has no datapath_id yet", name)
		if br.DatapathType == "system" || br.DatapathType == "" {
			// ovs-vswitchd applied the configuration but could not open the
			// kernel datapath: its log says so, the agent's reason should too.
			why += " although ovs-vswitchd applied the configuration: is the openvswitch kernel module loaded? (modprobe openvswitch, or run with --datapath-type netdev)"
		}
		return false, why, nil
	}
	return true, "", nil
}

func merged(have, add map[string]string) map[string]string {
	if len(add) == 0 {
		return have
	}
	out := maps.Clone(have)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	return out
}

func bridgeEqual(a, b vswitch.Bridge) bool {
	return a.DatapathType == b.DatapathType &&
		(a.FailMode != nil && b.FailMode != nil && *a.FailMode == *b.FailMode) &&
		slices.Equal(sorted(a.Protocols), sorted(b.Protocols)) &&
		maps.Equal(a.ExternalIDs, b.ExternalIDs) &&
		maps.Equal(a.OtherConfig, b.OtherConfig)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

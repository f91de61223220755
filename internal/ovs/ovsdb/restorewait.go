package ovsdb

import (
	"context"
	"fmt"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// FlowRestoreWaitKey is the Open_vSwitch other_config key that makes a
// starting ovs-vswitchd hold off packet processing (and, on the kernel
// datapath, keep the previous process's datapath flows) until whoever
// restores the flows removes it. It applies to every bridge of that
// ovs-vswitchd.
const FlowRestoreWaitKey = "flow-restore-wait"

// FlowRestoreWait reports whether other_config:flow-restore-wait is true in
// the cache, the way ovs-vswitchd reads it (any other value is false).
func (c *Client) FlowRestoreWait() (bool, error) {
	root, ok, err := c.OpenVSwitch()
	if err != nil || !ok {
		return false, err
	}
	return root.OtherConfig[FlowRestoreWaitKey] == "true", nil
}

// ClearFlowRestoreWait removes other_config:flow-restore-wait and, in the
// same transaction, increments next_cfg, returning the new value: once
// cur_cfg reaches it, ovs-vswitchd has read the removal and processes
// packets again. Removing a key that is already gone is not an error, so a
// race with another remover is harmless.
func (c *Client) ClearFlowRestoreWait(ctx context.Context) (nextCfg int, err error) {
	cl, err := c.current()
	if err != nil {
		return 0, fmt.Errorf("clear flow-restore-wait: %w", err)
	}
	root, ok, err := c.OpenVSwitch()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("clear flow-restore-wait: the Open_vSwitch table has no row")
	}
	ops, err := cl.Where(&root).Mutate(&root,
		model.Mutation{Field: &root.OtherConfig, Mutator: ovsdb.MutateOperationDelete, Value: []string{FlowRestoreWaitKey}},
		model.Mutation{Field: &root.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1})
	if err != nil {
		return 0, fmt.Errorf("clear flow-restore-wait: build mutation: %w", err)
	}
	ops = append(ops, ovsdb.Operation{Op: ovsdb.OperationSelect, Table: vswitch.OpenvSwitchTable,
		Where: []ovsdb.Condition{}, Columns: []string{"next_cfg"}})
	res, err := c.transact(ctx, cl, ops)
	if err != nil {
		return 0, fmt.Errorf("clear flow-restore-wait: %w", err)
	}
	sel := res[len(res)-1]
	if len(sel.Rows) != 1 {
		return 0, fmt.Errorf("clear flow-restore-wait: Open_vSwitch table has %d rows after the transaction, want 1", len(sel.Rows))
	}
	n, ok := sel.Rows[0]["next_cfg"].(float64)
	if !ok {
		return 0, fmt.Errorf("clear flow-restore-wait: next_cfg read back as %T, want a number", sel.Rows[0]["next_cfg"])
	}
	return int(n), nil
}

// ConfigApplied reports whether a live ovs-vswitchd has applied
// configuration sequence seq (cur_cfg >= seq).
func (c *Client) ConfigApplied(seq int) (bool, error) {
	root, ok, err := c.OpenVSwitch()
	if err != nil || !ok {
		return false, err
	}
	return root.CurCfg >= seq, nil
}

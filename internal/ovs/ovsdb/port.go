package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// ErrPortExists is returned by AddPort when a port of that name exists.
var ErrPortExists = errors.New("port already exists")

// PortSpec is a port with a single interface of the same name.
type PortSpec struct {
	Name string
	// Type is the interface type: "" for an existing network device (a
	// veth end), "internal" for a device OVS creates.
	Type string
	// ExternalIDs are written on both the Port and the Interface row: who
	// owns the port survives in OVSDB when the agent does not.
	ExternalIDs map[string]string
	// OfportRequest asks for a specific OpenFlow port number (0: any).
	OfportRequest int
	// Options are the interface's options column.
	Options map[string]string
	// MAC sets the MAC of an internal interface ("" lets OVS choose), so
	// the device keeps its address when ovs-vswitchd recreates it.
	MAC string
}

// AddedPort identifies the rows AddPort created.
type AddedPort struct {
	PortUUID      string
	InterfaceUUID string
}

// AddPort adds a port with one interface to bridge in one transaction. The
// interface need not exist yet as a device: OVS then records ofport -1 and
// picks the device up when it appears.
func (c *Client) AddPort(ctx context.Context, bridge string, spec PortSpec) (AddedPort, error) {
	cl, err := c.current()
	if err != nil {
		return AddedPort{}, fmt.Errorf("add port %s: %w", spec.Name, err)
	}
	br, ok, err := c.Bridge(bridge)
	if err != nil {
		return AddedPort{}, err
	}
	if !ok {
		return AddedPort{}, fmt.Errorf("add port %s: bridge %s does not exist", spec.Name, bridge)
	}
	if _, ok, _ := c.Port(spec.Name); ok {
		return AddedPort{}, fmt.Errorf("add port %s to %s: %w", spec.Name, bridge, ErrPortExists)
	}
	iface := &vswitch.Interface{UUID: "ovsnet_iface", Name: spec.Name, Type: spec.Type,
		ExternalIDs: maps.Clone(spec.ExternalIDs), Options: maps.Clone(spec.Options)}
	if spec.MAC != "" {
		mac := spec.MAC
		iface.MAC = &mac
	}
	if spec.OfportRequest > 0 {
		req := spec.OfportRequest
		iface.OfportRequest = &req
	}
	port := &vswitch.Port{UUID: "ovsnet_port", Name: spec.Name, Interfaces: []string{iface.UUID},
		ExternalIDs: maps.Clone(spec.ExternalIDs)}
	var ops []ovsdb.Operation
	for _, m := range []model.Model{iface, port} {
		op, err := cl.Create(m)
		if err != nil {
			return AddedPort{}, fmt.Errorf("add port %s: build insert: %w", spec.Name, err)
		}
		ops = append(ops, op...)
	}
	op, err := cl.Where(&br).Mutate(&br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationInsert, Value: []string{port.UUID}})
	if err != nil {
		return AddedPort{}, fmt.Errorf("add port %s: build bridge update: %w", spec.Name, err)
	}
	ops = append(ops, op...)
	res, err := c.transact(ctx, cl, ops)
	if err != nil {
		if strings.Contains(err.Error(), "constraint violation") {
			return AddedPort{}, fmt.Errorf("add port %s to %s: %w", spec.Name, bridge, ErrPortExists)
		}
		return AddedPort{}, fmt.Errorf("add port %s to %s: %w", spec.Name, bridge, err)
	}
	return AddedPort{InterfaceUUID: res[0].UUID.GoUUID, PortUUID: res[1].UUID.GoUUID}, nil
}

// DeletePorts removes the named ports from bridge in one transaction; names
// that do not exist are ignored, so a repeated delete succeeds. Callers
// deleting many ports should batch them: OVS deletes internal ports slowly
// and hundreds at once stall ovs-vswitchd.
func (c *Client) DeletePorts(ctx context.Context, bridge string, names ...string) error {
	cl, err := c.current()
	if err != nil {
		return fmt.Errorf("delete ports %v: %w", names, err)
	}
	br, ok, err := c.Bridge(bridge)
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	var uuids []string
	for _, n := range names {
		p, ok, err := c.Port(n)
		if err != nil {
			return err
		}
		if ok {
			uuids = append(uuids, p.UUID)
		}
	}
	if len(uuids) == 0 {
		return nil
	}
	// Port and Interface are not root tables: once the bridge stops
	// referencing them, OVSDB removes the rows.
	op, err := cl.Where(&br).Mutate(&br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationDelete, Value: uuids})
	if err != nil {
		return fmt.Errorf("delete ports %v: build bridge update: %w", names, err)
	}
	if _, err := c.transact(ctx, cl, op); err != nil {
		return fmt.Errorf("delete ports %v from %s: %w", names, bridge, err)
	}
	return nil
}

// SetInterfaceType changes an interface's type, as the asynchronous
// interface model does once the device exists.
func (c *Client) SetInterfaceType(ctx context.Context, name, typ string) error {
	cl, err := c.current()
	if err != nil {
		return err
	}
	iface, ok, err := c.Interface(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("set type of interface %s: no such interface", name)
	}
	iface.Type = typ
	op, err := cl.Where(&iface).Update(&iface, &iface.Type)
	if err != nil {
		return fmt.Errorf("set type of interface %s: %w", name, err)
	}
	_, err = c.transact(ctx, cl, op)
	return err
}

// SetOpenVSwitchOtherConfig merges keys into Open_vSwitch:other_config (for
// example userspace-tso-enable) without touching the others.
func (c *Client) SetOpenVSwitchOtherConfig(ctx context.Context, kv map[string]string) error {
	cl, err := c.current()
	if err != nil {
		return err
	}
	root, ok, err := c.OpenVSwitch()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("set Open_vSwitch other_config: the Open_vSwitch table has no row yet")
	}
	want := merged(root.OtherConfig, kv)
	if maps.Equal(want, root.OtherConfig) {
		return nil
	}
	root.OtherConfig = want
	op, err := cl.Where(&root).Update(&root, &root.OtherConfig)
	if err != nil {
		return fmt.Errorf("set Open_vSwitch other_config: %w", err)
	}
	_, err = c.transact(ctx, cl, op)
	return err
}

// Ofport returns the OpenFlow port number OVS assigned to the interface
// with the given row UUID: >0 when assigned, -1 when OVS could not open the
// device (yet), 0 when not known yet.
func (c *Client) Ofport(ifaceUUID string) (int, error) {
	iface, ok, err := c.InterfaceByUUID(ifaceUUID)
	if err != nil || !ok || iface.Ofport == nil {
		return 0, err
	}
	return *iface.Ofport, nil
}

// Transact runs raw OVSDB operations (benchmarks compare other clients'
// methods with this one's) and fails on any per-operation error.
func (c *Client) Transact(ctx context.Context, ops ...ovsdb.Operation) ([]ovsdb.OperationResult, error) {
	cl, err := c.current()
	if err != nil {
		return nil, err
	}
	return c.transact(ctx, cl, ops)
}

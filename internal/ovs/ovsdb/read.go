package ovsdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/ovn-kubernetes/libovsdb/client"

	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// Reads come from the monitored cache: they never touch the network, so
// conditions built on them are cheap to re-evaluate on every change.

// OpenVSwitch returns the database's root row; ok is false while it does not
// exist (a freshly created conf.db has none until someone initialises it).
func (c *Client) OpenVSwitch() (row vswitch.OpenvSwitch, ok bool, err error) {
	cl, err := c.current()
	if err != nil {
		return row, false, err
	}
	var rows []vswitch.OpenvSwitch
	if err := cl.List(context.Background(), &rows); err != nil {
		return row, false, fmt.Errorf("read Open_vSwitch table from cache: %w", err)
	}
	if len(rows) == 0 {
		return row, false, nil
	}
	return rows[0], true, nil
}

// Bridge returns the named bridge from the cache.
func (c *Client) Bridge(name string) (vswitch.Bridge, bool, error) {
	b := vswitch.Bridge{Name: name}
	ok, err := c.get(&b)
	return b, ok, err
}

// Port returns the named port from the cache.
func (c *Client) Port(name string) (vswitch.Port, bool, error) {
	p := vswitch.Port{Name: name}
	ok, err := c.get(&p)
	return p, ok, err
}

// Interface returns the named interface from the cache.
func (c *Client) Interface(name string) (vswitch.Interface, bool, error) {
	i := vswitch.Interface{Name: name}
	ok, err := c.get(&i)
	return i, ok, err
}

// InterfaceByUUID returns an interface by its row UUID.
func (c *Client) InterfaceByUUID(uuid string) (vswitch.Interface, bool, error) {
	i := vswitch.Interface{UUID: uuid}
	ok, err := c.get(&i)
	return i, ok, err
}

// Interfaces returns every interface in the cache for which keep is true
// (all of them when keep is nil).
func (c *Client) Interfaces(keep func(*vswitch.Interface) bool) ([]vswitch.Interface, error) {
	cl, err := c.current()
	if err != nil {
		return nil, err
	}
	var rows []vswitch.Interface
	if keep == nil {
		err = cl.List(context.Background(), &rows)
	} else {
		err = cl.WhereCache(keep).List(context.Background(), &rows)
	}
	if err != nil {
		return nil, fmt.Errorf("read Interface table from cache: %w", err)
	}
	return rows, nil
}

// Ports returns every port in the cache for which keep is true (all of them
// when keep is nil).
func (c *Client) Ports(keep func(*vswitch.Port) bool) ([]vswitch.Port, error) {
	cl, err := c.current()
	if err != nil {
		return nil, err
	}
	var rows []vswitch.Port
	if keep == nil {
		err = cl.List(context.Background(), &rows)
	} else {
		err = cl.WhereCache(keep).List(context.Background(), &rows)
	}
	if err != nil {
		return nil, fmt.Errorf("read Port table from cache: %w", err)
	}
	return rows, nil
}

func (c *Client) get(m any) (bool, error) {
	cl, err := c.current()
	if err != nil {
		return false, err
	}
	if err := cl.Get(context.Background(), m); err != nil {
		if errors.Is(err, client.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("read cache: %w", err)
	}
	return true, nil
}

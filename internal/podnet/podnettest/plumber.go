// Package podnettest has a fake of podnet.Plumber for tests of what uses
// it: it records which pod interfaces exist, and lets a test hold or fail a
// setup at a chosen moment.
package podnettest

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"

	"github.com/ovsnet/ovsnet/internal/podnet"
)

// Plumber is an in-memory podnet.Plumber. An interface exists from a
// successful Setup until its Teardown; Check passes while it exists with the
// same config. Safe for concurrent use.
type Plumber struct {
	mu    sync.Mutex
	ifs   map[string]podnet.Config // by host interface name
	setup int
	// BeforeSetup, if set, runs at the start of every Setup, outside the
	// fake's lock; a non-nil error fails the Setup.
	BeforeSetup func(ctx context.Context, cfg podnet.Config) error
	// Foreign, if set, says that the pod interface of a netns/ifname is not
	// ovsnet's (another plugin's): Teardown leaves it.
	Foreign func(netns, ifName string) bool
}

var _ podnet.Plumber = (*Plumber)(nil)

// New returns a plumber with no interfaces.
func New() *Plumber { return &Plumber{ifs: map[string]podnet.Config{}} }

// Setup implements podnet.Plumber.
func (p *Plumber) Setup(ctx context.Context, cfg podnet.Config) (*podnet.Result, error) {
	p.mu.Lock()
	hook := p.BeforeSetup
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fake setup of %s: %w", cfg.HostIfName, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ifs[cfg.HostIfName] = cfg
	p.setup++
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, byte(p.setup)}
	return &podnet.Result{HostIfName: cfg.HostIfName, HostMAC: mac, PodIfName: cfg.IfName, PodMAC: cfg.MAC,
		Sandbox: cfg.NetnsPath, MTU: cfg.MTU, Address: cfg.Address, Gateway: cfg.Gateway}, nil
}

// Check implements podnet.Plumber.
func (p *Plumber) Check(_ context.Context, cfg podnet.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	got, ok := p.ifs[cfg.HostIfName]
	if !ok {
		return &podnet.CheckError{Problems: []string{"host interface " + cfg.HostIfName + " does not exist"}}
	}
	if got.NetnsPath != cfg.NetnsPath || got.IfName != cfg.IfName || got.Address != cfg.Address {
		return &podnet.CheckError{Problems: []string{fmt.Sprintf("pod interface is %s %s %s, want %s %s %s",
			got.NetnsPath, got.IfName, got.Address, cfg.NetnsPath, cfg.IfName, cfg.Address)}}
	}
	return nil
}

// Teardown implements podnet.Plumber.
func (p *Plumber) Teardown(_ context.Context, netns, ifName, hostIfName string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Foreign != nil && p.Foreign(netns, ifName) {
		return nil
	}
	delete(p.ifs, hostIfName)
	return nil
}

// Exists reports whether the host interface exists.
func (p *Plumber) Exists(hostIfName string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ifs[hostIfName]
	return ok
}

// Interfaces lists the host interfaces that exist, sorted.
func (p *Plumber) Interfaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.ifs))
	for n := range p.ifs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SetBeforeSetup replaces the BeforeSetup hook under the fake's lock.
func (p *Plumber) SetBeforeSetup(f func(ctx context.Context, cfg podnet.Config) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.BeforeSetup = f
}

package cniserver

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// Fake is a Handler for tests. Each verb calls its Func field when set;
// otherwise ADD answers a result with one interface and an address from
// 10.244.0.0/24 (a new one for each call), and the other verbs succeed. Set
// the Func fields before serving; every call is recorded.
type Fake struct {
	AddFunc    func(ctx context.Context, req *cniapi.Request) (*current.Result, error)
	DelFunc    func(ctx context.Context, req *cniapi.Request) error
	CheckFunc  func(ctx context.Context, req *cniapi.Request) error
	GCFunc     func(ctx context.Context, req *cniapi.GCRequest) error
	StatusFunc func(ctx context.Context) error

	mu    sync.Mutex
	calls []FakeCall
	next  int
}

// FakeCall records one call to a Fake.
type FakeCall struct {
	Verb     cniapi.Verb
	Request  *cniapi.Request   // ADD, DEL, CHECK
	GC       *cniapi.GCRequest // GC
	Deadline time.Time         // zero when the context had none
}

var _ Handler = (*Fake)(nil)

// Calls returns a copy of the calls so far, in the order they started.
func (f *Fake) Calls() []FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FakeCall(nil), f.calls...)
}

func (f *Fake) record(ctx context.Context, c FakeCall) int {
	c.Deadline, _ = ctx.Deadline()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	f.next++
	return f.next
}

// Add implements Handler.
func (f *Fake) Add(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
	n := f.record(ctx, FakeCall{Verb: cniapi.VerbAdd, Request: req})
	if f.AddFunc != nil {
		return f.AddFunc(ctx, req)
	}
	return FakeResult(req.IfName, req.Netns, n), nil
}

// Del implements Handler.
func (f *Fake) Del(ctx context.Context, req *cniapi.Request) error {
	f.record(ctx, FakeCall{Verb: cniapi.VerbDel, Request: req})
	if f.DelFunc != nil {
		return f.DelFunc(ctx, req)
	}
	return nil
}

// Check implements Handler.
func (f *Fake) Check(ctx context.Context, req *cniapi.Request) error {
	f.record(ctx, FakeCall{Verb: cniapi.VerbCheck, Request: req})
	if f.CheckFunc != nil {
		return f.CheckFunc(ctx, req)
	}
	return nil
}

// GC implements Handler.
func (f *Fake) GC(ctx context.Context, req *cniapi.GCRequest) error {
	f.record(ctx, FakeCall{Verb: cniapi.VerbGC, GC: req})
	if f.GCFunc != nil {
		return f.GCFunc(ctx, req)
	}
	return nil
}

// Status implements Handler.
func (f *Fake) Status(ctx context.Context) error {
	f.record(ctx, FakeCall{Verb: cniapi.VerbStatus})
	if f.StatusFunc != nil {
		return f.StatusFunc(ctx)
	}
	return nil
}

// FakeResult builds the result Fake.Add answers: interface ifName in sandbox
// with address 10.244.0.(n%250+2)/24, gateway 10.244.0.1 and a default route.
func FakeResult(ifName, sandbox string, n int) *current.Result {
	ip := net.IPv4(10, 244, 0, byte(n%250+2)).To4()
	gw := net.IPv4(10, 244, 0, 1).To4()
	return &current.Result{
		CNIVersion: cniapi.CurrentCNIVersion,
		Interfaces: []*current.Interface{{
			Name:    ifName,
			Mac:     fmt.Sprintf("02:00:0a:f4:00:%02x", ip[3]),
			Sandbox: sandbox,
		}},
		IPs: []*current.IPConfig{{
			Interface: current.Int(0),
			Address:   net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)},
			Gateway:   gw,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw}},
	}
}

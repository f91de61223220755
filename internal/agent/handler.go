package agent

import (
	"context"
	"sync"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/pods"
)

// lazyHandler serves CNI before the pod network exists: every verb answers
// "not ready" (code 11; STATUS: 50) until set is called.
type lazyHandler struct {
	mu sync.RWMutex
	h  *pods.Service
}

func (l *lazyHandler) set(h *pods.Service) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h = h
}

func (l *lazyHandler) get() (*pods.Service, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return nil, cniserver.NotReady("the node's pod CIDR is not known yet")
	}
	return l.h, nil
}

func (l *lazyHandler) Add(ctx context.Context, req *cniapi.Request) (*current.Result, error) {
	h, err := l.get()
	if err != nil {
		return nil, err
	}
	return h.Add(ctx, req)
}

func (l *lazyHandler) Del(ctx context.Context, req *cniapi.Request) error {
	h, err := l.get()
	if err != nil {
		return err
	}
	return h.Del(ctx, req)
}

func (l *lazyHandler) Check(ctx context.Context, req *cniapi.Request) error {
	h, err := l.get()
	if err != nil {
		return err
	}
	return h.Check(ctx, req)
}

func (l *lazyHandler) GC(ctx context.Context, req *cniapi.GCRequest) error {
	h, err := l.get()
	if err != nil {
		return err
	}
	return h.GC(ctx, req)
}

func (l *lazyHandler) Status(ctx context.Context) error {
	h, err := l.get()
	if err != nil {
		return err
	}
	return h.Status(ctx)
}

package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ovsnet/ovsnet/internal/cniapi"
	"github.com/ovsnet/ovsnet/internal/cniserver"
	"github.com/ovsnet/ovsnet/internal/pods"
)

// lazyHandler serves CNI before the pod network exists: every verb answers
// "not ready" (code 11; STATUS: 50) until set is called. It also counts and
// times every request for /metrics.
type lazyHandler struct {
	mu      sync.RWMutex
	h       *pods.Service
	metrics *metrics
}

// observe records one request's outcome and duration.
func (l *lazyHandler) observe(verb cniapi.Verb, start time.Time, err error) {
	if l.metrics == nil {
		return
	}
	result := "ok"
	var te *types.Error
	switch {
	case err == nil:
	case errors.As(err, &te) && te.Code == types.ErrTryAgainLater:
		result = "try-again-later"
	default:
		result = "error"
	}
	l.metrics.cniRequests.WithLabelValues(string(verb), result).Inc()
	l.metrics.cniSeconds.WithLabelValues(string(verb)).Observe(time.Since(start).Seconds())
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

func (l *lazyHandler) Add(ctx context.Context, req *cniapi.Request) (res *current.Result, err error) {
	defer func(start time.Time) { l.observe(cniapi.VerbAdd, start, err) }(time.Now())
	h, err := l.get()
	if err != nil {
		return nil, err
	}
	return h.Add(ctx, req)
}

func (l *lazyHandler) Del(ctx context.Context, req *cniapi.Request) (err error) {
	defer func(start time.Time) { l.observe(cniapi.VerbDel, start, err) }(time.Now())
	h, err := l.get()
	if err != nil {
		return err
	}
	return h.Del(ctx, req)
}

func (l *lazyHandler) Check(ctx context.Context, req *cniapi.Request) (err error) {
	defer func(start time.Time) { l.observe(cniapi.VerbCheck, start, err) }(time.Now())
	h, err := l.get()
	if err != nil {
		return err
	}
	return h.Check(ctx, req)
}

func (l *lazyHandler) GC(ctx context.Context, req *cniapi.GCRequest) (err error) {
	defer func(start time.Time) { l.observe(cniapi.VerbGC, start, err) }(time.Now())
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

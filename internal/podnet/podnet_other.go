//go:build !linux

package podnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
)

// errUnsupported is what every operation returns off Linux, where pods get
// their interface from the OS rather than from a veth pair.
func errUnsupported() error {
	return fmt.Errorf("pod plumbing is only implemented on Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// New returns a Plumber whose operations all fail with an error wrapping
// errors.ErrUnsupported.
func New(log *slog.Logger, opts ...Option) Plumber {
	// The arguments are accepted so callers build on every OS unchanged.
	_, _ = log, opts
	return unsupported{}
}

type unsupported struct{}

// Setup still validates cfg, so a bad config reads the same on every OS.
func (unsupported) Setup(_ context.Context, cfg Config) (*Result, error) {
	if _, err := cfg.normalize(); err != nil {
		return nil, err
	}
	return nil, errUnsupported()
}

func (unsupported) Check(_ context.Context, cfg Config) error {
	if _, err := cfg.normalize(); err != nil {
		return err
	}
	return errUnsupported()
}

func (unsupported) Teardown(context.Context, string, string, string) error { return errUnsupported() }

//go:build !linux

package podnet

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestUnsupportedOffLinux(t *testing.T) {
	p := New(nil)
	ctx := context.Background()
	if _, err := p.Setup(ctx, validConfig()); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "only implemented on Linux") {
		t.Errorf("Setup = %v, want an unsupported error", err)
	}
	if err := p.Check(ctx, validConfig()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Check = %v, want an unsupported error", err)
	}
	if err := p.Teardown(ctx, "/x", "eth0", "h"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Teardown = %v, want an unsupported error", err)
	}
	bad := validConfig()
	bad.IfName = ""
	if _, err := p.Setup(ctx, bad); err == nil || errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Setup(invalid config) = %v, want the config error first", err)
	}
}

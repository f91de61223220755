package framework

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestEventuallyRetriesUntilTheCheckPasses(t *testing.T) {
	calls := 0
	err := Eventually(t.Context(), "third time", func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls)
	}
}

func TestEventuallyReportsTheLastFailureWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Eventually(ctx, "port gone", func(context.Context) error { return errors.New("port ovsn1 still there") })
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "port gone") || !strings.Contains(err.Error(), "ovsn1 still there") {
		t.Fatalf("error %q: want the wait, the cause and the last check", err)
	}
}

func TestLoadClusterNamesMissingVariables(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("E2E_KUBECTL", "")
	if _, err := LoadCluster(); err == nil || !strings.Contains(err.Error(), "KUBECONFIG") || !strings.Contains(err.Error(), "e2e/run.sh") {
		t.Fatalf("error %v: want the missing variables and how to get them", err)
	}
}

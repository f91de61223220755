//go:build e2e

// Package suite holds ovsnet's end-to-end tests. They drive a real
// single-node Kubernetes cluster whose only CNI is ovsnet, with the agent
// and OVS running on the node as the DaemonSet would run them. Run them with
// `make e2e` (or e2e/run.sh up, then e2e/run.sh test); the build tag keeps
// `go test ./...` from running them.
package suite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/e2e/framework"
	"github.com/ovsnet/ovsnet/internal/testenv"
)

// env loads the cluster and the node's ovsnet; the suite only makes sense
// against a cluster started by e2e/run.sh, so a missing one is a failure.
func env(t *testing.T) (*framework.Cluster, *framework.Ovsnet) {
	t.Helper()
	testenv.RequireRoot(t)
	c, err := framework.LoadCluster()
	if err != nil {
		t.Fatal(err)
	}
	if c.CNI != "custom" {
		t.Fatalf("the cluster in %s runs the %s CNI, not ovsnet: start it with e2e/run.sh up", c.Lab, c.CNI)
	}
	o, err := framework.LoadOvsnet()
	if err != nil {
		t.Fatal(err)
	}
	return c, o
}

// deadline is a test's context: every wait in a test ends with it.
func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace for one test and deletes it (waiting for
// its pods to be gone) when the test ends, failed or not.
func namespace(t *testing.T, ctx context.Context, c *framework.Cluster, prefix string) string {
	t.Helper()
	ns, err := c.CreateNamespace(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context is done when cleanups run: a fresh deadline.
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.DeleteNamespace(cctx, ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

//go:build e2e

// Package suite holds ovsnet's end-to-end tests. They drive a real
// Kubernetes cluster whose only CNI is ovsnet: one node that is this
// machine, with the agent and OVS running on it as the DaemonSet would run
// them (make e2e), or several nodes in namespaces of their own with ovsnet
// installed as its DaemonSet (make e2e-multinode), where the tests of
// multinode_test.go run. Run them with `make e2e` (or e2e/run.sh up, then
// e2e/run.sh test); the build tag keeps `go test ./...` from running them.
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

// env loads the cluster and the node's ovsnet for the tests that need the
// node to be this machine and the agent a host process (the host layout,
// make e2e); the suite only makes sense against a cluster started by
// e2e/run.sh, so a missing one is a failure.
func env(t *testing.T) (*framework.Cluster, *framework.Ovsnet) {
	t.Helper()
	c := ovsnetCluster(t)
	if c.Layout != framework.LayoutHost || framework.OvsnetDeploy() != framework.DeployHost {
		t.Skipf("needs the one node to be this machine and ovsnet-agent a host process (E2E_NODES=1, make e2e); "+
			"the cluster in %s has its nodes in namespaces of their own and ovsnet as the DaemonSet, which TestMultiNode* cover", c.Lab)
	}
	o, err := framework.LoadOvsnet()
	if err != nil {
		t.Fatal(err)
	}
	return c, o
}

// ovsnetCluster loads a cluster whose CNI is ovsnet, in any layout.
func ovsnetCluster(t *testing.T) *framework.Cluster {
	t.Helper()
	testenv.RequireRoot(t)
	c, err := framework.LoadCluster()
	if err != nil {
		t.Fatal(err)
	}
	if c.CNI != "custom" {
		t.Fatalf("the cluster in %s runs the %s CNI, not ovsnet: start it with e2e/run.sh up", c.Lab, c.CNI)
	}
	return c
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

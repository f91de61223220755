//go:build e2e

package suite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shipped manifests are accepted by a real API server, admission and
// validation included, without creating anything.
func TestManifestsServerDryRun(t *testing.T) {
	c := ovsnetCluster(t)
	ctx := deadline(t, time.Minute)
	manifest := filepath.Join(os.Getenv("OVSNET_REPO"), "deploy", "ovsnet.yaml")
	if _, err := os.Stat(manifest); err != nil {
		t.Fatalf("OVSNET_REPO must name the repository (e2e/run.sh sets it): %v", err)
	}
	out, err := c.Kubectl(ctx, nil, "apply", "--dry-run=server", "-f", manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{
		"serviceaccount/ovsnet-agent", "clusterrole.rbac.authorization.k8s.io/ovsnet-agent",
		"clusterrolebinding.rbac.authorization.k8s.io/ovsnet-agent", "configmap/ovsnet-config",
		"daemonset.apps/ovsnet-agent",
	} {
		if !strings.Contains(out, obj) {
			t.Errorf("dry run did not report %s:\n%s", obj, out)
		}
	}
	if n := strings.Count(out, "(server dry run)"); n != 5 {
		t.Errorf("want 5 objects checked by the server, got %d:\n%s", n, out)
	}
}

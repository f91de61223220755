package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runOut(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(append([]string{"-f", "../../ovsnet.yaml"}, args...), &out); err != nil {
		t.Fatalf("podspec %v: %v", args, err)
	}
	return out.String()
}

func TestReadsTheShippedDaemonSet(t *testing.T) {
	cmd := strings.Split(strings.TrimSuffix(runOut(t, "-container", "install-cni", "-command"), "\x00"), "\x00")
	if len(cmd) != 3 || cmd[0] != "sh" || !strings.Contains(cmd[2], "/host/opt/cni/bin/portmap") {
		t.Errorf("install-cni command %q: want sh -ec with a script that installs portmap", cmd)
	}
	mounts := runOut(t, "-container", "ovs", "-mounts")
	for _, want := range []string{
		"/run/openvswitch\thostPath\t/run/openvswitch\trw\n",
		"/lib/modules\thostPath\t/lib/modules\tro\n",
	} {
		if !strings.Contains(mounts, want) {
			t.Errorf("ovs mounts %q lack %q", mounts, want)
		}
	}
	if m := runOut(t, "-container", "agent", "-mounts"); !strings.Contains(m, "/etc/ovsnet\tconfigMap\tovsnet-config\t") {
		t.Errorf("agent mounts %q lack the ConfigMap", m)
	}
	// NODE_NAME comes from the downward API: not a literal.
	if env := runOut(t, "-container", "agent", "-env"); strings.Contains(env, "NODE_NAME") {
		t.Errorf("agent env %q has NODE_NAME", env)
	}
}

func TestWritesTheConfigMap(t *testing.T) {
	dir := t.TempDir()
	runOut(t, "-configmap", "ovsnet-config", "-write-dir", dir)
	for _, key := range []string{"agent.yaml", "10-ovsnet.conflist"} {
		if b, err := os.ReadFile(filepath.Join(dir, key)); err != nil || len(b) == 0 {
			t.Errorf("key %s not written: %v", key, err)
		}
	}
}

func TestRejectsUnknownContainer(t *testing.T) {
	if err := run([]string{"-f", "../../ovsnet.yaml", "-container", "nope", "-command"}, &bytes.Buffer{}); err == nil {
		t.Fatal("podspec accepted a container the manifest does not have")
	}
}

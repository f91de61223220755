package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const sample = `# leading comment
apiVersion: v1
kind: ServiceAccount
metadata:
  name: agent
---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  agent.yaml: |
    bridge: br-x
    mtu: 1400
    async-interfaces: false
  net.conflist: |
    {"cniVersion": "1.1.0", "name": "n", "plugins": [
      {"type": "ovsnet", "agentSocket": "/run/ovsnet/cni.sock"},
      {"type": "portmap", "capabilities": {"portMappings": true}}
    ]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
`

func TestParseSkipsCommentOnlyDocuments(t *testing.T) {
	docs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range docs {
		kinds = append(kinds, d.Kind)
	}
	if got := strings.Join(kinds, ","); got != "ServiceAccount,ConfigMap,DaemonSet" {
		t.Fatalf("kinds %s", got)
	}
}

func TestParseRejectsDocumentWithoutKind(t *testing.T) {
	if _, err := Parse([]byte("apiVersion: v1\nmetadata: {name: x}\n")); err == nil {
		t.Fatal("want an error for a document without kind")
	}
}

func TestSelectKindsKeepsTextAndOrder(t *testing.T) {
	docs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	out, err := SelectKinds(docs, "ConfigMap, ServiceAccount")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "---\n# leading comment\n") || strings.Contains(out, "DaemonSet") {
		t.Fatalf("unexpected selection:\n%s", out)
	}
	if strings.Index(out, "kind: ServiceAccount") > strings.Index(out, "kind: ConfigMap") {
		t.Fatalf("file order not kept:\n%s", out)
	}
	if _, err := SelectKinds(docs, "ConfigMap,Deployment"); err == nil {
		t.Fatal("want an error for a kind that is not in the manifest")
	}
}

func TestConfigMapKeyAndField(t *testing.T) {
	docs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigMapKey(docs, "cfg", "agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"bridge": "br-x", "mtu": "1400", "async-interfaces": "false", "absent": ""} {
		got, err := Field(cfg, field)
		if err != nil || got != want {
			t.Errorf("Field(%s) = %q, %v; want %q", field, got, err, want)
		}
	}
	if _, err := ConfigMapKey(docs, "cfg", "nope"); err == nil {
		t.Error("want an error for a missing key")
	}
	if _, err := ConfigMapKey(docs, "other", "agent.yaml"); err == nil {
		t.Error("want an error for a missing ConfigMap")
	}
}

func TestSetAgentSocketOnlyTouchesOvsnetPlugins(t *testing.T) {
	docs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	list, err := ConfigMapKey(docs, "cfg", "net.conflist")
	if err != nil {
		t.Fatal(err)
	}
	out, err := SetAgentSocket(list, "/lab/run/cni.sock", "")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.CNIVersion != "1.1.0" || len(got.Plugins) != 2 {
		t.Fatalf("conflist changed beyond the socket: %s", out)
	}
	if got.Plugins[0]["agentSocket"] != "/lab/run/cni.sock" {
		t.Errorf("ovsnet plugin socket %v", got.Plugins[0]["agentSocket"])
	}
	if _, ok := got.Plugins[1]["agentSocket"]; ok {
		t.Error("portmap plugin got an agentSocket")
	}
	out, err = SetAgentSocket(list, "/lab/run/cni.sock", "1.0.0")
	if err != nil || !strings.Contains(out, `"cniVersion": "1.0.0"`) {
		t.Errorf("cniVersion not set: %v\n%s", err, out)
	}
	if _, err := SetAgentSocket(`{"plugins": [{"type": "bridge"}]}`, "/x", ""); err == nil {
		t.Error("want an error for a conflist without ovsnet")
	}
}

// The e2e cluster depends on these parts of the shipped manifest.
func TestShippedManifest(t *testing.T) {
	data, err := os.ReadFile("../../../deploy/ovsnet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SelectKinds(docs, "ServiceAccount,ClusterRole,ClusterRoleBinding,ConfigMap,DaemonSet"); err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigMapKey(docs, "ovsnet-config", "agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if addr, err := Field(cfg, "health-addr"); err != nil || addr == "" {
		t.Errorf("agent.yaml health-addr %q, %v", addr, err)
	}
	list, err := ConfigMapKey(docs, "ovsnet-config", "10-ovsnet.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetAgentSocket(list, "/x/cni.sock", ""); err != nil {
		t.Error(err)
	}
}

func TestRenderSetsAgentFieldsAndKeepsTheRest(t *testing.T) {
	docs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(docs, "cfg", "agent.yaml", map[string]string{"bridge": "br-y", "async-interfaces": "true"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse([]byte(out))
	if err != nil {
		t.Fatalf("rendered manifest does not parse: %v\n%s", err, out)
	}
	if len(again) != 3 || !strings.Contains(again[0].Text, "# leading comment") {
		t.Fatalf("documents or their text changed:\n%s", out)
	}
	cfg, err := ConfigMapKey(again, "cfg", "agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"bridge": "br-y", "async-interfaces": "true", "mtu": "1400"} {
		if got, err := Field(cfg, field); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", field, got, err, want)
		}
	}
	if _, err := ConfigMapKey(again, "cfg", "net.conflist"); err != nil {
		t.Errorf("the conflist key went: %v", err)
	}
}

func TestRenderRefusesUnknownField(t *testing.T) {
	docs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(docs, "cfg", "agent.yaml", map[string]string{"datapath-typo": "netdev"}); err == nil {
		t.Fatal("want an error for a field agent.yaml does not have")
	}
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Doc is one document of a manifest: its text as written (comments kept, so
// what is applied is what the file says) and the fields this tool reads.
type Doc struct {
	Text string
	Kind string
	Name string
	Data map[string]string
}

type header struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
}

// Parse splits a multi-document manifest and decodes each document's kind,
// name and (for ConfigMaps) data. Empty documents are dropped.
func Parse(manifest []byte) ([]Doc, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var docs []Doc
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var h header
		if err := yaml.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if h.Kind == "" {
			if len(bytes.TrimSpace(stripComments(raw))) == 0 {
				continue
			}
			return nil, fmt.Errorf("document %d has no kind", i)
		}
		docs = append(docs, Doc{Text: string(raw), Kind: h.Kind, Name: h.Metadata.Name, Data: h.Data})
	}
	if len(docs) == 0 {
		return nil, errors.New("no documents")
	}
	return docs, nil
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// SelectKinds returns the documents of the given kinds (comma-separated), in
// file order, as a manifest. Every kind asked for must be there: a renamed
// kind must not silently drop an object from what the cluster gets.
func SelectKinds(docs []Doc, kinds string) (string, error) {
	want := map[string]bool{}
	for k := range strings.SplitSeq(kinds, ",") {
		if k = strings.TrimSpace(k); k != "" {
			want[k] = false
		}
	}
	var b strings.Builder
	for _, d := range docs {
		if _, ok := want[d.Kind]; !ok {
			continue
		}
		want[d.Kind] = true
		b.WriteString("---\n")
		b.WriteString(strings.TrimRight(d.Text, "\n"))
		b.WriteString("\n")
	}
	for k, found := range want {
		if !found {
			return "", fmt.Errorf("no document of kind %s", k)
		}
	}
	return b.String(), nil
}

// ConfigMapKey returns one data key of the named ConfigMap.
func ConfigMapKey(docs []Doc, name, key string) (string, error) {
	for _, d := range docs {
		if d.Kind != "ConfigMap" || d.Name != name {
			continue
		}
		v, ok := d.Data[key]
		if !ok {
			return "", fmt.Errorf("ConfigMap %s has no key %q", name, key)
		}
		return v, nil
	}
	return "", fmt.Errorf("no ConfigMap %s", name)
}

// SetAgentSocket points every ovsnet plugin of a conflist at socket and, if
// cniVersion is not empty, sets the conflist's cniVersion; it returns the
// conflist as indented JSON. Other plugins and fields are kept.
func SetAgentSocket(conflist, socket, cniVersion string) (string, error) {
	var list map[string]any
	if err := json.Unmarshal([]byte(conflist), &list); err != nil {
		return "", fmt.Errorf("conflist is not JSON: %w", err)
	}
	if cniVersion != "" {
		list["cniVersion"] = cniVersion
	}
	plugins, _ := list["plugins"].([]any)
	n := 0
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == "ovsnet" {
			m["agentSocket"] = socket
			n++
		}
	}
	if n == 0 {
		return "", errors.New(`conflist has no plugin of type "ovsnet"`)
	}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return "", err
	}
	return string(out) + "\n", nil
}

// Field returns one top-level field of a YAML map (the agent's config file)
// as a string; "" when the field is absent.
func Field(configYAML, field string) (string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(configYAML), &m); err != nil {
		return "", fmt.Errorf("not a YAML map: %w", err)
	}
	switch v := m[field].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, float64:
		return fmt.Sprint(v), nil
	default:
		return "", fmt.Errorf("field %q is a %T, want a string, number or boolean", field, v)
	}
}

// Render returns the whole manifest with fields of one YAML key of the
// named ConfigMap (the agent's agent.yaml) set: the manifest as users apply
// it, with only what a cluster must change (a datapath without the kernel
// module, another traffic mode) changed. Each value of set is YAML (false,
// 0 and netdev become a boolean, a number and a string). Every field must
// exist already: a misspelt override must not add a key the agent rejects
// at start instead of changing the one meant. The other documents keep
// their text; the ConfigMap is re-encoded (its comments are lost).
func Render(docs []Doc, configMap, key string, set map[string]string) (string, error) {
	var b strings.Builder
	found := false
	for _, d := range docs {
		text := d.Text
		if d.Kind == "ConfigMap" && d.Name == configMap && len(set) > 0 {
			found = true
			var err error
			if text, err = setConfigMapFields(text, key, set); err != nil {
				return "", fmt.Errorf("ConfigMap %s: %w", configMap, err)
			}
		}
		b.WriteString("---\n")
		b.WriteString(strings.TrimRight(text, "\n"))
		b.WriteString("\n")
	}
	if len(set) > 0 && !found {
		return "", fmt.Errorf("no ConfigMap %s", configMap)
	}
	return b.String(), nil
}

func setConfigMapFields(doc, key string, set map[string]string) (string, error) {
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		return "", err
	}
	data, _ := obj["data"].(map[string]any)
	raw, ok := data[key].(string)
	if !ok {
		return "", fmt.Errorf("no key %q", key)
	}
	var fields map[string]any
	if err := yaml.Unmarshal([]byte(raw), &fields); err != nil {
		return "", fmt.Errorf("key %q is not a YAML map: %w", key, err)
	}
	for name, value := range set {
		if _, ok := fields[name]; !ok {
			return "", fmt.Errorf("key %q has no field %q to set", key, name)
		}
		var v any
		if err := yaml.Unmarshal([]byte(value), &v); err != nil {
			return "", fmt.Errorf("field %q: value %q is not YAML: %w", name, value, err)
		}
		fields[name] = v
	}
	out, err := yaml.Marshal(fields)
	if err != nil {
		return "", err
	}
	data[key] = string(out)
	enc, err := yaml.Marshal(obj)
	if err != nil {
		return "", err
	}
	return string(enc), nil
}

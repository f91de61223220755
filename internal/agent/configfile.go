package agent

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// ApplyConfigFile reads a YAML (or JSON) file whose keys are flag names
// without the dashes, e.g.
//
//	pod-cidr: 10.244.1.0/24
//	datapath-type: netdev
//	async-interfaces: false
//
// and sets every flag not given on the command line; the command line wins.
// Unknown keys are an error, so a typo does not silently fall back to a
// default.
func ApplyConfigFile(fs *pflag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	var kv map[string]any
	if err := yaml.Unmarshal(data, &kv); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return fmt.Errorf("config file %s: unknown key %q (keys are the agent's flag names, e.g. pod-cidr)", path, k)
		}
		if f.Changed {
			continue
		}
		v := kv[k]
		var s string
		switch x := v.(type) {
		case nil:
			continue
		case string:
			s = x
		case bool:
			s = fmt.Sprint(x)
		case float64:
			s = strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%f", x), "0"), ".")
		default:
			return fmt.Errorf("config file %s: key %q: want a string, number or boolean, got %T", path, k, v)
		}
		if err := f.Value.Set(s); err != nil {
			return fmt.Errorf("config file %s: key %q: %w", path, k, err)
		}
	}
	return nil
}

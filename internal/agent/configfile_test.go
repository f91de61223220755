package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/ovsnet/ovsnet/internal/agent"
)

func flags(cfg *agent.Config) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.StringVar(&cfg.PodCIDR, "pod-cidr", cfg.PodCIDR, "")
	fs.StringVar(&cfg.DatapathType, "datapath-type", cfg.DatapathType, "")
	fs.BoolVar(&cfg.AsyncInterfaces, "async-interfaces", cfg.AsyncInterfaces, "")
	fs.IntVar(&cfg.MTU, "mtu", cfg.MTU, "")
	return fs
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte("pod-cidr: 10.1.0.0/24\ndatapath-type: netdev\nasync-interfaces: true\nmtu: 1400\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := agent.Defaults()
	fs := flags(&cfg)
	// The command line wins over the file.
	if err := fs.Parse([]string{"--datapath-type=system"}); err != nil {
		t.Fatal(err)
	}
	if err := agent.ApplyConfigFile(fs, path); err != nil {
		t.Fatal(err)
	}
	if cfg.PodCIDR != "10.1.0.0/24" || cfg.DatapathType != "system" || !cfg.AsyncInterfaces || cfg.MTU != 1400 {
		t.Fatalf("config after file: %+v", cfg)
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{"pod-cidr: [1, 2]\n", "want a string"},
		{"podcidr: 10.0.0.0/24\n", `unknown key "podcidr"`},
		{"mtu: many\n", `key "mtu"`},
		{": : :\n", "config file"},
	} {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := agent.Defaults()
		err := agent.ApplyConfigFile(flags(&cfg), path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error with %q", tc.body, err, tc.want)
		}
	}
	cfg := agent.Defaults()
	if err := agent.ApplyConfigFile(flags(&cfg), filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

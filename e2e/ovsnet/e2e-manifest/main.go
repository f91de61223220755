// Command e2e-manifest reads ovsnet's Kubernetes manifest (deploy/ovsnet.yaml)
// for the end-to-end cluster, so that the host processes it starts use the
// configuration the DaemonSet would:
//
//	e2e-manifest -f deploy/ovsnet.yaml -kinds ServiceAccount,ClusterRole,ClusterRoleBinding,ConfigMap
//	    prints those documents, as written, for kubectl apply
//	e2e-manifest -f deploy/ovsnet.yaml -key agent.yaml
//	    prints one key of the ConfigMap ovsnet-config
//	e2e-manifest -f deploy/ovsnet.yaml -key agent.yaml -field health-addr
//	    prints one field of that key's YAML (empty when it is not set)
//	e2e-manifest -f deploy/ovsnet.yaml -key 10-ovsnet.conflist -agent-socket /lab/run/cni.sock
//	    prints the conflist with every ovsnet plugin pointed at another agent socket
//	    (add -cni-version 1.0.0 to also set the conflist's cniVersion)
//	e2e-manifest -f deploy/ovsnet.yaml -render -set datapath-type=netdev [-set traffic-mode=noencap]
//	    prints the whole manifest with those fields of agent.yaml changed, for kubectl apply
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// setFlags collects -set NAME=VALUE.
type setFlags map[string]string

func (s setFlags) String() string { return fmt.Sprint(map[string]string(s)) }

func (s setFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", v)
	}
	s[name] = value
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		slog.Error("e2e-manifest failed", "err", err)
		os.Exit(1)
	}
}

func run(args []string, stdout *os.File) error {
	fs := flag.NewFlagSet("e2e-manifest", flag.ContinueOnError)
	file := fs.String("f", "deploy/ovsnet.yaml", "the manifest: YAML documents separated by ---")
	kinds := fs.String("kinds", "", "comma-separated kinds: print these documents")
	configMap := fs.String("configmap", "ovsnet-config", "ConfigMap whose -key is printed")
	key := fs.String("key", "", "print this key of the ConfigMap")
	field := fs.String("field", "", "with -key: print this field of the key's YAML map")
	socket := fs.String("agent-socket", "", "with a conflist -key: set agentSocket of every ovsnet plugin to this path")
	cniVersion := fs.String("cni-version", "", "with -agent-socket: also set the conflist's cniVersion (for runtimes older than the shipped one)")
	render := fs.Bool("render", false, "print the whole manifest, with the -set fields of agent.yaml changed")
	set := setFlags{}
	fs.Var(set, "set", "with -render: NAME=VALUE, a field of agent.yaml to change (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	modes := 0
	for _, on := range []bool{*kinds != "", *key != "", *render} {
		if on {
			modes++
		}
	}
	if modes != 1 || fs.NArg() > 0 || (len(set) > 0 && !*render) {
		return fmt.Errorf("usage: e2e-manifest -f FILE (-kinds K1,K2 | -key KEY [-configmap NAME] [-field NAME | -agent-socket PATH] | -render [-set NAME=VALUE]...)")
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("read the manifest: %w", err)
	}
	docs, err := Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	var out string
	if *render {
		out, err = Render(docs, *configMap, "agent.yaml", set)
	} else if *kinds != "" {
		out, err = SelectKinds(docs, *kinds)
	} else {
		out, err = ConfigMapKey(docs, *configMap, *key)
		switch {
		case err != nil:
		case *field != "":
			out, err = Field(out, *field)
			out += "\n"
		case *socket != "":
			out, err = SetAgentSocket(out, *socket, *cniVersion)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	_, err = fmt.Fprint(stdout, out)
	return err
}

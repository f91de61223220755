// Command podspec prints what the ovsnet DaemonSet in deploy/ovsnet.yaml
// runs, so deploy/image/verify.sh starts the image's containers the way the
// manifest says rather than from a copy that could drift:
//
//	podspec -f deploy/ovsnet.yaml -container install-cni -command
//	    the container's command and args, each followed by a NUL byte
//	podspec -f deploy/ovsnet.yaml -container ovs -mounts
//	    one line per volume mount: mountPath, the volume's kind (hostPath,
//	    configMap, other), its host path or ConfigMap name, ro or rw
//	podspec -f deploy/ovsnet.yaml -container agent -env
//	    NAME=VALUE per literal environment variable (valueFrom ones are left out)
//	podspec -f deploy/ovsnet.yaml -configmap ovsnet-config -write-dir DIR
//	    writes each key of the ConfigMap as a file in DIR, as a configMap volume does
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		slog.Error("podspec failed", "err", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("podspec", flag.ContinueOnError)
	file := fs.String("f", "deploy/ovsnet.yaml", "the manifest")
	daemonSet := fs.String("daemonset", "ovsnet-agent", "the DaemonSet whose pod template is read")
	container := fs.String("container", "", "container or init container of the pod template")
	command := fs.Bool("command", false, "with -container: print command and args, NUL-terminated")
	mounts := fs.Bool("mounts", false, "with -container: print the volume mounts")
	env := fs.Bool("env", false, "with -container: print the literal environment")
	configMap := fs.String("configmap", "", "ConfigMap to write out with -write-dir")
	writeDir := fs.String("write-dir", "", "with -configmap: directory to write the keys into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("read the manifest: %w", err)
	}
	if *configMap != "" {
		if *writeDir == "" || *container != "" {
			return errors.New("usage: podspec -f FILE -configmap NAME -write-dir DIR")
		}
		var cm corev1.ConfigMap
		if err := find(data, "ConfigMap", *configMap, &cm); err != nil {
			return fmt.Errorf("%s: %w", *file, err)
		}
		for k, v := range cm.Data {
			if err := os.WriteFile(filepath.Join(*writeDir, k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("write ConfigMap key: %w", err)
			}
		}
		return nil
	}
	if *container == "" || btoi(*command)+btoi(*mounts)+btoi(*env) != 1 {
		return errors.New("usage: podspec -f FILE -container NAME (-command | -mounts | -env)")
	}
	var ds appsv1.DaemonSet
	if err := find(data, "DaemonSet", *daemonSet, &ds); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	spec := ds.Spec.Template.Spec
	c, err := containerOf(spec, *container)
	if err != nil {
		return fmt.Errorf("%s: DaemonSet %s: %w", *file, *daemonSet, err)
	}
	var out strings.Builder
	switch {
	case *command:
		if len(c.Command) == 0 {
			return fmt.Errorf("%s: container %s has no command (the image's entrypoint would run)", *file, c.Name)
		}
		for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
			out.WriteString(a + "\x00")
		}
	case *mounts:
		for _, m := range c.VolumeMounts {
			kind, src := "other", ""
			for _, v := range spec.Volumes {
				if v.Name != m.Name {
					continue
				}
				switch {
				case v.HostPath != nil:
					kind, src = "hostPath", v.HostPath.Path
				case v.ConfigMap != nil:
					kind, src = "configMap", v.ConfigMap.Name
				}
			}
			mode := "rw"
			if m.ReadOnly {
				mode = "ro"
			}
			fmt.Fprintf(&out, "%s\t%s\t%s\t%s\n", m.MountPath, kind, src, mode)
		}
	case *env:
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				fmt.Fprintf(&out, "%s=%s\n", e.Name, e.Value)
			}
		}
	}
	_, err = io.WriteString(stdout, out.String())
	return err
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func containerOf(spec corev1.PodSpec, name string) (corev1.Container, error) {
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		if c.Name == name {
			return c, nil
		}
	}
	return corev1.Container{}, fmt.Errorf("no container or init container %q", name)
}

// find decodes the document of the given kind and name into obj.
func find(manifest []byte, kind, name string, obj any) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("no %s %q", kind, name)
		}
		if err != nil {
			return err
		}
		var h struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(raw, &h); err != nil {
			return err
		}
		if h.Kind == kind && h.Metadata.Name == name {
			return yaml.UnmarshalStrict(raw, obj)
		}
	}
}

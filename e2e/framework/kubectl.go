package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Kubectl runs the cluster's kubectl with the admin kubeconfig and returns
// its standard output; a failure carries its standard error.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.KubectlPath, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Exec runs command in the pod's first container (kubectl exec) and returns
// its standard output.
func (c *Cluster) Exec(ctx context.Context, namespace, pod string, command ...string) (string, error) {
	return c.Kubectl(ctx, nil, append([]string{"exec", "--namespace", namespace, pod, "--"}, command...)...)
}

// ExecCommand is Exec as a command the caller starts and reads from, for
// output that streams (a continuous ping). Cancelling ctx ends kubectl.
func (c *Cluster) ExecCommand(ctx context.Context, namespace, pod string, command ...string) *exec.Cmd {
	args := append([]string{"--kubeconfig", c.Kubeconfig, "exec", "--namespace", namespace, pod, "--"}, command...)
	return exec.CommandContext(ctx, c.KubectlPath, args...)
}

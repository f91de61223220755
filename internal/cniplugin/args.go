package cniplugin

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// The CNI_ARGS keys Kubernetes runtimes set for a pod sandbox.
const (
	argPodNamespace        = "K8S_POD_NAMESPACE"
	argPodName             = "K8S_POD_NAME"
	argPodUID              = "K8S_POD_UID"
	argPodInfraContainerID = "K8S_POD_INFRA_CONTAINER_ID"
)

// ParseCNIArgs splits CNI_ARGS ("K1=V1;K2=V2") into the pod's K8S_POD_* keys
// and the remaining keys, which are kept unchanged for the agent. Empty
// segments are skipped and a value may contain '='. A segment without '=' or
// with an empty key is an error with code 4 (invalid environment variables).
func ParseCNIArgs(s string) (cniapi.PodRef, map[string]string, error) {
	var pod cniapi.PodRef
	var other map[string]string
	for seg := range strings.SplitSeq(s, ";") {
		if seg == "" {
			continue
		}
		k, v, ok := strings.Cut(seg, "=")
		if !ok || k == "" {
			return cniapi.PodRef{}, nil, types.NewError(types.ErrInvalidEnvironmentVariables,
				fmt.Sprintf("invalid CNI_ARGS element %q", truncate(seg, 64)), "CNI_ARGS must be KEY=VALUE pairs separated by ';'")
		}
		switch k {
		case argPodNamespace:
			pod.Namespace = v
		case argPodName:
			pod.Name = v
		case argPodUID:
			pod.UID = v
		case argPodInfraContainerID:
			pod.InfraContainerID = v
		default:
			if other == nil {
				other = make(map[string]string)
			}
			other[k] = v
		}
	}
	return pod, other, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

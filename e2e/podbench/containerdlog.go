package main

import (
	"bufio"
	"io"
	"regexp"
	"time"
)

// sandboxTimes is when containerd worked on one pod, from its log (info
// level, which the e2e cluster's containerd writes).
type sandboxTimes struct {
	// RunStart: RunPodSandbox began (kubelet asked for the sandbox).
	RunStart time.Time
	// RunDone: the sandbox exists, network set up through CNI included.
	RunDone time.Time
	// Started: the pod's container has started.
	Started time.Time

	sandboxID, containerID string
}

var (
	reTime = regexp.MustCompile(`^time="([^"]+)"`)
	reRun  = regexp.MustCompile(`msg="RunPodSandbox for &PodSandboxMetadata\{Name:[^,]*,Uid:([^,]+),[^}]*\}(?: returns sandbox id \\"([0-9a-f]+)\\")?"`)
	// CreateContainer within sandbox "S" for &ContainerMetadata{...} returns container id "C"
	reCreated = regexp.MustCompile(`msg="CreateContainer within sandbox \\"([0-9a-f]+)\\" for &ContainerMetadata\{[^}]*\} returns container id \\"([0-9a-f]+)\\""`)
	reStarted = regexp.MustCompile(`msg="StartContainer for \\"([0-9a-f]+)\\" returns successfully"`)
)

// parseContainerdLog collects the times of the pods with the given UIDs. A
// pod whose sandbox was retried keeps its first RunPodSandbox start and its
// successful end.
func parseContainerdLog(r io.Reader, uids map[string]bool) (map[string]*sandboxTimes, error) {
	out := map[string]*sandboxTimes{}
	bySandbox := map[string]*sandboxTimes{}
	byContainer := map[string]*sandboxTimes{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		tm := reTime.FindStringSubmatch(line)
		if tm == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, tm[1])
		if err != nil {
			continue
		}
		if m := reRun.FindStringSubmatch(line); m != nil {
			if !uids[m[1]] {
				continue
			}
			st := out[m[1]]
			if st == nil {
				st = &sandboxTimes{}
				out[m[1]] = st
			}
			if m[2] == "" {
				if st.RunStart.IsZero() {
					st.RunStart = t
				}
			} else {
				st.RunDone, st.sandboxID = t, m[2]
				bySandbox[m[2]] = st
			}
			continue
		}
		if m := reCreated.FindStringSubmatch(line); m != nil {
			if st := bySandbox[m[1]]; st != nil {
				st.containerID = m[2]
				byContainer[m[2]] = st
			}
			continue
		}
		if m := reStarted.FindStringSubmatch(line); m != nil {
			if st := byContainer[m[1]]; st != nil {
				st.Started = t
			}
		}
	}
	return out, sc.Err()
}

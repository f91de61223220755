package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

const sampleLog = `time="2026-11-24T18:30:15.928503166Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:bench-01,Uid:u1,Namespace:ns,Attempt:0,}"
time="2026-11-24T18:30:15.950000000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:other,Uid:u9,Namespace:ns,Attempt:0,}"
time="2026-11-24T18:30:16.000000000Z" level=error msg="RunPodSandbox for &PodSandboxMetadata{Name:bench-01,Uid:u1,Namespace:ns,Attempt:0,} failed, error" error="x"
time="2026-11-24T18:30:17.000000000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:bench-01,Uid:u1,Namespace:ns,Attempt:1,}"
time="2026-11-24T18:30:18.127821066Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:bench-01,Uid:u1,Namespace:ns,Attempt:1,} returns sandbox id \"ac16\""
time="2026-11-24T18:30:18.444412725Z" level=info msg="CreateContainer within sandbox \"ac16\" for container &ContainerMetadata{Name:main,Attempt:0,}"
time="2026-11-24T18:30:22.075565520Z" level=info msg="CreateContainer within sandbox \"ac16\" for &ContainerMetadata{Name:main,Attempt:0,} returns container id \"9397\""
time="2026-11-24T18:30:22.500000000Z" level=info msg="StartContainer for \"9397\" returns successfully"
not a log line
`

func TestParseContainerdLog(t *testing.T) {
	got, err := parseContainerdLog(strings.NewReader(sampleLog), map[string]bool{"u1": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("want only the asked-for pod, got %d", len(got))
	}
	st := got["u1"]
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
	if !st.RunStart.Equal(at("2026-11-24T18:30:15.928503166Z")) {
		t.Errorf("RunStart %v: want the first attempt's start", st.RunStart)
	}
	if !st.RunDone.Equal(at("2026-11-24T18:30:18.127821066Z")) || !st.Started.Equal(at("2026-11-24T18:30:22.5Z")) {
		t.Errorf("times %+v", st)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for p, want := range map[float64]float64{50: 3, 99: 5, 100: 5, 1: 1} {
		if got := Percentile(xs, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("want NaN for no samples")
	}
	if xs[0] != 5 {
		t.Error("Percentile sorted its input")
	}
}

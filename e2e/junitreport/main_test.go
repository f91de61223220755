package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="1" time="120.5">
  <testsuite name="Kubernetes e2e suite" package="/" tests="5" disabled="1" skipped="2" errors="0" failures="1" time="120.5">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1.2"></testcase>
    <testcase name="[It] [sig-network] DNS should provide DNS for services [Conformance]" classname="Kubernetes e2e suite" status="passed" time="12.25"></testcase>
    <testcase name="[sig-network] Services should serve a basic endpoint from pods [Conformance]" classname="Kubernetes e2e suite" status="failed" time="95.5">
      <failure message="Told to stop trying after 90s.&#xA;service is not reachable" type="failed">[FAILED] details</failure>
    </testcase>
    <testcase name="[sig-storage] something unrelated" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[sig-network] needs two nodes [Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0.3">
      <skipped message="skipped - Requires at least 2 nodes (not 1)"></skipped>
    </testcase>
  </testsuite>
</testsuites>`

func TestParseKeepsWhatRanAndSuiteSkips(t *testing.T) {
	rows, err := Parse(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Row{}
	for _, r := range rows {
		got[r.Name] = r
	}
	if len(rows) != 3 {
		t.Fatalf("rows %+v: want the 3 tests that ran (setup nodes and unselected tests left out)", rows)
	}
	if r := got["[sig-network] DNS should provide DNS for services [Conformance]"]; r.Result != "pass" || r.Seconds != 12.25 {
		t.Errorf("passed test: %+v", r)
	}
	if r := got["[sig-network] Services should serve a basic endpoint from pods [Conformance]"]; r.Result != "FAIL" || r.Note != "Told to stop trying after 90s." {
		t.Errorf("failed test: %+v", r)
	}
	if r := got["[sig-network] needs two nodes [Conformance]"]; r.Result != "skipped" || !strings.Contains(r.Note, "2 nodes") {
		t.Errorf("skipped by the suite: %+v", r)
	}
}

func TestWriteCountsAndJudgeSeparatesKnownFailures(t *testing.T) {
	rows, err := Parse(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	Write(&table, rows, "ovsnet")
	if !strings.Contains(table.String(), "| test | ovsnet | duration | note |") ||
		!strings.HasSuffix(table.String(), "\n1 passed, 1 failed, 1 skipped\n") {
		t.Errorf("table:\n%s", table.String())
	}
	known := ParseKnown("# same-node ClusterIP\n[sig-network] Services should serve a basic endpoint from pods [Conformance]  # reason\n\n")
	var out bytes.Buffer
	if !Judge(&out, rows, known) || !strings.Contains(out.String(), "known failure: [sig-network] Services") {
		t.Errorf("with the failure known: %q", out.String())
	}
	out.Reset()
	if Judge(&out, rows, nil) || !strings.Contains(out.String(), "UNEXPECTED FAILURE") {
		t.Errorf("with no known failures: %q", out.String())
	}
	out.Reset()
	Judge(&out, rows, []string{"[sig-network] DNS should provide DNS for services [Conformance]"})
	if !strings.Contains(out.String(), "passed (remove it") {
		t.Errorf("a known failure that passes is reported: %q", out.String())
	}
}

func TestCompareSideBySide(t *testing.T) {
	dir := t.TempDir()
	a, b := dir+"/a.xml", dir+"/b.xml"
	if err := os.WriteFile(a, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(report, `status="failed" time="95.5"`, `status="passed" time="3.0"`, 1)
	other = strings.Replace(other, `<failure message="Told to stop trying after 90s.&#xA;service is not reachable" type="failed">[FAILED] details</failure>`, "", 1)
	if err := os.WriteFile(b, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := compare(&out, []string{"ovsnet=" + a, "bridge=" + b}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| test | ovsnet | ovsnet time | bridge | bridge time | failure |",
		"| [sig-network] Services should serve a basic endpoint from pods [Conformance] | FAIL | 95.5 s | pass | 3.0 s | ovsnet: Told to stop trying after 90s. |",
		"ovsnet: 1 passed, 1 failed, 1 skipped",
		"bridge: 2 passed, 0 failed, 1 skipped",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
}

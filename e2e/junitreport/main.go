// Command e2e-junit turns the JUnit report of Kubernetes' e2e.test
// (junit_01.xml, written by make conformance) into the Markdown table of
// docs/conformance.md: one row per test that ran (name, result, duration),
// then the totals. Tests the focus or a skip left out are not listed; tests
// that ran and were skipped by the suite itself (for example for too few
// nodes) are, with the reason the suite gave.
//
// With -known FILE (one test name a line; # starts a comment), failures
// of the tests named there are known: the exit status is 3 when a test not
// named there failed, 0 otherwise, and each known failure, unexpected
// failure and known failure that passed now is listed on standard error.
//
//	e2e-junit [-label ovsnet] [-known FILE] junit_01.xml
//
// Given LABEL=REPORT arguments instead, it prints one table of all of
// them side by side (the form of docs/conformance.md):
//
//	e2e-junit bridge=bin/conformance/bridge/junit_01.xml ovsnet=bin/conformance/ovsnet/junit_01.xml
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

type testSuites struct {
	Suites []testSuite `xml:"testsuite"`
}

type testSuite struct {
	Cases []testCase `xml:"testcase"`
}

type testCase struct {
	Name    string   `xml:"name,attr"`
	Time    float64  `xml:"time,attr"`
	Status  string   `xml:"status,attr"`
	Skipped *message `xml:"skipped"`
	Failure *message `xml:"failure"`
	Error   *message `xml:"error"`
}

type message struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// Row is one test's line of the table.
type Row struct {
	Name, Result, Note string
	Seconds            float64
}

func main() {
	label := flag.String("label", "", "a column header for the result (the CNI), default \"result\"")
	knownFile := flag.String("known", "", "file of tests whose failure is known (one name a line)")
	flag.Parse()
	if flag.NArg() > 1 || flag.NArg() == 1 && strings.Contains(flag.Arg(0), "=") {
		if err := compare(os.Stdout, flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "e2e-junit:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: e2e-junit [-label NAME] [-known FILE] junit_01.xml")
		os.Exit(2)
	}
	var known []string
	if *knownFile != "" {
		data, err := os.ReadFile(*knownFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e-junit:", err)
			os.Exit(1)
		}
		known = ParseKnown(string(data))
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-junit:", err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := Parse(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e-junit: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	Write(os.Stdout, rows, *label)
	if *knownFile != "" && !Judge(os.Stderr, rows, known) {
		os.Exit(3)
	}
}

// compare prints the reports given as LABEL=FILE side by side: one row per
// test of any of them, a result and a duration column per label, and the
// failure notes; then each label's totals.
func compare(w io.Writer, args []string) error {
	var labels []string
	results := map[string]map[string]Row{}
	var names []string
	seen := map[string]bool{}
	for _, a := range args {
		label, file, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("argument %q: want LABEL=REPORT", a)
		}
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		rows, err := Parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		labels = append(labels, label)
		results[label] = map[string]Row{}
		for _, r := range rows {
			results[label][r.Name] = r
			if !seen[r.Name] {
				seen[r.Name] = true
				names = append(names, r.Name)
			}
		}
	}
	sort.Strings(names)
	fmt.Fprint(w, "| test |")
	for _, l := range labels {
		fmt.Fprintf(w, " %s | %s time |", l, l)
	}
	fmt.Fprint(w, " failure |\n| --- |")
	for range labels {
		fmt.Fprint(w, " --- | --- |")
	}
	fmt.Fprint(w, " --- |\n")
	for _, n := range names {
		fmt.Fprintf(w, "| %s |", strings.ReplaceAll(n, "|", "\\|"))
		var notes []string
		for _, l := range labels {
			r, ok := results[l][n]
			if !ok {
				fmt.Fprint(w, " not run | |")
				continue
			}
			fmt.Fprintf(w, " %s | %.1f s |", r.Result, r.Seconds)
			if r.Note != "" {
				notes = append(notes, l+": "+r.Note)
			}
		}
		fmt.Fprintf(w, " %s |\n", strings.Join(notes, "; "))
	}
	fmt.Fprintln(w)
	for _, l := range labels {
		counts := map[string]int{}
		for _, r := range results[l] {
			counts[r.Result]++
		}
		fmt.Fprintf(w, "%s: %d passed, %d failed, %d skipped\n\n", l, counts["pass"], counts["FAIL"], counts["skipped"])
	}
	return nil
}

// ParseKnown returns the test names of a known-failures file.
func ParseKnown(data string) []string {
	var out []string
	for _, l := range strings.Split(data, "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Judge lists the known and unexpected failures and the known failures
// that passed, and reports whether no test failed unexpectedly.
func Judge(w io.Writer, rows []Row, known []string) bool {
	ok := true
	for _, r := range rows {
		isKnown := slices.Contains(known, r.Name)
		switch {
		case r.Result == "FAIL" && isKnown:
			fmt.Fprintf(w, "known failure: %s\n", r.Name)
		case r.Result == "FAIL":
			fmt.Fprintf(w, "UNEXPECTED FAILURE: %s\n", r.Name)
			ok = false
		case r.Result == "pass" && isKnown:
			fmt.Fprintf(w, "listed as a known failure but passed (remove it from the list): %s\n", r.Name)
		}
	}
	return ok
}

// Parse reads a JUnit report and returns the tests that ran or that the
// suite itself skipped, by name. The suite's setup and teardown nodes
// ([SynchronizedBeforeSuite] and the like) and tests left out by the
// focus ("skipped" with no message) are dropped.
func Parse(r io.Reader) ([]Row, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var suites testSuites
	if err := xml.Unmarshal(data, &suites); err != nil || len(suites.Suites) == 0 {
		// A report of a single <testsuite>.
		var one testSuite
		if err2 := xml.Unmarshal(data, &one); err2 != nil {
			return nil, fmt.Errorf("not a JUnit report: %v", err)
		}
		suites.Suites = []testSuite{one}
	}
	var rows []Row
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			if strings.HasPrefix(c.Name, "[") && strings.Contains(c.Name, "Suite]") {
				continue
			}
			// Ginkgo names a test after its leaf node: "[It] [sig-network] ...".
			row := Row{Name: strings.TrimPrefix(strings.TrimSpace(c.Name), "[It] "), Seconds: c.Time}
			switch {
			case c.Failure != nil:
				row.Result, row.Note = "FAIL", firstLine(c.Failure.Message, c.Failure.Text)
			case c.Error != nil:
				row.Result, row.Note = "FAIL", firstLine(c.Error.Message, c.Error.Text)
			case c.Skipped != nil:
				note := firstLine(c.Skipped.Message, c.Skipped.Text)
				if note == "" || c.Status == "skipped" && strings.Contains(note, "skipped") && c.Time == 0 {
					continue // not selected
				}
				row.Result, row.Note = "skipped", note
			default:
				row.Result = "pass"
			}
			rows = append(rows, row)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}

func firstLine(parts ...string) string {
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if i := strings.IndexByte(p, '\n'); i >= 0 {
			p = p[:i]
		}
		p = strings.ReplaceAll(p, "|", "\\|")
		if len(p) > 200 {
			p = p[:200] + "..."
		}
		return p
	}
	return ""
}

// Write prints the table and the totals.
func Write(w io.Writer, rows []Row, label string) {
	if label == "" {
		label = "result"
	}
	fmt.Fprintf(w, "| test | %s | duration | note |\n| --- | --- | --- | --- |\n", label)
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.Result]++
		fmt.Fprintf(w, "| %s | %s | %.1f s | %s |\n", strings.ReplaceAll(r.Name, "|", "\\|"), r.Result, r.Seconds, r.Note)
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", counts["pass"], counts["FAIL"], counts["skipped"])
}

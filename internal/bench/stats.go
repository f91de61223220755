// Package bench holds ovsnet's benchmark scenarios, run by cmd/ovsnet-bench
// against real OVS sandboxes. Each scenario measures ovsnet side by side with
// a floor (the best any client could do) in the same run.
package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Sample is a set of durations.
type Sample []time.Duration

// Percentile returns the p-th percentile (0-100) by nearest rank.
func (s Sample) Percentile(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	rank := int(p/100*float64(len(c))+0.5) - 1
	rank = max(0, min(rank, len(c)-1))
	return c[rank]
}

// Row is one line of a result table.
type Row struct {
	Name   string
	Sample Sample
}

// WriteTable prints n, median, p90, p99 and max for each row.
func WriteTable(w io.Writer, title string, rows []Row) {
	fmt.Fprintf(w, "\n%s\n%s\n", title, strings.Repeat("-", len(title)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tn\tp50\tp90\tp99\tmax\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", r.Name, len(r.Sample),
			ms(r.Sample.Percentile(50)), ms(r.Sample.Percentile(90)),
			ms(r.Sample.Percentile(99)), ms(r.Sample.Percentile(100)))
	}
	tw.Flush()
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

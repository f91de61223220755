package ofconn

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
)

// BenchmarkPortReady measures, against a real OVS, the time from sending
// the OVSDB transaction that adds a port to WaitPort returning ("ready"),
// beside the floor: when the PORT_STATUS that makes the port ready was read
// off the socket by the receive loop ("portstatus"). Veth ports wait for
// LIVE, internal ports for an allocated port number; "after-portstatus" is
// the per-port difference, what ovsnet adds to the floor. Each iteration adds n
// ports concurrently, one transaction each, then deletes them untimed.
//
//	go test -run '^$' -bench PortReady -benchtime 200x ./internal/ovs/ofconn/
func BenchmarkPortReady(b *testing.B) {
	for _, bc := range []struct {
		name string
		typ  string
		cond ports.Cond
		n    int
	}{
		{"veth/1", "", ports.Live, 1},
		{"veth/50", "", ports.Live, 50},
		{"internal/1", "internal", ports.Allocated, 1},
		{"internal/50", "internal", ports.Allocated, 50},
	} {
		b.Run(bc.name, func(b *testing.B) { benchPortReady(b, bc.typ, bc.cond, bc.n) })
	}
}

func benchPortReady(b *testing.B, typ string, cond ports.Cond, n int) {
	e := setupOVS(b)
	e.connect(b, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := e.conn.WaitSession(ctx); err != nil {
		b.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("ofx-b%02d", i)
	}
	if typ == "" {
		e.veth(b, names...)
	}
	var ready, floor, gap []time.Duration
	b.ResetTimer()
	for range b.N {
		from := e.events.len()
		starts := make([]time.Time, n)
		took := make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ref := e.table.Expect(name)
				starts[i] = time.Now()
				added, err := e.db.AddPort(ctx, bridge, ovsdb.PortSpec{Name: name, Type: typ})
				if err != nil {
					errs[i] = err
					return
				}
				ref.InterfaceUUID = added.InterfaceUUID
				_, errs[i] = e.table.WaitPort(ctx, ref, cond)
				took[i] = time.Since(starts[i])
			}()
		}
		wg.Wait()
		b.StopTimer()
		for i, name := range names {
			if errs[i] != nil {
				b.Fatalf("%s: %v", name, errs[i])
			}
			ev, _, err := e.events.wait(ctx, from, func(ev portEvent) bool {
				return ev.port.Name == name && (cond == ports.Allocated && ev.reason == openflow.PortReasonAdd || cond == ports.Live && ev.port.Live())
			})
			if err != nil {
				b.Fatalf("%s: no PORT_STATUS making it ready: %v", name, err)
			}
			ready = append(ready, took[i])
			floor = append(floor, ev.at.Sub(starts[i]))
			gap = append(gap, starts[i].Add(took[i]).Sub(ev.at))
		}
		if err := e.db.DeletePorts(ctx, bridge, names...); err != nil {
			b.Fatal(err)
		}
		// The next round re-adds the same names: wait until OVS has let go.
		for _, name := range names {
			if _, _, err := e.events.wait(ctx, from, func(ev portEvent) bool {
				return ev.port.Name == name && ev.reason == openflow.PortReasonDelete
			}); err != nil {
				b.Fatalf("%s not deleted: %v", name, err)
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(percentile(ready, 50), "ready-p50-us")
	b.ReportMetric(percentile(ready, 99), "ready-p99-us")
	b.ReportMetric(percentile(floor, 50), "portstatus-p50-us")
	b.ReportMetric(percentile(floor, 99), "portstatus-p99-us")
	// What ovsnet adds after the message arrived (negative when OVSDB's
	// ofport made the port ready before its PORT_STATUS).
	b.ReportMetric(percentile(gap, 50), "after-portstatus-p50-us")
	b.ReportMetric(percentile(gap, 99), "after-portstatus-p99-us")
}

// percentile is the nearest-rank p-th percentile in microseconds.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.5) - 1
	rank = max(0, min(rank, len(s)-1))
	return float64(s[rank]) / float64(time.Microsecond)
}

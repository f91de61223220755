//go:build linux

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
	ovsdbc "github.com/ovsnet/ovsnet/internal/ovs/ovsdb"
	"github.com/ovsnet/ovsnet/internal/ovs/ports"
)

// StallConfig configures the stall benchmark.
type StallConfig struct {
	Ports int
	Stall time.Duration
	// AnchorTimeout is the fixed wait of the method compared against (an
	// OVSDB "wait" operation on Interface.ofport with a timeout, 5 s in the
	// original).
	AnchorTimeout time.Duration
	Rounds        int
	Out           io.Writer
	Log           *slog.Logger
}

// Stall adds ports while ovs-vswitchd is stopped (SIGSTOP) for cfg.Stall and
// waits for each two ways at once: the fixed-timeout OVSDB wait, and ovsnet's
// WaitPort bounded only by a generous context. It reports how many of each
// completed and, for ovsnet, how long after SIGCONT.
func Stall(ctx context.Context, cfg StallConfig) error {
	sb, err := newSandbox(ctx, true)
	if err != nil {
		return err
	}
	defer sb.Close()
	if _, err := sb.Vsctl(ctx, "add-br", "br-int", "--", "set", "bridge", "br-int",
		"datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure"); err != nil {
		return err
	}
	db, err := ovsdbc.New(ovsdbc.Config{Endpoint: sb.DBEndpoint(), Logger: cfg.Log})
	if err != nil {
		return err
	}
	table := ports.New(db)
	conn, err := ofconn.New(ofconn.Config{Bridge: "br-int", RunDir: sb.Dir(), Ports: table, Logger: cfg.Log})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = db.Run(rctx) }()
	go func() { defer wg.Done(); _ = conn.Run(rctx) }()
	defer func() { cancel(); wg.Wait() }()
	if err := db.WaitConnected(ctx); err != nil {
		return err
	}
	if _, err := conn.WaitSession(ctx); err != nil {
		return err
	}

	var afterCont Sample
	anchorOK, anchorTotal, ovsnetOK, ovsnetTotal := 0, 0, 0, 0
	for round := range cfg.Rounds {
		names := make([]string, cfg.Ports)
		for i := range names {
			names[i] = fmt.Sprintf("st%d-%d", round, i)
			if _, err := sb.InNetns(ctx, "ip", "link", "add", names[i], "type", "veth", "peer", "name", names[i]+"p"); err != nil {
				return err
			}
			for _, n := range []string{names[i], names[i] + "p"} {
				if _, err := sb.InNetns(ctx, "ip", "link", "set", n, "up"); err != nil {
					return err
				}
			}
		}
		if err := sb.PauseVswitchd(); err != nil {
			return err
		}
		stopped := time.Now()
		type outcome struct {
			ovsnet bool
			at     time.Time
			anchor error
		}
		results := make([]outcome, cfg.Ports)
		var rw sync.WaitGroup
		for i, name := range names {
			ref := table.Expect(name)
			added, err := db.AddPort(ctx, "br-int", ovsdbc.PortSpec{Name: name})
			if err != nil {
				_ = sb.ResumeVswitchd()
				return err
			}
			ref.InterfaceUUID = added.InterfaceUUID
			rw.Add(2)
			go func() {
				defer rw.Done()
				wctx, wcancel := context.WithTimeout(ctx, cfg.Stall+time.Minute)
				defer wcancel()
				if _, err := table.WaitPort(wctx, ref, ports.Live); err == nil {
					results[i].ovsnet, results[i].at = true, time.Now()
				}
			}()
			go func() {
				defer rw.Done()
				results[i].anchor = anchorWait(ctx, db, name, cfg.AnchorTimeout)
			}()
		}
		// The stall: nothing the test waits on depends on this timer; it
		// only decides how long ovs-vswitchd stays stopped.
		t := time.NewTimer(cfg.Stall - time.Since(stopped))
		select {
		case <-t.C:
		case <-ctx.Done():
			_ = sb.ResumeVswitchd()
			return ctx.Err()
		}
		resumed := time.Now()
		if err := sb.ResumeVswitchd(); err != nil {
			return err
		}
		rw.Wait()
		for _, r := range results {
			anchorTotal++
			ovsnetTotal++
			if r.anchor == nil {
				anchorOK++
			}
			if r.ovsnet {
				ovsnetOK++
				afterCont = append(afterCont, r.at.Sub(resumed))
			}
		}
		if err := db.DeletePorts(ctx, "br-int", names...); err != nil {
			return err
		}
		for _, n := range names {
			_, _ = sb.InNetns(ctx, "ip", "link", "del", n)
		}
	}
	fmt.Fprintf(cfg.Out, "\nports added during a %s ovs-vswitchd stall (%d rounds x %d ports)\n", cfg.Stall, cfg.Rounds, cfg.Ports)
	fmt.Fprintf(cfg.Out, "  OVSDB wait on Interface.ofport, %s timeout: %d of %d ready\n", cfg.AnchorTimeout, anchorOK, anchorTotal)
	fmt.Fprintf(cfg.Out, "  ovsnet WaitPort (live), context only:    %d of %d ready\n", ovsnetOK, ovsnetTotal)
	WriteTable(cfg.Out, "ovsnet: ready after SIGCONT", []Row{{"SIGCONT -> port live known", afterCont}})
	if ovsnetOK != ovsnetTotal {
		return fmt.Errorf("%d ports never became ready in ovsnet", ovsnetTotal-ovsnetOK)
	}
	return nil
}

// anchorWait is the fixed-timeout wait compared against: one OVSDB
// transaction with a "wait" operation until the interface has a valid
// ofport, failing after timeout.
func anchorWait(ctx context.Context, db *ovsdbc.Client, name string, timeout time.Duration) error {
	ms := int(timeout / time.Millisecond)
	op := ovsdb.Operation{
		Op:      ovsdb.OperationWait,
		Table:   "Interface",
		Timeout: &ms,
		Where:   []ovsdb.Condition{{Column: "name", Function: ovsdb.ConditionEqual, Value: name}},
		Columns: []string{"ofport"},
		Until:   string(ovsdb.WaitConditionNotEqual),
		Rows:    []ovsdb.Row{{"ofport": ovsdb.OvsSet{GoSet: []any{}}}},
	}
	// The server enforces the timeout; ctx only bounds the call.
	_, err := db.Transact(ctx, op)
	return err
}

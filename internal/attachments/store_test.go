package attachments

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLifecycleAndReports(t *testing.T) {
	s := New()
	k := Key{ContainerID: "c", IfName: "eth0"}
	a, err := s.Reserve(Attachment{Key: k, HostIfName: "ovsn1"})
	if err != nil {
		t.Fatal(err)
	}
	if a.State != Pending || a.Incarnation == 0 || a.Gen == 0 {
		t.Fatalf("reserved %+v", a)
	}
	if _, err := s.Reserve(Attachment{Key: k, HostIfName: "ovsn2"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Reserve of a key: %v", err)
	}
	if _, err := s.Reserve(Attachment{Key: Key{"d", "eth0"}, HostIfName: "ovsn1"}); !errors.Is(err, ErrExists) {
		t.Fatalf("Reserve of a taken host interface: %v", err)
	}
	if got := s.TakeDirty(); len(got) != 1 || got[0] != k {
		t.Fatalf("dirty after Reserve: %v", got)
	}

	p, err := s.Update(k, a.Incarnation, func(e *Attachment) { e.State = Plumbed; e.HostIfName = "changed" })
	if err != nil {
		t.Fatal(err)
	}
	if p.Gen <= a.Gen || p.HostIfName != "ovsn1" {
		t.Fatalf("Update: gen %d after %d, host %q (must stay)", p.Gen, a.Gen, p.HostIfName)
	}
	if _, ok := s.ByHostIf("ovsn1"); !ok {
		t.Fatal("host interface index lost")
	}
	// Annotate keeps the generation and does not wake the reconciler.
	s.TakeDirty()
	n, _ := s.Annotate(k, a.Incarnation, func(e *Attachment) { e.Timeline = append(e.Timeline, Phase{Name: "x"}) })
	if n.Gen != p.Gen || len(s.TakeDirty()) != 0 {
		t.Fatal("Annotate changed the generation or marked the entry dirty")
	}

	// A report about an old generation does not satisfy FlowsIn.
	s.ReportFlows(k, a.Incarnation, a.Gen, true, nil)
	if cur, _ := s.Get(k); cur.FlowsIn() {
		t.Fatal("a report on an older generation counted")
	}
	s.ReportFlows(k, a.Incarnation, p.Gen, true, nil)
	if cur, _ := s.Get(k); !cur.FlowsIn() {
		t.Fatal("report on the current generation ignored")
	}
	// A failure keeps In and counts attempts; FlowsIn needs no error.
	s.ReportFlows(k, a.Incarnation, p.Gen, false, errors.New("boom"))
	s.ReportFlows(k, a.Incarnation, p.Gen, false, errors.New("boom"))
	if cur, _ := s.Get(k); cur.FlowsIn() || !cur.Flows.In || cur.Flows.Attempts != 2 {
		t.Fatalf("after two failures: %+v", cur.Flows)
	}
	// Older reports never overwrite newer ones.
	s.ReportFlows(k, a.Incarnation, a.Gen, false, nil)
	if cur, _ := s.Get(k); cur.Flows.Gen != p.Gen {
		t.Fatal("an older report replaced a newer one")
	}

	// A different incarnation is refused everywhere.
	if _, err := s.Update(k, a.Incarnation+100, func(*Attachment) {}); !errors.Is(err, ErrGone) {
		t.Fatalf("Update of another incarnation: %v", err)
	}
	if s.Remove(k, a.Incarnation+100) {
		t.Fatal("Remove of another incarnation")
	}
	if !s.Remove(k, a.Incarnation) || s.Has(k) {
		t.Fatal("Remove failed")
	}
	if _, ok := s.ByHostIf("ovsn1"); ok {
		t.Fatal("host interface index outlived the entry")
	}
}

func TestWaitWakesOnTheKeysChanges(t *testing.T) {
	s := New()
	k := Key{"c", "eth0"}
	a, _ := s.Reserve(Attachment{Key: k, HostIfName: "h"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Wait(ctx, k, func(cur Attachment, ok bool) (bool, error) { return ok && cur.FlowsIn(), nil })
		done <- err
	}()
	cur, _ := s.Update(k, a.Incarnation, func(e *Attachment) { e.State = Plumbed })
	s.ReportFlows(k, cur.Incarnation, cur.Gen, true, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A wait for a removed entry ends with its condition.
	go func() {
		_, err := s.Wait(ctx, k, func(_ Attachment, ok bool) (bool, error) { return !ok, nil })
		done <- err
	}()
	s.Remove(k, a.Incarnation)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	short, c2 := context.WithTimeout(ctx, 10*time.Millisecond)
	defer c2()
	if _, err := s.Wait(short, k, func(_ Attachment, ok bool) (bool, error) { return ok, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait for something that never happens: %v", err)
	}
}

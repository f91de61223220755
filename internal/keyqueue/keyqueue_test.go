package keyqueue

import (
	"context"
	"testing"
)

func TestQueueIsFIFOPerKey(t *testing.T) {
	q := New()
	ctx := context.Background()
	a1 := q.Enqueue("a")
	a2 := q.Enqueue("a")
	a3 := q.Enqueue("a")
	b1 := q.Enqueue("b")
	if err := a1.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b1.Wait(ctx); err != nil {
		t.Fatalf("another key waits: %v", err)
	}

	// a2 gives up while a1 holds the key; a3 must still wait for a1.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a2.Wait(cctx); err == nil {
		t.Fatal("a2 waited with a cancelled context")
	}
	select {
	case <-a2.done:
		t.Fatal("abandoned a2 released before a1 finished")
	default:
	}
	got := make(chan struct{})
	go func() {
		_ = a3.Wait(ctx)
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a3 ran while a1 holds the key")
	default:
	}
	a1.Release()
	<-got // a2's abandonment chain released it once a1 did
	a3.Release()
	b1.Release()
	if n := q.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

package cniserver

import (
	"context"
	"testing"
)

func TestQueueIsFIFOPerKey(t *testing.T) {
	q := newKeyedQueue()
	ctx := context.Background()
	a1 := q.enqueue("a")
	a2 := q.enqueue("a")
	a3 := q.enqueue("a")
	b1 := q.enqueue("b")
	if err := a1.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b1.wait(ctx); err != nil {
		t.Fatalf("another key waits: %v", err)
	}

	// a2 gives up while a1 holds the key; a3 must still wait for a1.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a2.wait(cctx); err == nil {
		t.Fatal("a2 waited with a cancelled context")
	}
	select {
	case <-a2.done:
		t.Fatal("abandoned a2 released before a1 finished")
	default:
	}
	got := make(chan struct{})
	go func() {
		_ = a3.wait(ctx)
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a3 ran while a1 holds the key")
	default:
	}
	a1.release()
	<-got // a2's abandonment chain released it once a1 did
	a3.release()
	b1.release()
	if n := q.size(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

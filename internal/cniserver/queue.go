package cniserver

import (
	"context"
	"sync"
)

// keyedQueue runs the holders of one key one at a time, in the order they
// enqueued, and holders of different keys independently. It is the per-sandbox
// serialisation of CNI operations: an ADD, a CHECK and a DEL of one container
// must not overlap, while other containers proceed in parallel.
//
// Each ticket waits for the channel of the ticket before it and closes its
// own when released, so the queue is strictly FIFO (sync.Mutex is not) and
// costs one channel per request. Keys without tickets are dropped from the
// map so it does not grow with every container ever seen.
type keyedQueue struct {
	mu     sync.Mutex
	queues map[string]*queue
}

type queue struct {
	tail chan struct{} // closed when the last enqueued ticket is released
	refs int           // tickets enqueued and not yet released
}

type ticket struct {
	q    *keyedQueue
	key  string
	prev chan struct{} // nil when first in line
	done chan struct{}
}

func newKeyedQueue() *keyedQueue {
	return &keyedQueue{queues: make(map[string]*queue)}
}

// enqueue takes a place in key's line. The caller must call wait and, if wait
// succeeds, release.
func (k *keyedQueue) enqueue(key string) *ticket {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.queues[key]
	if q == nil {
		q = &queue{}
		k.queues[key] = q
	}
	t := &ticket{q: k, key: key, prev: q.tail, done: make(chan struct{})}
	q.tail = t.done
	q.refs++
	return t
}

// wait blocks until every earlier ticket of the key is released, or ctx ends.
// When ctx ends first the ticket is released on the caller's behalf as soon as
// its predecessor is, so later tickets still never overlap with earlier ones.
func (t *ticket) wait(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		go func() {
			<-t.prev
			t.release()
		}()
		return ctx.Err()
	}
}

// release lets the next ticket of the key run.
func (t *ticket) release() {
	close(t.done)
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	q := t.q.queues[t.key]
	q.refs--
	if q.refs == 0 {
		delete(t.q.queues, t.key)
	}
}

// size reports the number of keys with tickets (for tests).
func (k *keyedQueue) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.queues)
}

// Package keyqueue serialises work per key: the holders of one key run one at
// a time, in the order they enqueued, and holders of different keys run
// independently. ovsnet uses one queue per agent, keyed by container id, so
// that everything that changes one pod attachment (the runtime's ADD, CHECK
// and DEL, CNI GC, garbage collection of pods Kubernetes deleted or whose
// sandbox vanished, background plumbing) takes its turn in one line, while
// other containers proceed in parallel. There is no global lock.
//
// Each ticket waits for the channel of the ticket before it and closes its
// own when released, so the queue is strictly FIFO (sync.Mutex is not) and
// costs one channel per turn. Keys without tickets are dropped from the map
// so it does not grow with every container ever seen.
package keyqueue

import (
	"context"
	"sync"
)

// Queue is a set of per-key FIFO lines. The zero value is not usable; call
// New.
type Queue struct {
	mu     sync.Mutex
	queues map[string]*line
}

type line struct {
	tail chan struct{} // closed when the last enqueued ticket is released
	refs int           // tickets enqueued and not yet released
}

// Ticket is one place in a key's line.
type Ticket struct {
	q    *Queue
	key  string
	prev chan struct{} // nil when first in line
	done chan struct{}
	once sync.Once
}

// New returns an empty queue.
func New() *Queue {
	return &Queue{queues: make(map[string]*line)}
}

// Enqueue takes a place in key's line. The caller must call Wait and, if
// Wait succeeds, Release.
func (q *Queue) Enqueue(key string) *Ticket {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.queues[key]
	if l == nil {
		l = &line{}
		q.queues[key] = l
	}
	t := &Ticket{q: q, key: key, prev: l.tail, done: make(chan struct{})}
	l.tail = t.done
	l.refs++
	return t
}

// Wait blocks until every earlier ticket of the key is released, or ctx ends.
// When ctx ends first the ticket is released on the caller's behalf as soon as
// its predecessor is, so later tickets still never overlap with earlier ones.
func (t *Ticket) Wait(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		go func() {
			<-t.prev
			t.Release()
		}()
		return ctx.Err()
	}
}

// Release lets the next ticket of the key run. Releasing twice is harmless.
func (t *Ticket) Release() {
	t.once.Do(func() {
		close(t.done)
		t.q.mu.Lock()
		defer t.q.mu.Unlock()
		l := t.q.queues[t.key]
		l.refs--
		if l.refs == 0 {
			delete(t.q.queues, t.key)
		}
	})
}

// Do runs fn in key's turn: it waits for the earlier holders (bounded by
// ctx), runs fn and releases the turn.
func (q *Queue) Do(ctx context.Context, key string, fn func() error) error {
	t := q.Enqueue(key)
	if err := t.Wait(ctx); err != nil {
		return err
	}
	defer t.Release()
	return fn()
}

// Len reports the number of keys with tickets.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queues)
}

package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// recorder keeps the agent's log records with their timestamps, so a
// benchmark can lay the agent's own milestones (gate stages, session up,
// gateway, resync) on the same clock as what it measures from outside. It
// records debug records too, except the OVSDB client's (libovsdb's debug
// output is per message and would slow the agent down).
type recorder struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	at        time.Time
	msg       string
	component string
	attrs     string
}

func (r *recorder) handler(next slog.Handler) slog.Handler {
	return &recordHandler{r: r, next: next, debug: true}
}

// since returns the events recorded at or after t.
func (r *recorder) since(t time.Time) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// first returns the time of the first of evs whose message is msg.
func first(evs []event, msg string) (time.Time, bool) {
	for _, e := range evs {
		if e.msg == msg {
			return e.at, true
		}
	}
	return time.Time{}, false
}

type recordHandler struct {
	r         *recorder
	next      slog.Handler
	debug     bool
	component string
	attrs     string
}

func (h *recordHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return (h.debug && l >= slog.LevelDebug) || l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *recordHandler) Handle(ctx context.Context, rec slog.Record) error {
	if h.debug || rec.Level >= slog.LevelInfo {
		var b strings.Builder
		b.WriteString(h.attrs)
		rec.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		h.r.mu.Lock()
		h.r.events = append(h.r.events, event{at: rec.Time, msg: rec.Message, component: h.component, attrs: b.String()})
		h.r.mu.Unlock()
	}
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *recordHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		if a.Key == "component" {
			c.component = a.Value.String()
			if c.component == "ovsdb" {
				c.debug = false
			}
			continue
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	c.attrs = b.String()
	return &c
}

func (h *recordHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

package ofconn

import (
	"fmt"
	"time"
)

// Alive reports whether the connection's receive loop makes progress, for a
// liveness probe. While a session is up something arrives at least every
// EchoInterval (the keepalive probes a silent switch, and a switch that does
// not answer ends the session within DeadTimeout), so a live session whose
// reader has read nothing for longer than bound, or an ended session whose
// goroutines have not returned within bound, means the loop is wedged.
// Without a session it returns nil: reconnecting is readiness's business.
// Give a bound well above EchoInterval + DeadTimeout.
func (c *Conn) Alive(bound time.Duration) error {
	c.mu.Lock()
	s := c.cur
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	err, ended := s.err, s.ended
	s.mu.Unlock()
	if err != nil {
		if age := time.Since(ended); age > bound {
			return fmt.Errorf("OpenFlow session %d to bridge %s ended %s ago (%v) and its reader has not returned", s.Seq, c.cfg.Bridge, age.Round(time.Millisecond), err)
		}
		return nil
	}
	last := s.start.Add(time.Duration(s.lastRecv.Load()))
	if age := time.Since(last); age > bound {
		return fmt.Errorf("OpenFlow reader of bridge %s has read nothing for %s on a live session (keepalive every %s)", c.cfg.Bridge, age.Round(time.Millisecond), c.cfg.EchoInterval)
	}
	return nil
}

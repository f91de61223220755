package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// prober sends a numbered UDP datagram from one pod to an echo socket in
// another every interval and timestamps each send and each echo, so a
// traffic gap is measured to the datagram instead of to ping's output.
// Sockets keep the namespace they were created in: only their creation runs
// inside the pods' namespaces.
type prober struct {
	interval time.Duration
	client   *net.UDPConn
	echo     *net.UDPConn

	mu      sync.Mutex
	sent    []time.Time // by sequence number
	recv    []time.Time // zero: no echo (yet)
	nrecv   int
	changed chan struct{} // closed and replaced on every echo

	wg sync.WaitGroup
}

const probePort = 7777

func newProber(srcNetns, dstNetns, dstIP string, interval time.Duration) (*prober, error) {
	p := &prober{interval: interval, changed: make(chan struct{})}
	err := ns.WithNetNSPath(dstNetns, func(ns.NetNS) error {
		var err error
		p.echo, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(dstIP), Port: probePort})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("echo socket in %s: %w", dstNetns, err)
	}
	err = ns.WithNetNSPath(srcNetns, func(ns.NetNS) error {
		var err error
		p.client, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(dstIP), Port: probePort})
		return err
	})
	if err != nil {
		p.echo.Close()
		return nil, fmt.Errorf("probe socket in %s: %w", srcNetns, err)
	}
	return p, nil
}

// run sends until ctx ends, then closes the sockets and waits for its
// goroutines.
func (p *prober) run(ctx context.Context) {
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			n, from, err := p.echo.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = p.echo.WriteToUDP(buf[:n], from)
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := p.client.Read(buf)
			at := time.Now()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// ECONNREFUSED and the like from ICMP errors: keep reading.
				continue
			}
			if n < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			p.mu.Lock()
			if seq < uint64(len(p.recv)) && p.recv[seq].IsZero() {
				p.recv[seq] = at
				p.nrecv++
				close(p.changed)
				p.changed = make(chan struct{})
			}
			p.mu.Unlock()
		}
	}()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	buf := make([]byte, 8)
	for {
		select {
		case <-ctx.Done():
			p.client.Close()
			p.echo.Close()
			p.wg.Wait()
			return
		case <-t.C:
		}
		p.mu.Lock()
		seq := uint64(len(p.sent))
		p.sent = append(p.sent, time.Now())
		p.recv = append(p.recv, time.Time{})
		p.mu.Unlock()
		binary.BigEndian.PutUint64(buf, seq)
		// A send can fail while the path is down (no neighbour yet): the
		// datagram counts as lost.
		_, _ = p.client.Write(buf)
	}
}

// waitEchoes waits until n more echoes than now have arrived, for sends made
// after after.
func (p *prober) waitEchoes(ctx context.Context, after time.Time, n int) error {
	for {
		p.mu.Lock()
		got := 0
		for i := len(p.sent) - 1; i >= 0 && p.sent[i].After(after); i-- {
			if !p.recv[i].IsZero() {
				got++
			}
		}
		ch := p.changed
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d echoes of probes sent after %s (got %d): %w",
				n, after.Format(time.StampMicro), got, ctx.Err())
		}
	}
}

// outage describes the traffic interruption around one instant (a kill).
type outage struct {
	// lastBefore is the last echo received before the instant; firstAfter
	// the first echo received of a probe sent after it.
	lastBefore, firstAfter time.Time
	// lost counts the probes between those two that never got an echo;
	// late those whose echo came after firstAfter (held somewhere rather
	// than dropped), maxLateRTT the longest such round trip.
	lost, late int
	maxLateRTT time.Duration
	// maxSendGap is the longest time between two sends in the outage:
	// far above the interval, the prober itself was not scheduled (a
	// loaded machine), and the first echo says more about it than about
	// the switch.
	maxSendGap time.Duration
}

func (p *prober) outage(at time.Time) (outage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var o outage
	last, first := -1, -1
	for i, r := range p.recv {
		if r.IsZero() {
			continue
		}
		if r.Before(at) && (last < 0 || r.After(p.recv[last])) {
			last = i
		}
		if p.sent[i].After(at) && (first < 0 || r.Before(p.recv[first])) {
			first = i
		}
	}
	if last < 0 || first < 0 {
		return o, fmt.Errorf("no echo before (%v) or after (%v) %s", last >= 0, first >= 0, at.Format(time.StampMicro))
	}
	o.lastBefore, o.firstAfter = p.recv[last], p.recv[first]
	for i := last + 1; i <= first; i++ {
		o.maxSendGap = max(o.maxSendGap, p.sent[i].Sub(p.sent[i-1]))
	}
	for i := last + 1; i < first; i++ {
		if r := p.recv[i]; r.IsZero() {
			o.lost++
		} else if r.After(o.firstAfter) {
			o.late++
			o.maxLateRTT = max(o.maxLateRTT, r.Sub(p.sent[i]))
		}
	}
	return o, nil
}

// firstEchoAfter returns the earliest echo of a probe sent after t (zero:
// none yet).
func (p *prober) firstEchoAfter(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for i, r := range p.recv {
		if !r.IsZero() && p.sent[i].After(t) && (first.IsZero() || r.Before(first)) {
			first = r
		}
	}
	return first
}

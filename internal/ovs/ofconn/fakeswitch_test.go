//go:build unix

package ofconn

import (
	"errors"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
	"github.com/ovsnet/ovsnet/internal/ovs/ovsdb/vswitch"
)

// badPriority marks a flow the fake switch rejects, as OVS rejects a flow
// with a missing match prerequisite.
const badPriority = 666

// errBadPrereq is the ERROR OVS sends for such a flow.
var errBadPrereq = &openflow.ErrorMsg{ErrType: openflow.ErrBadMatch, Code: 9}

// fakeSwitch is an in-process OpenFlow 1.3 switch on a unix socket. Each
// accepted connection is a fakePeer that answers the requests the
// connection makes by default; a test changes behaviour with handle.
type fakeSwitch struct {
	t     *testing.T
	path  string
	ln    net.Listener
	peers chan *fakePeer
	wg    sync.WaitGroup

	mu     sync.Mutex
	hello  []openflow.Message // sent on accept; default a 1.3 HELLO
	dpid   uint64
	ports  []openflow.Port
	flows  []openflow.FlowStats
	handle func(p *fakePeer, m openflow.Message) bool
	all    []*fakePeer
}

func newFakeSwitch(t *testing.T) *fakeSwitch {
	t.Helper()
	path := filepath.Join(t.TempDir(), "br-fake.mgmt")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	sw := &fakeSwitch{t: t, path: path, ln: ln, peers: make(chan *fakePeer, 64), dpid: 0xabcdef0123}
	sw.wg.Add(1)
	go sw.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		sw.mu.Lock()
		for _, p := range sw.all {
			_ = p.c.Close()
		}
		sw.mu.Unlock()
		sw.wg.Wait()
	})
	return sw
}

func (sw *fakeSwitch) set(f func(sw *fakeSwitch)) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	f(sw)
}

func (sw *fakeSwitch) accept() {
	defer sw.wg.Done()
	for {
		c, err := sw.ln.Accept()
		if err != nil {
			return
		}
		p := &fakePeer{sw: sw, c: c, got: make(chan openflow.Message, 1024)}
		sw.mu.Lock()
		sw.all = append(sw.all, p)
		sw.mu.Unlock()
		sw.wg.Add(1)
		go p.serve()
		select {
		case sw.peers <- p:
		default:
		}
	}
}

// nextPeer returns the next accepted connection.
func (sw *fakeSwitch) nextPeer() *fakePeer {
	sw.t.Helper()
	select {
	case p := <-sw.peers:
		return p
	case <-time.After(10 * time.Second):
		sw.t.Fatal("no connection to the fake switch")
		return nil
	}
}

type fakePeer struct {
	sw  *fakeSwitch
	c   net.Conn
	wmu sync.Mutex
	// silent: read and record, answer nothing (a stopped switch).
	silent atomic.Bool
	// got records what the switch received, in order.
	got chan openflow.Message
}

func (p *fakePeer) send(msgs ...openflow.Message) {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.AppendBinary(b); err != nil {
			p.sw.t.Errorf("fake switch: encode %T: %v", m, err)
			return
		}
	}
	p.sendRaw(b)
}

func (p *fakePeer) sendRaw(b []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = p.c.Write(b)
}

func (p *fakePeer) serve() {
	defer p.sw.wg.Done()
	defer p.c.Close()
	p.sw.mu.Lock()
	hello := p.sw.hello
	p.sw.mu.Unlock()
	if hello == nil {
		hello = []openflow.Message{openflow.NewHello(openflow.Version13)}
	}
	p.send(hello...)
	r := openflow.NewReader(p.c)
	for {
		m, err := r.ReadMessage()
		if err != nil {
			var de *openflow.DecodeError
			if errors.As(err, &de) {
				p.sw.t.Errorf("fake switch received an undecodable message: %v", err)
				continue
			}
			return
		}
		select {
		case p.got <- m:
		default:
		}
		if p.silent.Load() {
			continue
		}
		p.sw.mu.Lock()
		h := p.sw.handle
		p.sw.mu.Unlock()
		if h != nil && h(p, m) {
			continue
		}
		p.answer(m)
	}
}

// answer is the default behaviour: what OVS would say.
func (p *fakePeer) answer(m openflow.Message) {
	hdr := openflow.Header{Xid: m.XID()}
	p.sw.mu.Lock()
	dpid, ports, flows := p.sw.dpid, p.sw.ports, p.sw.flows
	p.sw.mu.Unlock()
	switch m := m.(type) {
	case *openflow.FeaturesRequest:
		p.send(&openflow.FeaturesReply{Header: hdr, DatapathID: dpid, NTables: 254})
	case *openflow.BarrierRequest:
		p.send(&openflow.BarrierReply{Header: hdr})
	case *openflow.EchoRequest:
		p.send(m.Reply())
	case *openflow.PortDescRequest:
		p.send(portDescParts(m.Xid, ports, 2)...)
	case *openflow.FlowStatsRequest:
		var parts []openflow.Message
		for i := 0; i < len(flows) || i == 0; i += 2 {
			r := &openflow.FlowStatsReply{Header: hdr, Flows: flows[i:min(i+2, len(flows))]}
			if i+2 < len(flows) {
				r.Flags = openflow.MultipartMore
			}
			parts = append(parts, r)
		}
		p.send(parts...)
	case *openflow.BundleControl:
		p.send(&openflow.BundleControl{Header: hdr, BundleID: m.BundleID, CtrlType: m.CtrlType + 1, Flags: m.Flags})
	case *openflow.BundleAdd:
		if fm, ok := m.Message.(*openflow.FlowMod); ok && fm.Priority == badPriority {
			p.reject(m, errBadPrereq)
		}
	case *openflow.FlowMod:
		if m.Priority == badPriority {
			p.reject(m, errBadPrereq)
		}
	}
}

// reject answers m with an ERROR like e, carrying m's first bytes.
func (p *fakePeer) reject(m openflow.Message, e *openflow.ErrorMsg) {
	raw, _ := openflow.Encode(m)
	p.send(&openflow.ErrorMsg{Header: openflow.Header{Xid: m.XID()}, ErrType: e.ErrType, Code: e.Code,
		Experimenter: e.Experimenter, Data: raw[:min(len(raw), 64)]})
}

// portDescParts splits a port dump into parts of per ports.
func portDescParts(xid uint32, ports []openflow.Port, per int) []openflow.Message {
	var parts []openflow.Message
	for i := 0; i < len(ports) || i == 0; i += per {
		r := &openflow.PortDescReply{Header: openflow.Header{Xid: xid}, Ports: ports[i:min(i+per, len(ports))]}
		if i+per < len(ports) {
			r.Flags = openflow.MultipartMore
		}
		parts = append(parts, r)
	}
	return parts
}

// waitFor reads what the switch received until match, failing after a
// generous bound so a broken connection fails the test instead of hanging it.
func (p *fakePeer) waitFor(t *testing.T, what string, match func(openflow.Message) bool) openflow.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-p.got:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("fake switch never received %s", what)
			return nil
		}
	}
}

// fakeDB is an empty OVSDB cache: unit tests exercise the OpenFlow side.
type fakeDB struct{ changed chan struct{} }

func newFakeDB() *fakeDB { return &fakeDB{changed: make(chan struct{})} }

func (f *fakeDB) InterfaceByUUID(string) (vswitch.Interface, bool, error) {
	return vswitch.Interface{}, false, nil
}
func (f *fakeDB) Changed() <-chan struct{}       { return f.changed }
func (f *fakeDB) OnInterfaceChange(func(string)) {}

func fakePort(no uint32, name string, state openflow.PortState) openflow.Port {
	return openflow.Port{PortNo: no, Name: name, HWAddr: [6]byte{2, 0, 0, 0, byte(no >> 8), byte(no)}, State: state}
}

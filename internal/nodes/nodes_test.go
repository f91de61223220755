package nodes

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ps, err := Parse([]byte("peers:\n  - name: b\n    nodeIP: 172.31.0.2\n    podCIDRs: [10.1.2.0/24]\n  - name: a\n    nodeIP: 172.31.0.1\n    podCIDRs: [10.1.1.0/24]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "a" || ps[1].NodeIP != netip.MustParseAddr("172.31.0.2") {
		t.Fatalf("parsed %+v", ps)
	}
	for name, doc := range map[string]string{
		"unknown field": "peers:\n  - name: a\n    address: 1.2.3.4\n",
		"bad address":   "peers:\n  - name: a\n    nodeIP: nope\n",
		"bad cidr":      "peers:\n  - name: a\n    nodeIP: 1.2.3.4\n    podCIDRs: [10.0.0.0/33]\n",
		"no name":       "peers:\n  - nodeIP: 1.2.3.4\n",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestValidate(t *testing.T) {
	local := netip.MustParsePrefix("10.1.1.0/24")
	me := netip.MustParseAddr("172.31.0.1")
	p := func(name, ip string, cidrs ...string) Peer {
		out := Peer{Name: name, NodeIP: netip.MustParseAddr(ip)}
		for _, c := range cidrs {
			out.PodCIDRs = append(out.PodCIDRs, netip.MustParsePrefix(c))
		}
		return out
	}
	if err := Validate([]Peer{p("b", "172.31.0.2", "10.1.2.0/24"), p("c", "172.31.0.3", "10.1.3.0/24")}, local, me); err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string][]Peer{
		"overlaps local":    {p("b", "172.31.0.2", "10.1.0.0/16")},
		"own address":       {p("b", "172.31.0.1", "10.1.2.0/24")},
		"same address":      {p("b", "172.31.0.2", "10.1.2.0/24"), p("c", "172.31.0.2", "10.1.3.0/24")},
		"overlapping peers": {p("b", "172.31.0.2", "10.1.2.0/24"), p("c", "172.31.0.3", "10.1.2.128/25")},
		"twice":             {p("b", "172.31.0.2", "10.1.2.0/24"), p("b", "172.31.0.3", "10.1.3.0/24")},
		"no cidr":           {p("b", "172.31.0.2")},
	} {
		if err := Validate(set, local, me); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The file source sees a replacement by rename, keeps the last good set on
// a broken file, and treats a missing file as no peers.
func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "peers.yaml")
	write := func(s string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("peers:\n  - name: b\n    nodeIP: 172.31.0.2\n    podCIDRs: [10.1.2.0/24]\n")
	f := NewFile(path, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	wait := func(what string, cond func([]Peer, bool) bool) {
		t.Helper()
		for {
			ch := f.Changed()
			if ps, ok := f.Peers(); cond(ps, ok) {
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v (err %v)", what, ctx.Err(), f.Err())
			}
		}
	}
	wait("the first read", func(ps []Peer, ok bool) bool { return ok && len(ps) == 1 })
	write("peers:\n  - name: b\n    nodeIP: 172.31.0.2\n    podCIDRs: [10.1.2.0/24]\n  - name: c\n    nodeIP: 172.31.0.3\n    podCIDRs: [10.1.3.0/24]\n")
	wait("the second peer", func(ps []Peer, ok bool) bool { return len(ps) == 2 })
	ch := f.Changed()
	write("peers: [ {name: ")
	for f.Err() == nil {
		select {
		case <-ctx.Done():
			t.Fatal("a broken file was not noticed")
		case <-time.After(10 * time.Millisecond): // the error is not an event: poll it, bounded by ctx
		}
	}
	select {
	case <-ch:
		t.Fatal("a broken file changed the peer set")
	default:
	}
	if ps, _ := f.Peers(); len(ps) != 2 || !strings.Contains(f.Err().Error(), "peers.yaml") {
		t.Fatalf("after a broken file: %d peers, err %v", len(ps), f.Err())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wait("no peers after the file went", func(ps []Peer, ok bool) bool { return ok && len(ps) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

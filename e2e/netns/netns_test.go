package netns

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/testenv"
)

// A listener made inside a fresh namespace is reachable only from there:
// a dialer into that namespace connects to its loopback, the host's
// loopback does not answer on that port.
func TestDialAndListenInNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	name := "e2enetns-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	path := "/run/netns/" + name
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	l, err := Listen(ctx, path, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("inside"))
		_ = c.Close()
	}()
	addr := l.Addr().String()

	if c, err := (Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dialled %s from the host namespace: the listener is not in %s", addr, name)
	}
	c, err := Dialer{Path: path}.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "inside" {
		t.Fatalf("read %q, %v; want %q", b, err, "inside")
	}
}

package unixctl

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRequestWireFormat pins the bytes the daemon expects: params is always
// an array (ovs-vswitchd rejects null) and ids count up per client.
func TestRequestWireFormat(t *testing.T) {
	dir, err := os.MkdirTemp("", "ovsnet-unixctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "raw.ctl")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })

	got := make(chan string, 2)
	go func() {
		replies := []string{
			`{"id":1,"result":"ovs-vswitchd (Open vSwitch) 3.1.0\n","error":null}`,
			`{"id":2,"error":"no such bridge\n"}`,
		}
		for _, rep := range replies {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			n, _ := conn.Read(buf)
			got <- string(buf[:n])
			_, _ = conn.Write([]byte(rep))
			_ = conn.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := New(Config{Socket: path})
	if out, err := c.Call(ctx, "version"); err != nil || out != "ovs-vswitchd (Open vSwitch) 3.1.0\n" {
		t.Fatalf("version = %q, %v", out, err)
	}
	if req := <-got; req != `{"method":"version","params":[],"id":1}` {
		t.Errorf("request = %s", req)
	}
	_, err = c.Call(ctx, "dpif/show-dp-features", "br-x")
	if !errors.Is(err, ErrNoSuchBridge) {
		t.Errorf("error %v, want ErrNoSuchBridge", err)
	}
	var ce *CommandError
	if errors.As(err, &ce) && strings.HasSuffix(ce.Text, "\n") {
		t.Errorf("Text keeps the daemon's newline: %q", ce.Text)
	}
	if req := <-got; req != `{"method":"dpif/show-dp-features","params":["br-x"],"id":2}` {
		t.Errorf("request = %s", req)
	}
}

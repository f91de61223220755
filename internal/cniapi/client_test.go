package cniapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

const testWait = 30 * time.Second

func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ovsnet-cniapi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "cni.sock")
}

// serve runs h on a fresh unix socket and returns its path.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return sock
}

func code(t *testing.T, err error) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v (%T) is not a CNI error", err, err)
	}
	return e
}

func req() *cniapi.Request {
	return &cniapi.Request{CNIVersion: "1.1.0", ContainerID: "c", IfName: "eth0", Netns: "/run/netns/x", NetConf: []byte(`{}`)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return c
}

func TestUnreachableAgentIsTryAgainLater(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.sock")
	stale := socketPath(t)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	_ = l.Close() // the file stays, nobody listens: connection refused

	for name, sock := range map[string]string{"absent": missing, "refused": stale} {
		c := cniapi.NewClient(sock)
		_, err := c.Add(ctx(t), req())
		e := code(t, err)
		if e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, sock) {
			t.Errorf("%s: %+v, want code 11 naming the socket", name, e)
		}
		if err := c.Status(ctx(t), &cniapi.StatusRequest{}); code(t, err).Code != types.ErrTryAgainLater {
			t.Errorf("%s: STATUS transport failure: %v", name, err)
		}
	}
}

func TestSlowAgentIsTryAgainLater(t *testing.T) {
	sawTimeout := make(chan string, 1)
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		sawTimeout <- r.Header.Get(cniapi.HeaderTimeout)
		<-r.Context().Done() // never answers; the client gives up
	})
	c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := cniapi.NewClient(sock).Del(c, req())
	if e := code(t, err); e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "in time") {
		t.Fatalf("%+v", e)
	}
	h := <-sawTimeout
	d, perr := cniapi.ParseTimeoutHeader(h)
	if perr != nil || d <= 0 || d > 500*time.Millisecond {
		t.Fatalf("timeout header %q (%v), want a positive value below the client's 500ms", h, perr)
	}
}

func TestAgentErrorsPassThrough(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"code":77,"msg":"port vanished","details":"ovs said no"}`))
	})
	err := cniapi.NewClient(sock).Check(ctx(t), req())
	if e := code(t, err); e.Code != 77 || e.Msg != "port vanished" || e.Details != "ovs said no" {
		t.Fatalf("%+v", e)
	}
}

func TestProtocolErrors(t *testing.T) {
	cases := map[string]http.HandlerFunc{
		"not found": func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
		"html 502": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>bad gateway</html>"))
		},
		"bad result": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"cniVersion":"1.1.0","ips":[{"address":"nonsense"}]}`))
		},
		"old result version": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"cniVersion":"0.2.0"}`))
		},
		"huge": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"cniVersion":"1.1.0","dns":{"domain":"` + strings.Repeat("x", 5<<20) + `"}}`))
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			sock := serve(t, h)
			_, err := cniapi.NewClient(sock).Add(ctx(t), req())
			if e := code(t, err); e.Code != cniapi.CodeProtocol {
				t.Fatalf("%+v, want code %d", e, cniapi.CodeProtocol)
			}
		})
	}
}

func TestAddResultIsCurrentVersion(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != cniapi.PathAdd || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"cniVersion":"1.0.0","ips":[{"address":"10.244.0.9/24","gateway":"10.244.0.1"}]}`))
	})
	res, err := cniapi.NewClient(sock).Add(ctx(t), req())
	if err != nil {
		t.Fatal(err)
	}
	if res.CNIVersion != cniapi.CurrentCNIVersion || res.IPs[0].Address.String() != "10.244.0.9/24" {
		t.Fatalf("%+v", res)
	}
}

func TestTimeoutHeader(t *testing.T) {
	if got := cniapi.TimeoutHeaderValue(1500 * time.Microsecond); got != "2ms" {
		t.Errorf("rounding: %s", got)
	}
	for _, bad := range []string{"", "x", "0s", "-1s", "25h"} {
		if _, err := cniapi.ParseTimeoutHeader(bad); err == nil {
			t.Errorf("ParseTimeoutHeader(%q) accepted", bad)
		}
	}
	if d, err := cniapi.ParseTimeoutHeader("118s"); err != nil || d != 118*time.Second {
		t.Errorf("118s: %v %v", d, err)
	}
	if b := cniapi.AgentBudget(2 * time.Minute); b != 2*time.Minute-2*time.Second {
		t.Errorf("budget of 2m: %v", b)
	}
	if b := cniapi.AgentBudget(time.Second); b != 900*time.Millisecond {
		t.Errorf("budget of 1s: %v", b)
	}
}

func TestRequestValidate(t *testing.T) {
	ok := req()
	for _, v := range []cniapi.Verb{cniapi.VerbAdd, cniapi.VerbDel} {
		if err := ok.Validate(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	if err := ok.Validate(cniapi.VerbCheck); code(t, err).Code != types.ErrInvalidNetworkConfig {
		t.Errorf("CHECK without prevResult: %v", err)
	}
	del := req()
	del.Netns = ""
	if err := del.Validate(cniapi.VerbDel); err != nil {
		t.Errorf("DEL without netns: %v", err)
	}
	if err := del.Validate(cniapi.VerbAdd); code(t, err).Code != types.ErrInvalidEnvironmentVariables {
		t.Errorf("ADD without netns: %v", err)
	}
}

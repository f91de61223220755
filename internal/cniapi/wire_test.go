package cniapi

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve answers every connection on a fresh socket with raw bytes.
func serve(t *testing.T, answer string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Consume the request before answering, as a server does.
				_, _ = http.ReadRequest(bufio.NewReader(c))
				_, _ = c.Write([]byte(answer))
			}()
		}
	}()
	return sock
}

func TestRoundTripAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		answer  string
		status  int
		body    string
		errPart string
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 200, "abc", ""},
		{"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}", 503, "{}", ""},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0, "", "chunked"},
		{"HTTP/1.1 200 OK\r\n\r\nabc", 0, "", "chunked"},
		{"SSH-2.0-OpenSSH\r\n\r\n", 0, "", "status line"},
		{"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", 0, "", "bad status"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", 0, "", "exceeds"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, "", "read body"},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "", "Content-Length"},
	} {
		sock := serve(t, tc.answer)
		status, body, err := roundTrip(ctx, sock, "POST", PathStatus, map[string]string{"X": "y"}, []byte("{}"))
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("%q: err %v, want %q", tc.answer, err, tc.errPart)
			}
			continue
		}
		if err != nil || status != tc.status || string(body) != tc.body {
			t.Errorf("%q: %d %q %v", tc.answer, status, body, err)
		}
	}
}

func TestRoundTripDeadline(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c // never answers
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err = roundTrip(ctx, sock, "POST", PathAdd, nil, nil)
	if err != context.DeadlineExceeded {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	(<-held).Close()
	if _, _, err := roundTrip(context.Background(), sock, "POST", PathAdd, map[string]string{"Bad": "a\r\nb"}, nil); err == nil {
		t.Fatal("header with a line break accepted")
	}
}

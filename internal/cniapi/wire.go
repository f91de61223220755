package cniapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
)

// The plugin is exec'd by the runtime for every CNI call, so its start-up
// cost is paid on every pod: on the machines ovsnet was measured on, each page
// a fresh process touches costs ~50 us, and net/http's client alone made the
// plugin ~4 ms slower per call. The plugin therefore speaks the one HTTP/1.1
// exchange it needs itself: one request per connection, Content-Length
// bodies both ways (the agent always sets it), "Connection: close".

const maxHeaderBytes = 64 << 10

// errChunked: the agent answered without a length, which this client does
// not read; every ovsnet agent sets Content-Length.
var errChunked = errors.New("answer without Content-Length (chunked); not an ovsnet agent answer")

// roundTrip sends one request over a new connection to socket and returns
// the answer's status and body.
func roundTrip(ctx context.Context, socket, method, path string, header map[string]string, body []byte) (int, []byte, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancellation closes the connection, which ends a blocked read or write.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: ovsnet-agent\r\nUser-Agent: ovsnet-cni\r\nConnection: close\r\nContent-Length: %d\r\n", method, path, len(body))
	for k, v := range header {
		if strings.ContainsAny(k+v, "\r\n") {
			return 0, nil, fmt.Errorf("header %q has a line break", k)
		}
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, nil, ctxErr(ctx, err)
	}

	br := bufio.NewReader(io.LimitReader(conn, maxHeaderBytes+maxResponseBytes+1))
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return 0, nil, ctxErr(ctx, fmt.Errorf("read status line: %w", err))
	}
	status, err := parseStatusLine(line)
	if err != nil {
		return 0, nil, err
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, nil, ctxErr(ctx, fmt.Errorf("read headers: %w", err))
	}
	if te := hdr.Get("Transfer-Encoding"); te != "" && !strings.EqualFold(te, "identity") {
		return 0, nil, errChunked
	}
	cl := hdr.Get("Content-Length")
	if cl == "" {
		return 0, nil, errChunked
	}
	n, err := strconv.ParseInt(cl, 10, 64)
	if err != nil || n < 0 {
		return 0, nil, fmt.Errorf("bad Content-Length %q", cl)
	}
	if n > maxResponseBytes {
		return 0, nil, fmt.Errorf("answer of %d bytes exceeds %d", n, maxResponseBytes)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(br, data); err != nil {
		return 0, nil, ctxErr(ctx, fmt.Errorf("read body: %w", err))
	}
	return status, data, nil
}

// parseStatusLine reads "HTTP/1.1 200 OK".
func parseStatusLine(line string) (int, error) {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, fmt.Errorf("not an HTTP/1.x status line: %q", shorten(line))
	}
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if err != nil || status < 100 || status > 999 {
		return 0, fmt.Errorf("bad status in %q", shorten(line))
	}
	return status, nil
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ctxErr prefers the context's error: a read that failed because the
// deadline closed the connection is a timeout, not a broken agent.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return context.DeadlineExceeded
	}
	return err
}

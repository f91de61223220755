// Command e2e-forward gives host-side tools (kubectl, the e2e suite,
// e2e.test) a loopback address for a TCP service that lives in another
// network namespace: the multi-node e2e cluster's API server, which runs in
// the control plane's namespace so that no cluster traffic touches the
// host's own interfaces.
//
//	e2e-forward -listen 127.0.0.1:16443 -netns /run/netns/e2emn-cp -to 172.31.251.1:6443
//
// Every accepted connection is matched with one dialled inside the
// namespace; bytes are copied both ways until both sides have closed. It
// runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/ovsnet/ovsnet/e2e/netns"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, os.Args[1:]); err != nil {
		log.Error("e2e-forward failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("e2e-forward", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:16443", "address to listen on, in this process's network namespace")
	path := fs.String("netns", "", "network namespace to dial in (a file such as /run/netns/NAME)")
	to := fs.String("to", "", "host:port to connect every accepted connection to, inside -netns")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *to == "" || fs.NArg() > 0 {
		return errors.New("usage: e2e-forward -listen ADDR -netns PATH -to HOST:PORT")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log.Info("forwarding", "listen", l.Addr().String(), "netns", *path, "to", *to)
	return serve(ctx, log, l, netns.Dialer{Path: *path}, *to)
}

// serve accepts until ctx ends, then closes the listener and every open
// connection and waits for their copies to return.
func serve(ctx context.Context, log *slog.Logger, l net.Listener, d netns.Dialer, to string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			forward(ctx, log, c, d, to)
		}()
	}
}

func forward(ctx context.Context, log *slog.Logger, c net.Conn, d netns.Dialer, to string) {
	defer c.Close()
	up, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		log.Warn("cannot reach the target; closing the client's connection", "client", c.RemoteAddr().String(), "err", err)
		return
	}
	defer up.Close()
	// Closing both ends when ctx ends unblocks the copies.
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(up, c) }()
	go func() { defer wg.Done(); pipe(c, up) }()
	wg.Wait()
}

// pipe copies src to dst, then half-closes dst so the peer sees the end of
// the stream while the other direction may still carry data.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

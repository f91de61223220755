// Command e2e-nettool is the program of the e2e cluster's nettool image
// (ovsnet-e2e.local/nettool:1), the server and the client of the suite's
// Service tests. Every client subcommand prints what it got on standard
// output and exits 0, or prints why it failed on standard error and exits
// 1, so a test shows what a pod saw.
//
//	nettool serve [-http 8080] [-udp 9000]
//	    answer every HTTP request and every UDP datagram with the pod's host
//	    name (its pod name), until SIGTERM
//	nettool http [-timeout 3s] URL
//	    GET URL, print the body
//	nettool udp [-timeout 3s] HOST:PORT
//	    send one datagram, print the reply
//	nettool resolve [-timeout 3s] NAME
//	    resolve NAME with the pod's /etc/resolv.conf (search path, ndots)
//	    and print its IPv4 addresses, one per line
//	nettool kube-namespaces [-timeout 10s]
//	    build client-go's in-cluster configuration (Service kubernetes from
//	    KUBERNETES_SERVICE_HOST/PORT, the pod's service account token and
//	    CA), as a controller does, list the namespaces and print their names
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nettool serve|http|udp|resolve|kube-namespaces [flags] [ARG]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "deadline of the request")
	httpPort := fs.Int("http", 8080, "serve: HTTP port")
	udpPort := fs.Int("udp", 9000, "serve: UDP port")
	if cmd == "kube-namespaces" {
		*timeout = 10 * time.Second
	}
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	switch cmd {
	case "serve":
		err = serve(*httpPort, *udpPort)
	case "http":
		err = withArg(fs, func(a string) error { return getHTTP(ctx, a) })
	case "udp":
		err = withArg(fs, func(a string) error { return queryUDP(ctx, a) })
	case "resolve":
		err = withArg(fs, func(a string) error { return resolve(ctx, a) })
	case "kube-namespaces":
		err = kubeNamespaces(ctx)
	default:
		err = fmt.Errorf("unknown subcommand %q: want serve, http, udp, resolve or kube-namespaces", cmd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nettool %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func withArg(fs *flag.FlagSet, f func(string) error) error {
	if fs.NArg() != 1 {
		return fmt.Errorf("want exactly one argument, got %q", fs.Args())
	}
	return f(fs.Arg(0))
}

func serve(httpPort, udpPort int) error {
	name, err := os.Hostname()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", httpPort))
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", udpPort))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errs := make(chan error, 2)
	go func() { errs <- srv.Serve(ln) }()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				errs <- err
				return
			}
			// A reply lost is the client's timeout to report.
			_, _ = pc.WriteTo([]byte(name+"\n"), from)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
		return nil
	case err := <-errs:
		return err
	}
}

func getHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	fmt.Print(string(b))
	return nil
}

func queryUDP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return fmt.Errorf("send to %s: %w", addr, err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("no reply from %s before the deadline", addr)
		}
		return fmt.Errorf("reply from %s: %w", addr, err)
	}
	fmt.Print(string(buf[:n]))
	return nil
}

func resolve(ctx context.Context, name string) error {
	addrs, err := net.DefaultResolver.LookupIP(ctx, "ip4", name)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}

func kubeNamespaces(ctx context.Context) error {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("in-cluster configuration: %w", err)
	}
	cfg.UserAgent = "ovsnet-e2e-nettool"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list namespaces through %s: %w", cfg.Host, err)
	}
	for _, ns := range list.Items {
		fmt.Println(ns.Name)
	}
	return nil
}

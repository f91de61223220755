// Command e2e-podbench measures pod creation -> Ready latency on the e2e
// cluster: N pods are created at once, and a watch started before the
// first creation timestamps each pod's Ready locally (the API's timestamps
// have second resolution). Run once per CNI, then compare:
//
//	e2e-podbench run --pods 30 --rounds 3 --label ovsnet --agent 127.0.0.1:9364 --out ovsnet.json
//	e2e-podbench run --pods 30 --rounds 3 --label bridge --out bridge.json
//	e2e-podbench compare --target-ms 20 ovsnet.json bridge.json
//
// With --agent, the agent's per-phase ADD timeline (/v1/pods) of the
// measured pods is summarised beside, to show where ovsnet's time goes.
// e2e/run.sh bench (make bench-e2e) does all of it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ovsnet/ovsnet/e2e/framework"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, errMissed) {
			os.Exit(2)
		}
		slog.Error("e2e-podbench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: e2e-podbench run|compare [flags]")
	}
	switch args[0] {
	case "run":
		return runBench(ctx, args[1:], out)
	case "compare":
		return runCompare(args[1:], out)
	default:
		return fmt.Errorf("unknown command %q: want run or compare", args[0])
	}
}

func runBench(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	pods := fs.Int("pods", 30, "pods created at once per round")
	rounds := fs.Int("rounds", 3, "measured rounds")
	warmup := fs.Int("warmup", 1, "rounds run first and not counted (first use of the image's snapshot, caches)")
	label := fs.String("label", "", "name of the CNI under test, e.g. ovsnet or bridge")
	agent := fs.String("agent", "", "ovsnet agent's health address: add its ADD timeline to the result")
	outFile := fs.String("out", "", "write the result as JSON to this file")
	appendTo := fs.Bool("append", false, "add this run's rounds to the result already in --out (several cycles of clusters)")
	timeout := fs.Duration("timeout", 5*time.Minute, "deadline of each round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *label == "" || *pods < 1 || *rounds < 1 || *warmup < 0 {
		return errors.New("run needs --label, --pods >= 1, --rounds >= 1, --warmup >= 0")
	}
	c, err := framework.LoadCluster()
	if err != nil {
		return err
	}
	b := &Bench{Cluster: c, Pods: *pods, Timeout: *timeout, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if *agent != "" {
		b.Agent = framework.NewAgentClient(*agent)
	}
	var prev *Result
	if *appendTo && *outFile != "" {
		if data, err := os.ReadFile(*outFile); err == nil {
			prev = &Result{}
			if err := json.Unmarshal(data, prev); err != nil {
				return fmt.Errorf("result %s: %w", *outFile, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read result: %w", err)
		}
	}
	res, err := b.Run(ctx, prev, *label, *warmup, *rounds)
	if err != nil {
		return err
	}
	res.Print(out)
	if *outFile != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*outFile, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write result: %w", err)
		}
	}
	return nil
}

// errMissed: the comparison ran, and the CNI under test missed the target.
var errMissed = errors.New("target missed")

func runCompare(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	target := fs.Float64("target-ms", 20, "most the CNI under test may add over the floor at p50, in milliseconds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: e2e-podbench compare [--target-ms N] UNDER-TEST.json FLOOR.json")
	}
	var rs [2]Result
	for i, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read result: %w", err)
		}
		if err := json.Unmarshal(data, &rs[i]); err != nil {
			return fmt.Errorf("result %s: %w", f, err)
		}
	}
	if !Compare(out, rs[0], rs[1], *target) {
		return errMissed
	}
	return nil
}

// Package cniplugin is the ovsnet CNI plugin: it validates what the runtime
// passed (environment and network configuration), forwards the operation to
// the ovsnet agent over the CNI API (package cniapi) and prints the agent's
// answer in the CNI version the runtime asked for. It knows nothing of Open
// vSwitch; everything that touches the node happens in the agent.
//
// Error codes seen by the runtime: 4 for invalid CNI_* variables, 6 for a
// configuration that is not JSON, 7 for an invalid configuration, 1 for an
// unsupported cniVersion, 11 when the agent is unreachable, too slow or not
// ready (the runtime retries), 50 from STATUS when the agent cannot serve,
// and the agent's own codes otherwise (cniapi documents 100 and 101).
package cniplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// VersionInfo reports the CNI versions the plugin accepts (CNI VERSION).
func VersionInfo() version.PluginInfo {
	return version.PluginSupports(cniapi.SupportedCNIVersions()...)
}

// About is printed when the binary runs without CNI_COMMAND.
func About() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "ovsnet CNI plugin " + v + ": forwards CNI requests to the ovsnet agent"
}

// Main runs the plugin as a CNI binary and exits.
func Main() {
	// The runtime stops a plugin it gave up on; a cancelled context closes the
	// connection, which cancels the agent's side of the request too.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p := New(ctx, os.Stdout)
	e := skel.PluginMainFuncsWithError(p.Funcs(), VersionInfo(), About())
	if e != nil {
		if err := e.Print(); err != nil {
			fmt.Fprintln(os.Stderr, "ovsnet: cannot print error:", err)
		}
		stop()
		os.Exit(1)
	}
}

// Plugin implements the CNI verbs.
type Plugin struct {
	ctx    context.Context
	stdout io.Writer
}

// New returns a plugin that prints results to stdout; ctx bounds every call.
func New(ctx context.Context, stdout io.Writer) *Plugin {
	return &Plugin{ctx: ctx, stdout: stdout}
}

// Funcs returns the verbs for skel.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}
}

// Add forwards CNI ADD and prints the result in the configuration's version.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	conf, req, err := p.request(cniapi.VerbAdd, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, conf.TimeoutFor(cniapi.VerbAdd))
	defer cancel()
	c := cniapi.NewClient(conf.AgentSocket)
	defer c.Close()
	res, err := c.Add(ctx, req)
	if err != nil {
		return err
	}
	out, err := res.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(cniapi.CodeProtocol,
			fmt.Sprintf("cannot convert the agent's result to CNI version %s", conf.CNIVersion), err.Error())
	}
	if err := out.PrintTo(p.stdout); err != nil {
		return types.NewError(types.ErrIOFailure, "cannot write the CNI result to stdout", err.Error())
	}
	return nil
}

// Del forwards CNI DEL.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	conf, req, err := p.request(cniapi.VerbDel, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, conf.TimeoutFor(cniapi.VerbDel))
	defer cancel()
	c := cniapi.NewClient(conf.AgentSocket)
	defer c.Close()
	return c.Del(ctx, req)
}

// Check forwards CNI CHECK.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	conf, req, err := p.request(cniapi.VerbCheck, args)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult in the network configuration",
			"the runtime passes the result of the earlier ADD as prevResult")
	}
	ctx, cancel := context.WithTimeout(p.ctx, conf.TimeoutFor(cniapi.VerbCheck))
	defer cancel()
	c := cniapi.NewClient(conf.AgentSocket)
	defer c.Close()
	return c.Check(ctx, req)
}

// GC forwards CNI GC with the runtime's valid attachments.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, conf.TimeoutFor(cniapi.VerbGC))
	defer cancel()
	c := cniapi.NewClient(conf.AgentSocket)
	defer c.Close()
	return c.GC(ctx, &cniapi.GCRequest{
		CNIVersion:       conf.CNIVersion,
		Network:          conf.Name,
		ValidAttachments: conf.ValidAttachments,
		NetConf:          conf.Raw,
	})
}

// Status forwards CNI STATUS. An agent that cannot be reached or is not ready
// means the plugin is not available (code 50).
func (p *Plugin) Status(args *skel.CmdArgs) error {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(p.ctx, conf.TimeoutFor(cniapi.VerbStatus))
	defer cancel()
	c := cniapi.NewClient(conf.AgentSocket)
	defer c.Close()
	err = c.Status(ctx, &cniapi.StatusRequest{CNIVersion: conf.CNIVersion, Network: conf.Name, NetConf: conf.Raw})
	var e *types.Error
	if errors.As(err, &e) && e.Code == types.ErrTryAgainLater {
		return types.NewError(types.ErrPluginNotAvailable, e.Msg, e.Details)
	}
	return err
}

// request validates what skel does not and builds the agent request.
func (p *Plugin) request(verb cniapi.Verb, args *skel.CmdArgs) (*NetConf, *cniapi.Request, error) {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return nil, nil, err
	}
	if err := validateEnv(verb, args); err != nil {
		return nil, nil, err
	}
	pod, other, err := ParseCNIArgs(args.Args)
	if err != nil {
		return nil, nil, err
	}
	return conf, &cniapi.Request{
		CNIVersion:    conf.CNIVersion,
		Network:       conf.Name,
		ContainerID:   args.ContainerID,
		Netns:         args.Netns,
		IfName:        args.IfName,
		Pod:           pod,
		Args:          other,
		RuntimeConfig: conf.RuntimeConfig,
		PrevResult:    conf.PrevResult,
		NetConf:       conf.Raw,
	}, nil
}

// validateEnv checks the CNI_* values skel leaves alone. skel already
// requires CNI_CONTAINERID, CNI_IFNAME and (for ADD and CHECK) CNI_NETNS, and
// checks the characters of the first two, all with code 4.
func validateEnv(verb cniapi.Verb, args *skel.CmdArgs) error {
	if args.ContainerID == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID is empty", "")
	}
	if args.IfName == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME is empty", "")
	}
	needNetns := verb == cniapi.VerbAdd || verb == cniapi.VerbCheck
	if args.Netns == "" {
		if needNetns {
			return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is empty", fmt.Sprintf("%s needs the container's network namespace path", verb))
		}
		return nil
	}
	if !filepath.IsAbs(args.Netns) {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_NETNS %q is not an absolute path", truncate(args.Netns, 128)),
			"pass the namespace's path, e.g. /var/run/netns/<name>")
	}
	return nil
}

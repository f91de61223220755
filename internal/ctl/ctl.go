// Package ctl is ovsnetctl: the operator CLI that reads the agent's local
// API (status and readiness, datapath features, pods, ports, a pod's setup
// timeline, flows per table) and prints it as tables or JSON.
package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovsnet/ovsnet/internal/agentapi"
)

// Command returns the ovsnetctl root command.
func Command() *cobra.Command {
	var addr string
	var asJSON bool
	root := &cobra.Command{
		Use:           "ovsnetctl",
		Short:         "Inspect a running ovsnet agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&addr, "agent", "127.0.0.1:9364", "the agent's --health-addr")
	root.PersistentFlags().BoolVar(&asJSON, "json", false, "print the agent's JSON instead of a table")
	c := func() *client { return &client{base: "http://" + addr, json: asJSON} }

	root.AddCommand(&cobra.Command{
		Use: "status", Short: "Readiness, bridge and OpenFlow connection", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st agentapi.Status
			return c().get(cmd, agentapi.PathStatus, &st, func(w io.Writer) {
				fmt.Fprintf(w, "state:\t%s\n", st.State)
				if st.Reason != "" {
					fmt.Fprintf(w, "reason:\t%s\n", st.Reason)
				}
				fmt.Fprintf(w, "since:\t%s (%s ago)\n", st.Since.Format(time.RFC3339), time.Since(st.Since).Round(time.Second))
				fmt.Fprintf(w, "bridge:\t%s (%s), datapath id %s, config seq %d\n", st.Bridge.Name, st.Bridge.DatapathType, st.Bridge.DatapathID, st.Bridge.ConfigSeq)
				fmt.Fprintf(w, "ovs-vswitchd:\t%s\n", st.Bridge.ControlSocket)
				fmt.Fprintf(w, "openflow:\tconnected=%v sessions=%d disconnects=%d dead-peer=%d port-status=%d errors=%d\n",
					st.OpenFlow.Connected, st.OpenFlow.Sessions, st.OpenFlow.Disconnects, st.OpenFlow.DeadPeer, st.OpenFlow.PortStatus, st.OpenFlow.Errors)
				if st.PodCIDR != "" {
					fmt.Fprintf(w, "pod cidr:\t%s (gateway %s), %d pods, flow round %d\n", st.PodCIDR, st.Gateway, st.Pods, st.FlowRound)
				}
			})
		},
	})
	root.AddCommand(&cobra.Command{
		Use: "features", Short: "Datapath features of the bridge (dpif/show-dp-features)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var fs []agentapi.Feature
			return c().get(cmd, agentapi.PathFeatures, &fs, func(w io.Writer) {
				for _, f := range fs {
					fmt.Fprintf(w, "%s\t%s\n", f.Name, f.Value)
				}
			})
		},
	})
	root.AddCommand(&cobra.Command{
		Use: "pods", Short: "Pod interfaces: name, port, ofport, state, IP, MAC", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ps []agentapi.Pod
			return c().get(cmd, agentapi.PathPods, &ps, func(w io.Writer) {
				fmt.Fprintln(w, "POD\tCONTAINER\tLIFECYCLE\tPORT\tOFPORT\tSTATE\tFLOWS\tIP\tMAC\tADD")
				for _, p := range ps {
					fmt.Fprintf(w, "%s\t%.12s\t%s\t%s\t%d\t%s\t%v\t%s\t%s\t%s\n", podName(p), p.ContainerID, p.Lifecycle, p.Port, p.OFPort,
						p.State, p.FlowsIn, p.IP, p.MAC, total(p.Timeline))
				}
			})
		},
	})
	root.AddCommand(&cobra.Command{
		Use: "pod CONTAINER-ID-OR-NAME", Short: "One pod's details and ADD timeline", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ps []agentapi.Pod
			cl := c()
			if err := cl.fetch(cmd.Context(), agentapi.PathPods, &ps); err != nil {
				return err
			}
			for _, p := range ps {
				if strings.HasPrefix(p.ContainerID, args[0]) || podName(p) == args[0] || p.Name == args[0] {
					return cl.print(cmd, p, func(w io.Writer) {
						fmt.Fprintf(w, "pod:\t%s\ncontainer:\t%s\nnetns:\t%s\ninterface:\t%s (host %s, ofport %d, %s)\n",
							podName(p), p.ContainerID, p.Netns, p.IfName, p.Port, p.OFPort, p.State)
						fmt.Fprintf(w, "address:\t%s %s\nlifecycle:\t%s\nflows installed:\t%v\ncreated:\t%s\n", p.IP, p.MAC, p.Lifecycle, p.FlowsIn, p.Created.Format(time.RFC3339))
						if p.FlowError != "" {
							fmt.Fprintf(w, "flow error:\t%s\n", p.FlowError)
						}
						if p.Conflict != "" {
							fmt.Fprintf(w, "conflict:\t%s\n", p.Conflict)
						}
						for _, ph := range p.Timeline {
							fmt.Fprintf(w, "  %s\t%.2f ms\n", ph.Name, ph.Milliseconds)
						}
						if len(p.Timeline) > 0 {
							fmt.Fprintf(w, "  total\t%s\n", total(p.Timeline))
						}
					})
				}
			}
			return fmt.Errorf("no pod %q on this node (see ovsnetctl pods)", args[0])
		},
	})
	root.AddCommand(&cobra.Command{
		Use: "ports", Short: "OpenFlow ports of the bridge", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ps []agentapi.Port
			return c().get(cmd, agentapi.PathPorts, &ps, func(w io.Writer) {
				fmt.Fprintln(w, "OFPORT\tNAME\tMAC\tSTATE\tCONFIG")
				for _, p := range ps {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", p.OFPort, p.Name, p.MAC, p.State, p.Config)
				}
			})
		},
	})
	var table int
	flows := &cobra.Command{
		Use: "flows", Short: "Installed flows, per table", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := agentapi.PathFlows
			if table >= 0 {
				path += "?table=" + url.QueryEscape(strconv.Itoa(table))
			}
			var fs []agentapi.Flow
			return c().get(cmd, path, &fs, func(w io.Writer) {
				last := -1
				for _, f := range fs {
					if int(f.Table) != last {
						fmt.Fprintf(w, "table %d %s\n", f.Table, f.TableName)
						last = int(f.Table)
					}
					owner := f.Owner
					if owner == "" {
						owner = "(none)"
					}
					fmt.Fprintf(w, "  n_packets=%d\t%s\t%s\n", f.Packets, owner, f.Text)
				}
			})
		},
	}
	flows.Flags().IntVar(&table, "table", -1, "show one table only")
	root.AddCommand(flows)
	root.AddCommand(&cobra.Command{
		Use: "policy <namespace>/<pod>", Short: "NetworkPolicy of a pod: its isolation, the rules that apply and their flows",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pp agentapi.PodPolicy
			return c().get(cmd, agentapi.PathPolicy+"?pod="+url.QueryEscape(args[0]), &pp, func(w io.Writer) { printPolicy(w, pp) })
		},
	})
	return root
}

func printPolicy(w io.Writer, pp agentapi.PodPolicy) {
	fmt.Fprintf(w, "pod:\t%s (%s)\n", pp.Pod, pp.IP)
	if !pp.Enforced {
		fmt.Fprintln(w, "NetworkPolicy:\tnot enforced (the agent runs with --network-policy=false)")
		return
	}
	iso := func(on bool) string {
		if on {
			return "isolated: only what a rule allows passes"
		}
		return "not isolated: everything passes"
	}
	fmt.Fprintf(w, "ingress:\t%s\n", iso(pp.IngressIsolated))
	fmt.Fprintf(w, "egress:\t%s\n", iso(pp.EgressIsolated))
	if len(pp.Policies) > 0 {
		fmt.Fprintf(w, "selected by:\t%s\n", strings.Join(pp.Policies, ", "))
	}
	for _, f := range pp.Isolation {
		fmt.Fprintf(w, "  n_packets=%d\ttable %d %s\t%s\n", f.Packets, f.Table, f.TableName, f.Text)
	}
	if len(pp.Rules) == 0 {
		fmt.Fprintln(w, "rules:\tnone")
	}
	for _, r := range pp.Rules {
		fmt.Fprintf(w, "rule %s\t%s (conjunction %d, priority %d)\n", r.ID, r.Describe, r.Conjunction, r.Priority)
		for _, f := range r.Flows {
			fmt.Fprintf(w, "  n_packets=%d\ttable %d %s\t%s\n", f.Packets, f.Table, f.TableName, f.Text)
		}
	}
}

func podName(p agentapi.Pod) string {
	if p.Name == "" {
		return "-"
	}
	return p.Namespace + "/" + p.Name
}

func total(ph []agentapi.Phase) string {
	if len(ph) == 0 {
		return "-"
	}
	t := 0.0
	for _, p := range ph {
		t += p.Milliseconds
	}
	return fmt.Sprintf("%.1f ms", t)
}

type client struct {
	base string
	json bool
}

func (c *client) fetch(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s: %w (is ovsnet-agent running? see --agent)", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("agent's answer is not what this ovsnetctl expects (versions differ?): %w", err)
	}
	return nil
}

func (c *client) get(cmd *cobra.Command, path string, v any, table func(io.Writer)) error {
	if err := c.fetch(cmd.Context(), path, v); err != nil {
		return err
	}
	return c.print(cmd, v, table)
}

func (c *client) print(cmd *cobra.Command, v any, table func(io.Writer)) error {
	out := cmd.OutOrStdout()
	if c.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

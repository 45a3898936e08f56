package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/grant"
	"github.com/spf13/cobra"
)

// parseGrants parses --workload grant specs.
func parseGrants(specs []string) ([]grant.Workload, error) {
	var out []grant.Workload
	for _, s := range specs {
		g, err := grant.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("--workload: %w", err)
		}
		out = append(out, g)
	}
	return out, nil
}

// parseGrantSet parses --workload and --workload-id flags.
func parseGrantSet(workloads, ids []string) (grant.Set, error) {
	ws, err := parseGrants(workloads)
	if err != nil {
		return grant.Set{}, err
	}
	g := grant.Set{Workloads: ws, WorkloadIDs: ids}
	if err := g.Check(); err != nil {
		return grant.Set{}, err
	}
	return g, nil
}

// toAPIGrants and fromAPIGrants convert grants to and from the admin
// API's type.
func toAPIGrants(ws []grant.Workload) []adminapi.Grant {
	var out []adminapi.Grant
	for _, g := range ws {
		out = append(out, adminapi.Grant{Namespace: g.Namespace, Labels: g.Labels, Name: g.Name})
	}
	return out
}

func fromAPIGrants(gs []adminapi.Grant) []grant.Workload {
	var out []grant.Workload
	for _, g := range gs {
		out = append(out, grant.Workload{Namespace: g.Namespace, Labels: g.Labels, Name: g.Name})
	}
	return out
}

func formatGrants(gs []adminapi.Grant) string {
	if len(gs) == 0 {
		return "-"
	}
	ws := fromAPIGrants(gs)
	s := make([]string, len(ws))
	for i, g := range ws {
		s[i] = g.String()
	}
	return strings.Join(s, " | ")
}

// grantCmds are `latch admin node grant|revoke|grants`: what a node may
// host.
func grantCmds(f *adminFlags) []*cobra.Command {
	edit := func(verb, short string, call func(*client.Client, context.Context, string, adminapi.GrantSet) (adminapi.NodeGrants, error)) *cobra.Command {
		var workloads, ids []string
		cmd := &cobra.Command{
			Use:   verb + " NODE [--workload " + grant.SpecHelp + " ...] [--workload-id spiffe://TD/PATH-PATTERN ...]",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				g, err := parseGrantSet(workloads, ids)
				if err != nil {
					return err
				}
				if g.Empty() {
					return fmt.Errorf("nothing to %s: give --workload %s or --workload-id spiffe://TD/PATH-PATTERN", verb, grant.SpecHelp)
				}
				c, err := f.client()
				if err != nil {
					return err
				}
				out, err := call(c, cmd.Context(), args[0], adminapi.GrantSet{Workloads: toAPIGrants(g.Workloads), WorkloadIDs: g.WorkloadIDs})
				if err != nil {
					return err
				}
				return writeGrants(cmd.OutOrStdout(), out)
			},
		}
		cmd.Flags().StringArrayVar(&workloads, "workload", nil, "a workload grant, "+grant.SpecHelp+" (exactly these labels); repeatable")
		cmd.Flags().StringArrayVar(&ids, "workload-id", nil, "a workload SPIFFE ID pattern a SPIRE node may declare, spiffe://TD/PATH ('*' within a path segment); repeatable")
		return cmd
	}
	show := &cobra.Command{
		Use:   "grants NODE",
		Short: "Show the workloads a node may host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			out, err := c.NodeGrants(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeGrants(cmd.OutOrStdout(), out)
		},
	}
	return []*cobra.Command{
		edit("grant", "Let a node host workloads (namespace, exact labels, name pattern) or declare workload SPIFFE IDs", (*client.Client).GrantNode),
		edit("revoke", "Take grants from a node; its workloads no grant covers any more are removed at once", (*client.Client).RevokeNodeGrants),
		show,
	}
}

func writeGrants(w io.Writer, g adminapi.NodeGrants) error {
	fmt.Fprintf(w, "node %s may host:\n", g.Node)
	lines := 0
	for _, x := range fromAPIGrants(g.Granted.Workloads) {
		fmt.Fprintf(w, "  workload %s\n", x)
		lines++
	}
	for _, p := range g.Granted.WorkloadIDs {
		fmt.Fprintf(w, "  workload-id %s\n", p)
		lines++
	}
	for _, x := range fromAPIGrants(g.Mapped.Workloads) {
		fmt.Fprintf(w, "  workload %s (from --spiffe-map, entry of %s)\n", x, g.SpiffeID)
		lines++
	}
	for _, p := range g.Mapped.WorkloadIDs {
		fmt.Fprintf(w, "  workload-id %s (from --spiffe-map, entry of %s)\n", p, g.SpiffeID)
		lines++
	}
	if lines == 0 {
		fmt.Fprintln(w, "  nothing (only itself)")
	}
	return nil
}

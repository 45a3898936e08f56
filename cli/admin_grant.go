package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/latchnet/latch/coordinator/api"
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

func formatGrants(ws []grant.Workload) string {
	if len(ws) == 0 {
		return "-"
	}
	s := make([]string, len(ws))
	for i, g := range ws {
		s[i] = g.String()
	}
	return strings.Join(s, " | ")
}

// grantCmds are `latch admin node grant|revoke|grants`: what a node may
// host.
func grantCmds(f *adminFlags) []*cobra.Command {
	edit := func(verb, path, short string) *cobra.Command {
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
				var out api.NodeGrants
				if err := c.json(http.MethodPost, "/v1/admin/nodes/"+url.PathEscape(args[0])+path, g, &out); err != nil {
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
			var out api.NodeGrants
			if err := c.json(http.MethodGet, "/v1/admin/nodes/"+url.PathEscape(args[0])+"/grants", nil, &out); err != nil {
				return err
			}
			return writeGrants(cmd.OutOrStdout(), out)
		},
	}
	return []*cobra.Command{
		edit("grant", "/grants", "Let a node host workloads (namespace, exact labels, name pattern) or declare workload SPIFFE IDs"),
		edit("revoke", "/grants/revoke", "Take grants from a node; its workloads no grant covers any more are removed at once"),
		show,
	}
}

func writeGrants(w io.Writer, g api.NodeGrants) error {
	fmt.Fprintf(w, "node %s may host:\n", g.Node)
	lines := 0
	for _, x := range g.Granted.Workloads {
		fmt.Fprintf(w, "  workload %s\n", x)
		lines++
	}
	for _, p := range g.Granted.WorkloadIDs {
		fmt.Fprintf(w, "  workload-id %s\n", p)
		lines++
	}
	for _, x := range g.Mapped.Workloads {
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

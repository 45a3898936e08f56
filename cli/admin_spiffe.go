package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/grant"
	"github.com/spf13/cobra"
)

// spiffeNodeCmds are `latch admin node pending|approve|reject`: nodes
// whose SPIFFE ID from SPIRE matched no --spiffe-map entry.
func spiffeNodeCmds(f *adminFlags) []*cobra.Command {
	var all bool
	pending := &cobra.Command{
		Use:   "pending [--all]",
		Short: "List SPIRE nodes waiting for approval (--all: also rejected and admitted ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			status := adminapi.SpiffePending
			if all {
				status = ""
			}
			recs, err := c.SpiffeNodes(cmd.Context(), status)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "NAME", "SPIFFE ID", "STATUS", "FIRST SEEN", "LAST SEEN")
			for _, r := range recs {
				writeRow(tw, r.Name, r.ID, r.Status, r.FirstSeen.Format(time.RFC3339), r.LastSeen.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	pending.Flags().BoolVar(&all, "all", false, "also list rejected and admitted SPIFFE IDs")

	var req adminapi.SpiffeApproval
	var labels, workloads, ids []string
	approve := &cobra.Command{
		Use:   "approve NAME|SPIFFE-ID --namespace NS [--label k=v ...] [--workload GRANT ...] [--workload-id PATTERN ...]",
		Short: "Admit a pending SPIRE node into a namespace with labels, granting it workloads",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Namespace == "" {
				return fmt.Errorf("approve needs --namespace NS: the namespace the node joins")
			}
			l, err := parseNodeLabels(strings.Join(labels, ","))
			if err != nil {
				return err
			}
			g, err := parseGrantSet(workloads, ids)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			r := req
			r.Node, r.Labels = args[0], l
			r.Workloads, r.WorkloadIDs = toAPIGrants(g.Workloads), g.WorkloadIDs
			n, err := c.ApproveSpiffeNode(cmd.Context(), r)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s approved: namespace %s, address %s\n", n.Name, n.Namespace, n.IP)
			return nil
		},
	}
	approve.Flags().StringVar(&req.Namespace, "namespace", "", "namespace the node joins (required)")
	approve.Flags().StringArrayVar(&labels, "label", nil, "label k=v for the node; repeatable")
	approve.Flags().StringArrayVar(&workloads, "workload", nil, "a workload the node may host, "+grant.SpecHelp+"; repeatable")
	approve.Flags().StringArrayVar(&ids, "workload-id", nil, "a workload SPIFFE ID pattern the node may declare, spiffe://TD/PATH; repeatable")

	reject := &cobra.Command{
		Use:   "reject NAME|SPIFFE-ID",
		Short: "Refuse a SPIRE node from now on (an admitted one is removed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RejectSpiffeNode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s rejected\n", args[0])
			return nil
		},
	}
	return []*cobra.Command{pending, approve, reject}
}

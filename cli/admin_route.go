package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/spf13/cobra"
)

// newRouteCmd is `latch admin route list|approve|reject`: the subnet
// routes that gateways advertise.
func newRouteCmd(f *adminFlags) *cobra.Command {
	route := &cobra.Command{
		Use:   "route",
		Short: "List, approve and reject the subnet routes that gateway nodes advertise",
		Long: `A gateway is a node started with --advertise-routes: it offers to carry
traffic between the overlay and the hosts of a subnet. An advertised route
takes effect only once an admin approves it; a rejected route stays
rejected while the node advertises it, until an admin approves it.`,
	}
	var node string
	list := &cobra.Command{
		Use:   "list [--node NAME]",
		Short: "List the advertised routes with their status, whether the node is primary for them and online",
		Long: `List the advertised routes. PRIMARY says, for an approved route, whether
the node is the primary gateway for some site address in it: the
lowest-named online gateway with an approved route containing the address
carries its traffic. ONLINE says whether the node has its view stream open
to the coordinator; a gateway whose stream closes, or whose host stops
answering for about 3 seconds, is offline and its sites fail over.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			rs, err := c.SubnetRoutes(cmd.Context(), node)
			if err != nil {
				return err
			}
			return writeRouteList(cmd.OutOrStdout(), rs)
		},
	}
	list.Flags().StringVar(&node, "node", "", "only the routes of this node")
	decide := func(verb string, approve bool) *cobra.Command {
		short := "Approve a route a node advertises"
		if !approve {
			short = "Reject a route a node advertises (it stays rejected while the node advertises it)"
		}
		return &cobra.Command{
			Use:   verb + " NODE PREFIX",
			Short: short,
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := f.client()
				if err != nil {
					return err
				}
				call := c.RejectRoute
				if approve {
					call = c.ApproveRoute
				}
				r, err := call(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "route %s of node %s %s\n", r.Prefix, termSafe(r.Node), r.Status)
				return nil
			},
		}
	}
	route.AddCommand(list, decide("approve", true), decide("reject", false))
	return route
}

// writeRouteList prints routes as a table.
func writeRouteList(w io.Writer, rs []adminapi.SubnetRoute) error {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no routes advertised: a node advertises subnets with latch node --advertise-routes")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeRow(tw, "NODE", "PREFIX", "SNAT", "STATUS", "PRIMARY", "ONLINE", "ADVERTISED", "DECIDED", "BY")
	for _, r := range rs {
		decided, by := "-", "-"
		if !r.DecidedAt.IsZero() {
			decided, by = r.DecidedAt.Format(time.RFC3339), r.DecidedBy
		}
		primary := "-" // only an approved route carries traffic
		if r.Status == adminapi.RouteApproved {
			primary = yesNo(r.Primary)
		}
		writeRow(tw, r.Node, r.Prefix, yesNo(r.SNAT), r.Status, primary, yesNo(r.Online), r.AdvertisedAt.Format(time.RFC3339), decided, by)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/spf13/cobra"
)

type flowsFlags struct {
	follow, asJSON     bool
	namespace, verdict string
	since              time.Duration
	limit              int
}

func newFlowsCmd() *cobra.Command {
	var f adminFlags
	var ff flowsFlags
	cmd := &cobra.Command{
		Use:   "flows [--follow] [--namespace NS] [--verdict allowed|denied|would-deny] [--since D] [--json]",
		Short: "Show the flows the nodes observed, one line per flow and interval (like hubble observe)",
		Long: `Show the flow records the nodes' enforcers reported to the coordinator: time,
source and destination (namespace/workload, node, address), port and
protocol, verdict (allowed, denied, or would-deny for traffic a monitor-mode
namespace let through), the reason, and the packets and bytes that made
events in the interval. --follow keeps printing new flows as they arrive;
--json prints JSON lines (an export format).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch ff.verdict {
			case "", adminapi.VerdictAllowed, adminapi.VerdictDenied, adminapi.VerdictWouldDeny:
			default:
				return fmt.Errorf("--verdict %q: want allowed, denied or would-deny", ff.verdict)
			}
			if ff.since < 0 || ff.limit < 0 {
				return fmt.Errorf("--since and --limit must not be negative")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			q := client.FlowQuery{Namespace: ff.namespace, Verdict: ff.verdict, Limit: ff.limit}
			if ff.since > 0 {
				q.Since = ff.since.String()
			}
			out := cmd.OutOrStdout()
			if !ff.follow {
				fs, err := c.Flows(cmd.Context(), q)
				if err != nil {
					return err
				}
				for i := range fs {
					if err := printFlow(out, &fs[i], ff.asJSON); err != nil {
						return err
					}
				}
				return nil
			}
			return c.FollowFlows(cmd.Context(), q, func(fl adminapi.Flow) error {
				return printFlow(out, &fl, ff.asJSON)
			})
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&ff.follow, "follow", "f", false, "keep printing new flows as they arrive")
	fl.BoolVar(&ff.asJSON, "json", false, "print JSON lines, one flow record each")
	fl.StringVarP(&ff.namespace, "namespace", "n", "", "only flows with either end in this namespace")
	fl.StringVar(&ff.verdict, "verdict", "", "only flows with this verdict: allowed, denied or would-deny")
	fl.DurationVar(&ff.since, "since", 0, "only flows of the last D (such as 10m, 24h); default: all kept")
	fl.IntVar(&ff.limit, "limit", 1000, "at most this many flows (the newest) before following")
	return cmd
}

// printFlow writes one flow as a line like hubble observe's, or as JSON.
func printFlow(w io.Writer, f *adminapi.Flow, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(w, formatFlow(f))
	return err
}

// formatFlow: made terminal-safe (termSafe), TIME SRC (NODE ADDR) -> DST (NODE ADDR):PORT/PROTO VERDICT
// (REASON) N pkts M B, by REPORTER/DIRECTION (both ends of a flow between
// two workloads report it).
func formatFlow(f *adminapi.Flow) string {
	dst := endText(f.Dst)
	if f.Port != 0 {
		dst += fmt.Sprintf(":%d", f.Port)
	}
	reason := ""
	if f.Reason != "" && f.Verdict != adminapi.VerdictAllowed {
		reason = " (" + f.Reason + ")"
	}
	return termSafe(fmt.Sprintf("%s  %s -> %s/%s  %s%s  %d pkts %d B  by %s/%s",
		f.Time.Local().Format("Jan _2 15:04:05.000"), endText(f.Src), dst, f.Protocol,
		verdictText(f.Verdict), reason, f.Packets, f.Bytes, f.Reporter, f.Direction))
}

func endText(e adminapi.FlowEnd) string {
	if e.Workload == "" {
		return e.IP.String() + " (outside the overlay's workloads)"
	}
	return fmt.Sprintf("%s/%s (%s %s)", e.Namespace, e.Workload, e.Node, e.IP)
}

func verdictText(v string) string {
	switch v {
	case adminapi.VerdictAllowed:
		return "ALLOWED"
	case adminapi.VerdictDenied:
		return "DENIED"
	case adminapi.VerdictWouldDeny:
		return "WOULD-DENY"
	}
	return v
}

func newPolicySuggestCmd() *cobra.Command {
	var f adminFlags
	var ns string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "suggest --namespace NS [--since 24h]",
		Short: "Print the NetworkPolicy YAML that allows exactly the traffic observed in a namespace",
		Long: `Learn policy from the flows the nodes reported (allowed and would-deny; denied
traffic is not learned): one policy per group of destination workloads
(selected by their "app" label, else all their labels) with ingress rules for
the sources seen and egress rules for the destinations seen, by port. Review
the YAML, then apply it where you want it enforced:

  latch policy suggest --namespace shop --since 24h > shop-policy.yaml
  latch policy apply -f shop-policy.yaml
  latch admin namespace set shop --mode enforce

Traffic between namespaces needs the suggestion of both namespaces.

A rule is learned only from the flows that the node hosting its workload
reported (ingress rules from the destination's node, egress rules from the
source's), and a comment atop each policy names those nodes per rule: one
node's claims about workloads it does not host teach nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ns == "" {
				return fmt.Errorf("--namespace is required: the namespace to suggest policies for")
			}
			if since <= 0 {
				return fmt.Errorf("--since %v: want a positive duration such as 1h or 24h", since)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			data, err := c.Suggest(cmd.Context(), ns, since.String())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "the namespace to write policies for")
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "learn from the flows of the last D")
	return cmd
}

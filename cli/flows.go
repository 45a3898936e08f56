package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
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
			case "", wire.VerdictAllowed, wire.VerdictDenied, wire.VerdictWouldDeny:
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
			q := url.Values{}
			if ff.namespace != "" {
				q.Set("namespace", ff.namespace)
			}
			if ff.verdict != "" {
				q.Set("verdict", ff.verdict)
			}
			if ff.since > 0 {
				q.Set("since", ff.since.String())
			}
			if ff.limit > 0 {
				q.Set("limit", strconv.Itoa(ff.limit))
			}
			out := cmd.OutOrStdout()
			if !ff.follow {
				var fs []store.Flow
				if err := c.json(http.MethodGet, "/v1/admin/flows?"+q.Encode(), nil, &fs); err != nil {
					return err
				}
				for i := range fs {
					if err := printFlow(out, &fs[i], ff.asJSON); err != nil {
						return err
					}
				}
				return nil
			}
			q.Set("follow", "true")
			return c.follow(cmd.Context(), "/v1/admin/flows?"+q.Encode(), func(line []byte) error {
				var fl store.Flow
				if err := json.Unmarshal(line, &fl); err != nil {
					return fmt.Errorf("reading the coordinator's flow stream: %w", err)
				}
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

// follow reads a JSON-lines stream until ctx ends or the coordinator
// closes it.
func (c *adminClient) follow(ctx context.Context, path string, line func([]byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := *c.http
	hc.Timeout = 0 // a stream
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("calling the coordinator: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e wire.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("coordinator answered %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// The coordinator ends a stream whose credential no longer holds
		// with a last line saying why.
		var end wire.Error
		if json.Unmarshal(sc.Bytes(), &end) == nil && end.Error != "" {
			return fmt.Errorf("the coordinator ended the stream: %s", end.Error)
		}
		if err := line(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the coordinator's stream: %w", err)
	}
	return fmt.Errorf("the coordinator ended the stream")
}

// printFlow writes one flow as a line like hubble observe's, or as JSON.
func printFlow(w io.Writer, f *store.Flow, asJSON bool) error {
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
func formatFlow(f *store.Flow) string {
	dst := endText(f.Dst)
	if f.Port != 0 {
		dst += fmt.Sprintf(":%d", f.Port)
	}
	reason := ""
	if f.Reason != "" && f.Verdict != wire.VerdictAllowed {
		reason = " (" + f.Reason + ")"
	}
	return termSafe(fmt.Sprintf("%s  %s -> %s/%s  %s%s  %d pkts %d B  by %s/%s",
		f.Time.Local().Format("Jan _2 15:04:05.000"), endText(f.Src), dst, f.Protocol,
		verdictText(f.Verdict), reason, f.Packets, f.Bytes, f.Reporter, f.Direction))
}

func endText(e store.FlowEnd) string {
	if e.Workload == "" {
		return e.IP.String() + " (outside the overlay's workloads)"
	}
	return fmt.Sprintf("%s/%s (%s %s)", e.Namespace, e.Workload, e.Node, e.IP)
}

func verdictText(v string) string {
	switch v {
	case wire.VerdictAllowed:
		return "ALLOWED"
	case wire.VerdictDenied:
		return "DENIED"
	case wire.VerdictWouldDeny:
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
			data, err := c.raw(cmd.Context(), http.MethodGet,
				"/v1/admin/namespaces/"+url.PathEscape(ns)+"/suggest?since="+url.QueryEscape(since.String()), "", nil)
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

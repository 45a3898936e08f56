package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/spf13/cobra"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Apply, get, diff, delete, validate and evaluate NetworkPolicy",
	}
	cmd.AddCommand(newPolicyEvalCmd(), newPolicyValidateCmd(), newPolicyApplyCmd(), newPolicySuggestCmd())
	cmd.AddCommand(newPolicyAdminCmds()...)
	cmd.AddCommand(newPolicyGetCmd(), newPolicyDeleteCmd(), newPolicyDiffCmd())
	return cmd
}

type evalFlags struct {
	inventory string
	policies  []string
	baseline  string
	output    string
	ns        namespaceFlag
}

func newPolicyEvalCmd() *cobra.Command {
	var f evalFlags
	cmd := &cobra.Command{
		Use:   "eval --inventory FILE --policy FILE [--policy FILE ...] [-n NAMESPACE]",
		Short: "Print the truth table of policies over an inventory",
		Long: `Evaluates every ordered pair of distinct workloads of the inventory on every
port the destination declares, with Kubernetes NetworkPolicy semantics:
traffic passes iff the source's egress and the destination's ingress both
allow it. A direction that no policy isolates is decided by the baseline:
"deny" (zero trust, the default) or "allow" (exactly Kubernetes). A policy
without metadata.namespace is in the namespace of -n (default "default"), as
with kubectl apply.

Sites of the inventory (networks of agentless hosts) get a row and a column:
a cell lists a port alone when every address of the site may use it, and
with the allowed prefixes in brackets when only part of the site may.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd.OutOrStdout(), f)
		},
	}
	f.ns.register(cmd, false)
	fl := cmd.Flags()
	fl.StringVar(&f.inventory, "inventory", "", "inventory file (YAML): namespaces, workloads, nodes and sites")
	fl.StringArrayVar(&f.policies, "policy", nil, "NetworkPolicy file (multi-document YAML); repeatable")
	fl.StringVar(&f.baseline, "baseline", string(policy.BaselineDeny), "decision for directions no policy isolates: deny or allow")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newPolicyValidateCmd() *cobra.Command {
	var files []string
	var ns namespaceFlag
	cmd := &cobra.Command{
		Use:   "validate -f FILE [-f FILE ...] [-n NAMESPACE]",
		Short: "Check NetworkPolicy files without applying them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := ns.options()
			if err != nil {
				return err
			}
			ps, err := readPolicies(files, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies are valid\n", len(ps))
			return nil
		},
	}
	ns.register(cmd, false)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "NetworkPolicy file; repeatable")
	return cmd
}

// readPolicies reads and checks the named policy files with kubectl's
// namespace rules (opts).
func readPolicies(names []string, opts policy.ParseOptions) ([]*policy.Policy, error) {
	files, err := readPolicyFiles(names)
	if err != nil {
		return nil, err
	}
	return policy.ParseFilesWith(opts, files...)
}

func readPolicyFiles(names []string) ([]policy.File, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("no policy file: give one or more with --policy FILE")
	}
	var files []policy.File
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("reading policy file: %w", err)
		}
		files = append(files, policy.File{Name: n, Data: data})
	}
	return files, nil
}

func runEval(out io.Writer, f evalFlags) error {
	baseline, err := policy.ParseBaseline(f.baseline)
	if err != nil {
		return fmt.Errorf("--baseline: %w", err)
	}
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("--output %q: must be table or json", f.output)
	}
	if f.inventory == "" {
		return fmt.Errorf("no inventory: give one with --inventory FILE")
	}
	data, err := os.ReadFile(f.inventory)
	if err != nil {
		return fmt.Errorf("reading inventory: %w", err)
	}
	inv, err := inventory.Parse(f.inventory, data)
	if err != nil {
		return err
	}
	opts, err := f.ns.options()
	if err != nil {
		return err
	}
	ps, err := readPolicies(f.policies, opts)
	if err != nil {
		return err
	}
	ev := policy.NewEvaluator(inv.Namespaces, ps, baseline)
	results := ev.TruthTable(inv.AllWorkloads())
	var siteResults []policy.SiteResult
	if len(inv.Sites) > 0 {
		siteResults = ev.SiteTable(inv.AllWorkloads(), inv.Sites)
	}
	if f.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Baseline    policy.Baseline     `json:"baseline"`
			Results     []policy.Result     `json:"results"`
			SiteResults []policy.SiteResult `json:"siteResults,omitempty"`
		}{baseline, nonNil(results), siteResults})
	}
	if err := writeMatrix(out, inv, results, siteResults, baseline); err != nil {
		return err
	}
	return nil
}

func nonNil(r []policy.Result) []policy.Result {
	if r == nil {
		return []policy.Result{}
	}
	return r
}

// writeMatrix prints one row per source and one column per destination;
// a cell lists the destination's ports the source may reach.
//
// Sites get a row and a column each; a cell between a site and another
// endpoint lists a port alone when every address of the site may use it,
// and with the allowed prefixes in brackets when only part may
// ("5432/TCP[198.19.1.0/25]"; between two sites "source>destination").
func writeMatrix(out io.Writer, inv *inventory.Inventory, results []policy.Result, siteResults []policy.SiteResult, baseline policy.Baseline) error {
	ws := inv.AllWorkloads()
	type cell struct {
		allowed, total int
		ports          []string
	}
	cells := map[[2]string]*cell{}
	allowed := 0
	for _, r := range results {
		k := [2]string{r.From, r.To}
		c := cells[k]
		if c == nil {
			c = &cell{}
			cells[k] = c
		}
		c.total++
		if r.Allowed {
			c.allowed++
			allowed++
			c.ports = append(c.ports, fmt.Sprintf("%d/%s", r.Port, r.Protocol))
		}
	}
	siteCounts := map[string]int{}
	for _, r := range siteResults {
		k := [2]string{r.From, r.To}
		c := cells[k]
		if c == nil {
			c = &cell{}
			cells[k] = c
		}
		c.total++
		siteCounts[r.Verdict]++
		if r.Verdict == policy.SiteDeny {
			continue
		}
		c.allowed++
		port := fmt.Sprintf("%d/%s", r.Port, r.Protocol)
		if r.Verdict == policy.SitePartial {
			port += "[" + siteRanges(r.Allowed, isSite(inv, r.From), isSite(inv, r.To)) + "]"
		}
		c.ports = append(c.ports, port)
	}
	keys := make([]string, len(ws), len(ws)+len(inv.Sites))
	for i := range ws {
		keys[i] = ws[i].Key()
	}
	for i := range inv.Sites {
		keys = append(keys, inv.Sites[i].Key())
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	header := []any{"FROM \\ TO"}
	for _, k := range keys {
		header = append(header, k)
	}
	writeRow(tw, header...)
	for _, from := range keys {
		row := []any{from}
		for _, to := range keys {
			c := cells[[2]string{from, to}]
			switch {
			case from == to:
				row = append(row, "·")
			case c == nil:
				row = append(row, "(no ports)")
			case c.allowed == 0:
				row = append(row, "✗")
			default:
				row = append(row, strings.Join(c.ports, ","))
			}
		}
		writeRow(tw, row...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\n%d of %d (source, destination, port) combinations allowed; baseline %s.\n"+
		"A cell lists the destination ports the source may reach; ✗ means none, · is the workload itself.\n",
		allowed, len(results), baseline)
	if err != nil || len(inv.Sites) == 0 {
		return err
	}
	_, err = fmt.Fprintf(out, "%d (source, destination, port) combinations with a site: %d allowed for every site address, %d for part of them;\n"+
		"[...] lists the allowed site prefixes (source>destination between two sites).\n",
		len(siteResults), siteCounts[policy.SiteAllow], siteCounts[policy.SitePartial])
	return err
}

func isSite(inv *inventory.Inventory, key string) bool {
	for i := range inv.Sites {
		if inv.Sites[i].Key() == key {
			return true
		}
	}
	return false
}

// siteRanges writes the allowed address pairs of a site cell: the site
// side's prefixes, or source>destination when both ends are sites.
func siteRanges(rs []policy.AddrRange, fromSite, toSite bool) string {
	join := func(ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		return strings.Join(s, "+")
	}
	var parts []string
	for _, r := range rs {
		switch {
		case fromSite && toSite:
			parts = append(parts, join(r.From)+">"+join(r.To))
		case fromSite:
			parts = append(parts, join(r.From))
		default:
			parts = append(parts, join(r.To))
		}
	}
	return strings.Join(parts, ";")
}

package cli

// The policy commands that follow kubectl's habits: -n/--namespace with
// the default namespace "default", `get -o yaml|json`, `delete` and
// `diff`. They call the admin API with its client (adminapi/client).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/policy"
	"github.com/spf13/cobra"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// defaultNamespace is the namespace of -n when it is not given, as in
// kubectl.
const defaultNamespace = "default"

// namespaceFlag is kubectl's -n/--namespace, and -A/--all-namespaces
// where a command lists.
type namespaceFlag struct {
	cmd  *cobra.Command
	name string
	all  bool
}

// register adds -n, and -A when list: for commands that list policies
// rather than read files.
func (n *namespaceFlag) register(cmd *cobra.Command, list bool) {
	n.cmd = cmd
	usage := "namespace of the policies that name none; a policy naming another one is refused when this is given"
	if list {
		usage = "namespace of the policies"
		cmd.Flags().BoolVarP(&n.all, "all-namespaces", "A", false, "the policies of every namespace (instead of -n)")
	}
	cmd.Flags().StringVarP(&n.name, "namespace", "n", defaultNamespace, usage)
}

// explicit says whether -n was given on the command line.
func (n *namespaceFlag) explicit() bool {
	return n.cmd != nil && n.cmd.Flags().Changed("namespace")
}

// options are the parser's namespace rules for -n: kubectl's.
func (n *namespaceFlag) options() (policy.ParseOptions, error) {
	if errs := validation.IsDNS1123Label(n.name); len(errs) > 0 {
		return policy.ParseOptions{}, fmt.Errorf("--namespace %q is not a valid namespace: %s", n.name, strings.Join(errs, "; "))
	}
	if n.all && n.explicit() {
		return policy.ParseOptions{}, fmt.Errorf("give either --namespace or --all-namespaces, not both")
	}
	return policy.ParseOptions{DefaultNamespace: n.name, EnforceNamespace: n.explicit()}, nil
}

// policyBody is the body that applies the files together: their
// documents, each file starting a new one.
func policyBody(files []policy.File) []byte {
	var b strings.Builder
	for _, f := range files {
		b.WriteString("---\n")
		b.Write(f.Data)
		b.WriteString("\n")
	}
	return []byte(b.String())
}

func newPolicyGetCmd() *cobra.Command {
	var f adminFlags
	var ns namespaceFlag
	var output string
	cmd := &cobra.Command{
		Use:   "get [NAME] [-n NAMESPACE | -A] [-o table|yaml|json]",
		Short: "Show the policies applied on the coordinator",
		Long: `Shows one policy by name, or the policies of a namespace (-n, default
"default"), or of every namespace (-A). With -o yaml or -o json, one policy is
printed as a NetworkPolicy and several as a List, in a form that
latch policy apply -f (and kubectl) read back unchanged:

  latch policy get -n shop -o yaml > shop.yaml
  latch policy apply -f shop.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "yaml" && output != "json" {
				return fmt.Errorf("--output %q: must be table, yaml or json", output)
			}
			if _, err := ns.options(); err != nil {
				return err
			}
			if ns.all && len(args) == 1 {
				return fmt.Errorf("a policy is named within one namespace: give -n NAMESPACE instead of --all-namespaces with a name")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			stored, err := c.Policies(cmd.Context())
			if err != nil {
				return err
			}
			var ps []*policy.Policy
			for _, sp := range stored {
				if !ns.all && sp.Namespace != ns.name || len(args) == 1 && sp.Name != args[0] {
					continue
				}
				p, err := policy.Parse("stored policy "+sp.Namespace+"/"+sp.Name, []byte(sp.YAML))
				if err != nil {
					return err
				}
				ps = append(ps, p...)
			}
			if len(args) == 1 && len(ps) == 0 {
				return notFound([]string{ns.name + "/" + args[0]})
			}
			return writePolicies(cmd.OutOrStdout(), cmd.ErrOrStderr(), output, ps, stored, len(args) == 1, ns)
		},
	}
	f.register(cmd)
	ns.register(cmd, true)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, yaml or json")
	return cmd
}

// policyList is a List of policies, as kubectl get -o yaml writes it.
type policyList struct {
	APIVersion string                       `json:"apiVersion"`
	Kind       string                       `json:"kind"`
	Items      []networkingv1.NetworkPolicy `json:"items"`
}

// writePolicies prints policies as `latch policy get` does: one policy
// (single) as itself, else a List; a table lists them.
func writePolicies(out, errOut io.Writer, format string, ps []*policy.Policy, stored []adminapi.Policy, single bool, ns namespaceFlag) error {
	var doc any
	if single {
		doc = &ps[0].NetworkPolicy
	} else {
		l := policyList{APIVersion: policy.ListAPIVersion, Kind: policy.ListKind, Items: []networkingv1.NetworkPolicy{}}
		for _, p := range ps {
			l.Items = append(l.Items, p.NetworkPolicy)
		}
		doc = l
	}
	switch format {
	case "yaml":
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "    ")
		return enc.Encode(doc)
	}
	if len(ps) == 0 {
		if ns.all {
			fmt.Fprintln(errOut, "No policies found.")
		} else {
			fmt.Fprintf(errOut, "No policies found in namespace %s.\n", ns.name)
		}
		return nil
	}
	applied := map[string]time.Time{}
	for _, sp := range stored {
		applied[sp.Namespace+"/"+sp.Name] = sp.UpdatedAt
	}
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	header := []any{"NAME", "POD-SELECTOR", "POLICY-TYPES", "APPLIED"}
	if ns.all {
		header = append([]any{"NAMESPACE"}, header...)
	}
	writeRow(tw, header...)
	for _, p := range ps {
		sel := metav1.FormatLabelSelector(&p.Spec.PodSelector)
		if sel == "" {
			sel = "<none>"
		}
		var types []string
		for _, t := range policyTypes(&p.NetworkPolicy) {
			types = append(types, string(t))
		}
		row := []any{p.Name, sel, strings.Join(types, ","), duration.HumanDuration(time.Since(applied[p.Key()])) + " ago"}
		if ns.all {
			row = append([]any{p.Namespace}, row...)
		}
		writeRow(tw, row...)
	}
	return tw.Flush()
}

// policyTypes are the directions a policy isolates: its policyTypes, or
// as Kubernetes defaults them (Ingress, and Egress if it has egress
// rules).
func policyTypes(np *networkingv1.NetworkPolicy) []networkingv1.PolicyType {
	if len(np.Spec.PolicyTypes) > 0 {
		return np.Spec.PolicyTypes
	}
	out := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(np.Spec.Egress) > 0 {
		out = append(out, networkingv1.PolicyTypeEgress)
	}
	return out
}

// notFound says which policies do not exist and how to list them.
func notFound(keys []string) error {
	var lines []string
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		lines = append(lines, fmt.Sprintf("policy %q not found in namespace %q: list them with latch policy get -n %s, or latch policy get -A for every namespace", name, ns, ns))
	}
	return errors.New(strings.Join(lines, "\n"))
}

func newPolicyDeleteCmd() *cobra.Command {
	var f adminFlags
	var ns namespaceFlag
	var files []string
	var ignoreNotFound bool
	cmd := &cobra.Command{
		Use:   "delete (NAME [NAME ...] | -f FILE [-f FILE ...]) [-n NAMESPACE]",
		Short: "Delete policies on the coordinator, by name or as named in files",
		Long: `Deletes the named policies of a namespace (-n, default "default"), or the
policies that files name (as latch policy apply -f reads them). NAMESPACE/NAME
names a policy of another namespace. A policy that does not exist is an
error, unless --ignore-not-found; the others are deleted all the same.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := ns.options()
			if err != nil {
				return err
			}
			var keys []string
			switch {
			case len(files) > 0 && len(args) > 0:
				return fmt.Errorf("give policy names or -f FILE, not both")
			case len(files) > 0:
				ps, err := readPolicies(files, opts)
				if err != nil {
					return err
				}
				for _, p := range ps {
					keys = append(keys, p.Key())
				}
			case len(args) > 0:
				for _, a := range args {
					k, err := policyKey(a, ns)
					if err != nil {
						return err
					}
					keys = append(keys, k)
				}
			default:
				return fmt.Errorf("no policy to delete: give its name (see latch policy get) or -f FILE")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			stored, err := c.Policies(cmd.Context())
			if err != nil {
				return err
			}
			exists := map[string]bool{}
			for _, sp := range stored {
				exists[sp.Namespace+"/"+sp.Name] = true
			}
			var missing []string
			for _, k := range keys {
				if !exists[k] {
					missing = append(missing, k)
					continue
				}
				pns, name, _ := strings.Cut(k, "/")
				if err := c.DeletePolicy(cmd.Context(), pns, name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "policy %s deleted\n", k)
			}
			if len(missing) > 0 && !ignoreNotFound {
				return notFound(missing)
			}
			return nil
		},
	}
	f.register(cmd)
	ns.register(cmd, false)
	cmd.Flags().Lookup("namespace").Usage = "namespace of the policies named, and of the policies a file names without one"
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "NetworkPolicy file naming the policies to delete; repeatable")
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "treat a policy that does not exist as deleted")
	return cmd
}

// policyKey is the namespace/name of a policy named NAME (in -n's
// namespace) or NAMESPACE/NAME.
func policyKey(arg string, ns namespaceFlag) (string, error) {
	pns, name, qualified := strings.Cut(arg, "/")
	if !qualified {
		pns, name = ns.name, arg
	}
	if pns == "" || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q: give the policy as NAME (with -n NAMESPACE) or NAMESPACE/NAME", arg)
	}
	if qualified && ns.explicit() && pns != ns.name {
		return "", fmt.Errorf("%q is in namespace %q, not in %q of --namespace: give one namespace", arg, pns, ns.name)
	}
	return pns + "/" + name, nil
}

func newPolicyDiffCmd() *cobra.Command {
	var f adminFlags
	var ns namespaceFlag
	var files []string
	cmd := &cobra.Command{
		Use:   "diff -f FILE [-f FILE ...] [-n NAMESPACE]",
		Short: "Show what latch policy apply would change, as a unified diff",
		Long: `Shows, for each policy of the files that latch policy apply -f would change,
a unified diff from the policy the coordinator holds (live) to the policy it
would hold (merged); a new policy is a diff from nothing. Like kubectl diff,
it exits with status 0 when nothing would change, 1 when something would,
and 2 on an error.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed, err := runPolicyDiff(cmd.Context(), cmd.OutOrStdout(), f, ns, files)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if changed {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &ExitError{Code: 2, Err: err} })
	f.register(cmd)
	ns.register(cmd, false)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "NetworkPolicy file; repeatable")
	return cmd
}

// runPolicyDiff prints the diffs and says whether applying would change
// anything.
func runPolicyDiff(ctx context.Context, out io.Writer, f adminFlags, ns namespaceFlag, files []string) (bool, error) {
	if len(files) == 0 {
		return false, fmt.Errorf("no policy file: give one or more with -f FILE")
	}
	opts, err := ns.options()
	if err != nil {
		return false, err
	}
	in, err := readPolicyFiles(files)
	if err != nil {
		return false, err
	}
	ps, err := policy.ParseFilesWith(opts, in...)
	if err != nil {
		return false, err
	}
	if len(ps) == 0 {
		return false, fmt.Errorf("no NetworkPolicy documents in %s: nothing to compare", strings.Join(files, ", "))
	}
	c, err := f.client()
	if err != nil {
		return false, err
	}
	v, err := c.ValidatePolicies(ctx, opts.DefaultNamespace, policyBody(in))
	if err != nil {
		return false, err
	}
	if !v.Valid {
		var msgs []string
		for _, p := range v.Problems {
			msgs = append(msgs, p.Message)
		}
		return false, fmt.Errorf("the coordinator refused the policies: %s", strings.Join(msgs, "\n  "))
	}
	changed := false
	for _, ch := range v.Changes {
		if ch.Before == ch.After {
			continue
		}
		changed = true
		file := "networking.k8s.io.v1.NetworkPolicy." + strings.Replace(ch.Key, "/", ".", 1)
		if _, err := io.WriteString(out, unifiedDiff("live/"+file, "merged/"+file, ch.Before, ch.After)); err != nil {
			return false, err
		}
	}
	return changed, nil
}

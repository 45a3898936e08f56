package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/policy"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// adminFlags locate the coordinator's admin API.
type adminFlags struct {
	coordinator, tokenFile, caFile string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.coordinator, "coordinator", os.Getenv("LATCH_COORDINATOR"), "coordinator URL, such as https://127.0.0.1:7443 (env LATCH_COORDINATOR)")
	fl.StringVar(&f.tokenFile, "token-file", os.Getenv("LATCH_TOKEN_FILE"), "file holding the admin API token (env LATCH_TOKEN_FILE)")
	fl.StringVar(&f.caFile, "ca-file", os.Getenv("LATCH_CA_FILE"), "the coordinator's CA certificate (default: ca.crt next to the token file)")
}

// client returns the typed admin API client (package adminapi/client)
// over TLS, trusting only the coordinator's CA and checking its SPIFFE ID.
func (f *adminFlags) client() (*client.Client, error) {
	if f.coordinator == "" {
		return nil, fmt.Errorf("no coordinator: pass --coordinator https://HOST:PORT or set LATCH_COORDINATOR")
	}
	if f.tokenFile == "" {
		return nil, fmt.Errorf("no admin token: pass --token-file DATA_DIR/admin.token or set LATCH_TOKEN_FILE")
	}
	tok, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("reading the admin token: %w", err)
	}
	caFile := f.caFile
	if caFile == "" {
		caFile = filepath.Join(filepath.Dir(f.tokenFile), "ca.crt")
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the coordinator's CA certificate (--ca-file): %w", err)
	}
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFile, err)
	}
	if len(root.URIs) == 0 {
		return nil, fmt.Errorf("%s: not a Latch CA (no SPIFFE trust domain)", caFile)
	}
	td, err := spiffeid.TrustDomainFromURI(root.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFile, err)
	}
	coordID, err := spiffeid.FromSegments(td, "latch", "coordinator")
	if err != nil {
		return nil, err
	}
	tlsCfg := tlsconfig.TLSClientConfig(x509bundle.FromX509Authorities(td, []*x509.Certificate{root}), tlsconfig.AuthorizeID(coordID))
	return client.New(f.coordinator, string(tok), &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}), nil
}

func newAdminCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{Use: "admin", Short: "Administer a coordinator: join tokens, nodes, namespaces, audit, users, API tokens"}
	f.register(cmd)
	token := &cobra.Command{Use: "token", Short: "Join tokens"}
	var req adminapi.JoinTokenRequest
	var labels string
	var workloads []string
	create := &cobra.Command{
		Use:   "create [--namespace NS] [--labels k=v,...] [--workload GRANT ...]",
		Short: "Create a join token and print it",
		Long: `Creates a join token and prints it. A node enrolling with it gets exactly the
token's namespace and labels (it cannot ask for others), and may host exactly
the workloads the token grants: each --workload is
` + grant.SpecHelp + `
and admits workloads in that namespace carrying exactly those labels (no more,
no fewer) whose name matches the pattern (any name if omitted). Grants of an
enrolled node are changed with "latch admin node grant|revoke".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.Labels, err = parseNodeLabels(labels); err != nil {
				return err
			}
			ws, err := parseGrants(workloads)
			if err != nil {
				return err
			}
			req.Workloads = toAPIGrants(ws)
			c, err := f.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateJoinToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			return nil
		},
	}
	create.Flags().StringVar(&req.Namespace, "namespace", "", "namespace of the nodes that enroll with it (default \"default\")")
	create.Flags().StringVar(&labels, "labels", "", "labels for the nodes, k=v,k=v (the nodes get exactly these)")
	create.Flags().StringArrayVar(&workloads, "workload", nil, "a workload the nodes may host, "+grant.SpecHelp+"; repeatable")
	create.Flags().IntVar(&req.Uses, "uses", 1, "how many nodes may enroll with it")
	create.Flags().StringVar(&req.TTL, "ttl", "1h", "how long it is valid, at most 720h (30 days)")
	token.AddCommand(create, &cobra.Command{
		Use:   "list",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ts, err := c.JoinTokens(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "ID", "NAMESPACE", "LABELS", "USES LEFT", "EXPIRES", "REVOKED", "WORKLOADS")
			for _, t := range ts {
				writeRow(tw, t.ID, t.Namespace, formatLabels(t.Labels), t.UsesLeft, t.ExpiresAt.Format(time.RFC3339), t.Revoked, formatGrants(t.Workloads))
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RevokeJoinToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
			return nil
		},
	})

	ns := &cobra.Command{Use: "namespace", Short: "Namespaces"}
	var nsLabels, nsMode string
	set := &cobra.Command{
		Use:   "set NAME [--labels k=v,...] [--mode enforce|monitor]",
		Short: "Create a namespace or change its labels and mode",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			l, err := parseNodeLabels(nsLabels)
			if err != nil {
				return err
			}
			if _, err := c.PutNamespace(cmd.Context(), args[0], adminapi.Namespace{Labels: l, Mode: nsMode}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "namespace %s set\n", args[0])
			return nil
		},
	}
	set.Flags().StringVar(&nsLabels, "labels", "", "labels, k=v,k=v")
	set.Flags().StringVar(&nsMode, "mode", "enforce", "enforce or monitor")
	ns.AddCommand(set, &cobra.Command{
		Use:   "list",
		Short: "List namespaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			list, err := c.Namespaces(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "NAME", "MODE", "LABELS")
			for _, n := range list {
				writeRow(tw, n.Name, n.Mode, formatLabels(n.Labels))
			}
			return tw.Flush()
		},
	})

	node := &cobra.Command{Use: "node", Short: "Nodes"}
	node.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			return writeNodeList(cmd.OutOrStdout(), nodes)
		},
	}, &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a node: revoke its certificate and remove it from every peer",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteNode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s deleted\n", args[0])
			return nil
		},
	}, &cobra.Command{
		Use:   "peers NAME",
		Short: "Show the peers in a node's view",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			v, err := c.NodeView(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, p := range v.Peers {
				var ips []string
				for _, a := range p.AllowedIPs {
					ips = append(ips, a.String())
				}
				writeRow(cmd.OutOrStdout(), p.Node, strings.Join(ips, ","))
			}
			return nil
		},
	})
	node.AddCommand(spiffeNodeCmds(&f)...)
	node.AddCommand(grantCmds(&f)...)
	audit := &cobra.Command{
		Use:   "audit",
		Short: "Show the newest audit entries: who changed what and when",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			entries, err := c.Audit(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "TIME", "ACTOR", "ACTION", "OBJECT")
			for _, e := range entries {
				writeRow(tw, e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Object)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(token, node, ns, audit, newRouteCmd(&f), newSiteCmd(&f), newUserCmd(&f), newAPITokenCmd(&f))
	return cmd
}

// newUserCmd is `latch admin user create|list|delete`: console users.
func newUserCmd(f *adminFlags) *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "Web console users (roles admin and viewer)"}
	var role string
	var pwStdin bool
	create := &cobra.Command{
		Use:   "create NAME --role admin|viewer [--password-stdin]",
		Short: "Create a console user; without --password-stdin a password is generated and printed once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := auth.CheckRole(role); err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			req := adminapi.UserRequest{Name: args[0], Role: role}
			if pwStdin {
				data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4096))
				if err != nil {
					return fmt.Errorf("reading the password from stdin: %w", err)
				}
				req.Password = strings.TrimRight(string(data), "\r\n")
				if err := auth.CheckPassword(req.Password); err != nil {
					return err
				}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateUser(cmd.Context(), req)
			if err != nil {
				return err
			}
			if resp.Password != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "user %s (%s) created; password (shown once): %s\n", resp.Name, resp.Role, resp.Password)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "user %s (%s) created\n", resp.Name, resp.Role)
			}
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "viewer", "admin (may change things) or viewer (reads only)")
	create.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from stdin instead of generating one")
	user.AddCommand(create, &cobra.Command{
		Use:   "list",
		Short: "List console users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			us, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "NAME", "ROLE", "CREATED")
			for _, u := range us {
				writeRow(tw, u.Name, u.Role, u.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a console user and end its sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted\n", args[0])
			return nil
		},
	})
	return user
}

// newAPITokenCmd is `latch admin apitoken create|list|revoke`: bearer
// tokens for automation, with a role.
func newAPITokenCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "apitoken", Short: "API tokens for automation (roles admin and viewer)"}
	var req adminapi.APITokenRequest
	create := &cobra.Command{
		Use:   "create NAME --role admin|viewer [--ttl 720h]",
		Short: "Create an API token and print it (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			c, err := f.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateAPIToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			return nil
		},
	}
	create.Flags().StringVar(&req.Role, "role", "viewer", "admin or viewer")
	create.Flags().StringVar(&req.TTL, "ttl", "", "how long it is valid (default 2160h, 90 days; at most 8760h, 365 days)")
	cmd.AddCommand(create, &cobra.Command{
		Use:   "list",
		Short: "List API tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ts, err := c.APITokens(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "ID", "NAME", "ROLE", "CREATED BY", "EXPIRES", "REVOKED")
			for _, t := range ts {
				exp := "never"
				if !t.ExpiresAt.IsZero() {
					exp = t.ExpiresAt.Format(time.RFC3339)
				}
				writeRow(tw, t.ID, t.Name, t.Role, t.CreatedBy, exp, t.Revoked)
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RevokeAPIToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "API token %s revoked\n", args[0])
			return nil
		},
	})
	return cmd
}

// newPolicyAdminCmds are `latch policy list` (get, delete and diff are in
// policy_kubectl.go).
func newPolicyAdminCmds() []*cobra.Command {
	var f adminFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the policies applied on the coordinator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ps, err := c.Policies(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			writeRow(tw, "NAMESPACE", "NAME", "UPDATED")
			for _, p := range ps {
				writeRow(tw, p.Namespace, p.Name, p.UpdatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	f.register(list)
	return []*cobra.Command{list}
}

// newPolicyApplyCmd is `latch policy apply -f FILE`: the files are checked
// here first (with their own names in messages) and then sent together,
// so the coordinator applies all or nothing.
func newPolicyApplyCmd() *cobra.Command {
	var f adminFlags
	var files []string
	var ns namespaceFlag
	cmd := &cobra.Command{
		Use:   "apply -f FILE [-f FILE ...] [-n NAMESPACE]",
		Short: "Validate NetworkPolicy files and apply them on the coordinator",
		Long: `Validates the files and applies every policy in them on the coordinator, all
or nothing. A file holds NetworkPolicy documents (YAML, several separated by
"---", or JSON), or a List or NetworkPolicyList of them, as kubectl get -o yaml
writes. A policy without metadata.namespace goes to the namespace of -n
(default "default"); a policy that names its namespace keeps it, unless -n is
given and differs, which is an error (as with kubectl).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("no policy file: give one or more with -f FILE")
			}
			opts, err := ns.options()
			if err != nil {
				return err
			}
			in, err := readPolicyFiles(files)
			if err != nil {
				return err
			}
			ps, err := policy.ParseFilesWith(opts, in...)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			resp, err := c.ApplyPolicies(cmd.Context(), strings.Join(files, ","), opts.DefaultNamespace, policyBody(in))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %d policies: %s\n", len(ps), strings.Join(resp.Applied, ", "))
			return nil
		},
	}
	f.register(cmd)
	ns.register(cmd, false)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "NetworkPolicy file; repeatable")
	return cmd
}

func formatLabels(l map[string]string) string {
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// writeNodeList prints `latch admin node list`: each node with its SPIFFE
// ID and where that identity comes from (ca: enrolled with a join token;
// spire: an SVID from the trusted SPIRE deployment). The SPIFFE ID is the
// last column so that the earlier ones keep their places.
func writeNodeList(w io.Writer, nodes []adminapi.Node) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeRow(tw, "NAME", "NAMESPACE", "IP", "LABELS", "LAST SEEN", "IDENTITY", "SPIFFE ID")
	for _, n := range nodes {
		writeRow(tw, n.Name, n.Namespace, n.IP, formatLabels(n.Labels), n.LastSeen.Format(time.RFC3339), n.Identity, n.SpiffeID)
	}
	return tw.Flush()
}

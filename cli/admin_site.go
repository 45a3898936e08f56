package cli

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/latchnet/latch/adminapi"
	"github.com/spf13/cobra"
)

// newSiteCmd is `latch admin site list|set|delete`: the sites, networks
// of agentless hosts that policy selects by labels and by address.
func newSiteCmd(f *adminFlags) *cobra.Command {
	site := &cobra.Command{
		Use:   "site",
		Short: "List, declare and delete sites: networks of hosts that run no agent",
		Long: `A site is a network of hosts that run no agent (a VPC subnet, a data-centre
subnet, an office LAN), named NAMESPACE/NAME like a workload. For policy, the
host at each address of its CIDRs is a pod of its namespace with its labels,
so podSelector and namespaceSelector select it as well as ipBlock does.
A site's CIDRs may overlap no other site's, nor the overlay. Traffic reaches a
site only through a gateway whose approved route covers it (see
"latch admin route").`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the sites",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			sites, err := c.Sites(cmd.Context())
			if err != nil {
				return err
			}
			return writeSiteList(cmd.OutOrStdout(), sites)
		},
	}
	var labels, cidrs string
	var ports []string
	set := &cobra.Command{
		Use:   "set NAMESPACE/NAME --cidr PREFIX[,PREFIX...] [--labels k=v,...] [--port [NAME=]PORT[/PROTOCOL] ...]",
		Short: "Declare a site, or replace one with exactly what the flags give",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, err := siteKey(args[0])
			if err != nil {
				return err
			}
			var req adminapi.SiteRequest
			if req.Labels, err = parseNodeLabels(labels); err != nil {
				return err
			}
			for _, p := range strings.Split(cidrs, ",") {
				if p = strings.TrimSpace(p); p != "" {
					req.CIDRs = append(req.CIDRs, p)
				}
			}
			if len(req.CIDRs) == 0 {
				return fmt.Errorf("--cidr: give the site's IPv4 prefixes, for example --cidr 198.19.1.0/24")
			}
			for _, s := range ports {
				p, err := parseSitePort(s)
				if err != nil {
					return err
				}
				req.Ports = append(req.Ports, p)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			out, err := c.PutSite(cmd.Context(), ns, name, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "site %s/%s set: %s\n", termSafe(out.Namespace), termSafe(out.Name), formatPrefixes(out))
			return nil
		},
	}
	set.Flags().StringVar(&cidrs, "cidr", "", "the site's IPv4 prefixes, comma-separated: 198.19.1.0/24,198.19.2.0/24 (required)")
	set.Flags().StringVar(&labels, "labels", "", "labels, k=v,k=v")
	set.Flags().StringArrayVar(&ports, "port", nil, "a port the site's hosts serve, [NAME=]PORT[/PROTOCOL] (TCP if not given), such as postgres=5432/TCP; repeatable")
	del := &cobra.Command{
		Use:   "delete NAMESPACE/NAME",
		Short: "Delete a site",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, err := siteKey(args[0])
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSite(cmd.Context(), ns, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "site %s/%s deleted\n", termSafe(ns), termSafe(name))
			return nil
		},
	}
	site.AddCommand(list, set, del)
	return site
}

// siteKey splits NAMESPACE/NAME.
func siteKey(s string) (string, string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q: name the site as NAMESPACE/NAME, such as site-eu/db", s)
	}
	return ns, name, nil
}

// parseSitePort parses [NAME=]PORT[/PROTOCOL].
func parseSitePort(s string) (adminapi.Port, error) {
	var p adminapi.Port
	rest := strings.TrimSpace(s)
	if name, r, ok := strings.Cut(rest, "="); ok {
		p.Name, rest = name, r
	}
	num, proto, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return p, fmt.Errorf("--port %q: want [NAME=]PORT[/PROTOCOL] with a port from 1 to 65535, such as postgres=5432/TCP", s)
	}
	p.Port, p.Protocol = uint16(n), strings.ToUpper(proto)
	return p, nil
}

func formatPrefixes(s adminapi.Site) string {
	var out []string
	for _, p := range s.CIDRs {
		out = append(out, p.String())
	}
	return strings.Join(out, ",")
}

func formatSitePorts(ps []adminapi.Port) string {
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.Name != "" {
			s = p.Name + "=" + s
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// writeSiteList prints sites as a table.
func writeSiteList(w io.Writer, sites []adminapi.Site) error {
	if len(sites) == 0 {
		fmt.Fprintln(w, "no sites: declare one with latch admin site set NAMESPACE/NAME --cidr PREFIX")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeRow(tw, "NAMESPACE", "NAME", "CIDRS", "LABELS", "PORTS")
	for _, s := range sites {
		writeRow(tw, s.Namespace, s.Name, formatPrefixes(s), cmp.Or(formatLabels(s.Labels), "-"), cmp.Or(formatSitePorts(s.Ports), "-"))
	}
	return tw.Flush()
}

package inventory

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// OverlayRange is the overlay's address range; no site may overlap it.
var OverlayRange = netip.MustParsePrefix("100.64.0.0/10")

// Site is a network of agentless hosts that an administrator declares: a
// VPC, a data-centre subnet, an office LAN. Its members are the hosts at
// every address of its CIDRs. For policy each member is a pod of Namespace
// with Labels (selectable by podSelector and namespaceSelector) and an
// external address (selectable by ipBlock).
type Site struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// CIDRs are the site's IPv4 prefixes, canonical network addresses.
	CIDRs []netip.Prefix `json:"cidrs"`
	// Ports are the ports the site's hosts serve, as a workload's are:
	// the ports `latch policy eval` tries and the names named ports
	// resolve against.
	Ports []Port `json:"ports,omitempty"`
}

// Key is "namespace/name", the site's unique name; sites, workloads and
// nodes share one name space.
func (s *Site) Key() string { return s.Namespace + "/" + s.Name }

// Contains reports whether addr is one of the site's hosts.
func (s *Site) Contains(addr netip.Addr) bool {
	for _, c := range s.CIDRs {
		if c.Contains(addr) {
			return true
		}
	}
	return false
}

// Host returns the workload that stands for the site's host at addr: the
// site's name, namespace, labels and ports, with IP addr. Policy decides a
// site host's flows exactly as a workload's.
func (s *Site) Host(addr netip.Addr) Workload {
	return Workload{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, IP: addr, Ports: s.Ports}
}

// SiteOf returns the site whose CIDRs hold addr, or nil.
func (inv *Inventory) SiteOf(addr netip.Addr) *Site {
	for i := range inv.Sites {
		if inv.Sites[i].Contains(addr) {
			return &inv.Sites[i]
		}
	}
	return nil
}

// overlaps reports whether two prefixes share an address.
func overlaps(a, b netip.Prefix) bool {
	return a.Contains(b.Addr()) || b.Contains(a.Addr())
}

// validateSites checks the sites: names, namespaces, labels, ports and
// CIDRs (IPv4, canonical, outside the overlay range, no overlap between or
// within sites). names holds the keys of workloads and nodes already seen.
func (inv *Inventory) validateSites(add func(string, ...any), nsSeen map[string]bool, names map[string]string) {
	type owned struct {
		p     netip.Prefix
		where string
		site  string
	}
	var all []owned
	for i := range inv.Sites {
		s := &inv.Sites[i]
		w := fmt.Sprintf("sites[%d]", i)
		if !nsSeen[s.Namespace] {
			add("%s.namespace: namespace %q is not listed under namespaces", w, s.Namespace)
		}
		if other, ok := names[s.Key()]; ok {
			add("%s: %s is already the name of %s", w, s.Key(), other)
		}
		names[s.Key()] = w
		for j, p := range checkSite(add, w, s) {
			pw := fmt.Sprintf("%s.cidrs[%d]", w, j)
			if !p.IsValid() {
				continue
			}
			for _, o := range all {
				if overlaps(p, o.p) {
					add("%s: %s overlaps %s (%s of site %s): a site address must belong to one site", pw, p, o.p, o.where, o.site)
				}
			}
			all = append(all, owned{p, pw, s.Key()})
		}
	}
	// A workload or node address inside a site would make the address
	// ambiguous.
	for i, wl := range inv.Workloads {
		if s := inv.SiteOf(wl.IP); s != nil {
			add("workloads[%d].ip: %s is inside site %s: workloads take overlay addresses (%s)", i, wl.IP, s.Key(), OverlayRange)
		}
	}
	for i, n := range inv.Nodes {
		if s := inv.SiteOf(n.IP); s != nil {
			add("nodes[%d].ip: %s is inside site %s: nodes take overlay addresses (%s)", i, n.IP, s.Key(), OverlayRange)
		}
	}
}

// field is the path of field f of what where names ("" for the top).
func field(where, f string) string {
	if where == "" {
		return f
	}
	return where + "." + f
}

// checkSite checks what a site holds by itself: its name, labels, ports
// and CIDRs (given, IPv4, network addresses, outside the overlay range).
// where names the site in messages ("" for a site checked alone). It
// returns the CIDRs with the invalid ones zeroed, for the overlap checks.
func checkSite(add func(string, ...any), where string, s *Site) []netip.Prefix {
	checkName(add, where, s.Name)
	checkLabels(add, where, s.Labels)
	checkPorts(add, where, s.Ports)
	if len(s.CIDRs) == 0 {
		add("%s: required: give the site's IPv4 prefixes, for example 198.19.1.0/24", field(where, "cidrs"))
	}
	out := make([]netip.Prefix, len(s.CIDRs))
	for j, p := range s.CIDRs {
		pw := field(where, fmt.Sprintf("cidrs[%d]", j))
		switch {
		case !p.IsValid():
			add("%s: not a prefix: give an IPv4 prefix such as 198.19.1.0/24", pw)
		case !p.Addr().Is4():
			add("%s: %s is not IPv4: sites are IPv4 prefixes", pw, p)
		case p != p.Masked():
			add("%s: %s is not a network address: write %s", pw, p, p.Masked())
		case overlaps(p, OverlayRange):
			add("%s: %s overlaps the overlay range %s: give the site's own prefix", pw, p, OverlayRange)
		default:
			out[j] = p
		}
	}
	return out
}

// Validate checks one site by itself, with the rules Inventory.Validate
// applies to each site: its name and namespace name, labels, ports and
// CIDRs, none overlapping another of the site. Whether its namespace
// exists, its name is free and its CIDRs overlap another site's is for the
// caller, who knows the others. The error wraps ErrInvalid and names every
// problem by its field (cidrs[1]: ...).
func (s *Site) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	for _, e := range validation.IsDNS1123Label(s.Namespace) {
		add("namespace: %q: %s", s.Namespace, e)
	}
	ps := checkSite(add, "", s)
	for j, p := range ps {
		for k := range j {
			if p.IsValid() && ps[k].IsValid() && overlaps(p, ps[k]) {
				add("cidrs[%d]: %s overlaps %s (cidrs[%d]): a site address must belong to one site", j, p, ps[k], k)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return &siteError{fmt.Sprintf("site %s: %s", s.Key(), strings.Join(errs, "; "))}
}

// siteError is Site.Validate's error: it says what is wrong with the site
// (without "invalid inventory": a site checked alone is not an inventory)
// and matches ErrInvalid.
type siteError struct{ msg string }

func (e *siteError) Error() string { return e.msg }
func (e *siteError) Unwrap() error { return ErrInvalid }

// SortPrefixes orders prefixes by address, then by length (shorter first).
func SortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Route is a subnet a node advertises: it offers to carry traffic
// between the overlay and the hosts of Prefix (a gateway). It takes
// effect only once an admin approves it.
type Route struct {
	// Prefix is an IPv4 network in CIDR notation, 198.19.1.0/24.
	Prefix string `json:"prefix"`
	// SNAT asks the gateway to rewrite the overlay source address of the
	// traffic it forwards into the subnet to its own address there.
	SNAT bool `json:"snat,omitempty"`
}

// RouteStatus is what the coordinator decided about an advertised route.
type RouteStatus struct {
	Prefix string `json:"prefix"`
	SNAT   bool   `json:"snat,omitempty"`
	// Status is RouteAdvertised, RouteApproved or RouteRejected.
	Status string `json:"status"`
}

// Statuses of an advertised route.
const (
	// RouteAdvertised: the node offers it; it waits for an admin.
	RouteAdvertised = "advertised"
	// RouteApproved: an admin approved it.
	RouteApproved = "approved"
	// RouteRejected: an admin rejected it; it stays rejected while the
	// node advertises it, until an admin approves it.
	RouteRejected = "rejected"
)

// Limits of advertised routes.
const (
	// MaxRoutes is how many routes one node may advertise.
	MaxRoutes = 64
	// MinRouteBits is the shortest prefix length a route may have: a
	// shorter one (a /7, a default route) would capture a large part of
	// the internet, including the underlay the tunnels run over.
	MinRouteBits = 8
)

// ErrRoute is wrapped by every error of ParseRoutes and CheckRoutes.
var ErrRoute = errors.New("invalid route")

// RouteSyntax describes the text form ParseRoutes reads.
const RouteSyntax = "PREFIX[:snat] separated by commas, e.g. 198.19.1.0/24,198.19.2.0/24:snat"

// ParseRoutes reads advertised routes written as RouteSyntax. It checks
// the syntax only; CheckRoutes checks the prefixes.
func ParseRoutes(s string) ([]Route, error) {
	var out []Route
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		r, err := ParseRoute(field)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseRoute reads one route, PREFIX or PREFIX:snat.
func ParseRoute(s string) (Route, error) {
	prefix, opt, hasOpt := strings.Cut(strings.TrimSpace(s), ":")
	r := Route{Prefix: prefix}
	if hasOpt {
		if opt != "snat" {
			return r, fmt.Errorf("%w: %q: the only option after ':' is snat (%s)", ErrRoute, s, RouteSyntax)
		}
		r.SNAT = true
	}
	return r, nil
}

// String is the route as ParseRoute reads it.
func (r Route) String() string {
	if r.SNAT {
		return r.Prefix + ":snat"
	}
	return r.Prefix
}

// CheckRoutePrefix parses and checks one advertised prefix: IPv4, a
// network address, at least MinRouteBits long, and, when overlay is
// valid, outside the overlay.
func CheckRoutePrefix(s string, overlay netip.Prefix) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%w: %q is not a prefix in CIDR notation: write it as 198.19.1.0/24", ErrRoute, s)
	}
	if !p.Addr().Is4() {
		return p, fmt.Errorf("%w: %s is IPv6: only IPv4 subnets can be advertised so far", ErrRoute, s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%w: %s is not a network address: did you mean %s?", ErrRoute, s, p.Masked())
	}
	if p.Bits() < MinRouteBits {
		return p, fmt.Errorf("%w: %s is shorter than /%d: it would capture a large part of the internet, including the underlay the tunnels run over; advertise the site's own subnets", ErrRoute, s, MinRouteBits)
	}
	if overlay.IsValid() && overlay.Overlaps(p) {
		return p, fmt.Errorf("%w: %s overlaps the overlay %s: a site subnet must lie outside the overlay range", ErrRoute, s, overlay)
	}
	return p, nil
}

// CheckRoutes checks the routes one node advertises: at most MaxRoutes,
// each valid (CheckRoutePrefix), none given twice and none overlapping
// another. It returns the prefixes in the order of routes.
func CheckRoutes(routes []Route, overlay netip.Prefix) ([]netip.Prefix, error) {
	if len(routes) > MaxRoutes {
		return nil, fmt.Errorf("%w: %d routes advertised, at most %d are allowed: advertise fewer, wider subnets", ErrRoute, len(routes), MaxRoutes)
	}
	out := make([]netip.Prefix, 0, len(routes))
	for _, r := range routes {
		p, err := CheckRoutePrefix(r.Prefix, overlay)
		if err != nil {
			return nil, err
		}
		for i, q := range out {
			switch {
			case q == p:
				return nil, fmt.Errorf("%w: %s is advertised twice: give it once", ErrRoute, p)
			case q.Overlaps(p):
				return nil, fmt.Errorf("%w: %s overlaps %s, also advertised: advertise only one of them", ErrRoute, p, routes[i].Prefix)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

package netlab

import (
	"net/netip"
	"regexp"
	"strconv"
)

// siteName is what Lab.Site accepts: short, because it names a link inside
// each attached host ("s-" + name, at most 15 bytes).
var siteName = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// sitePrefix is where every site prefix must lie (the site networks of
// DESIGN.md).
var sitePrefix = netip.MustParsePrefix("198.19.0.0/16")

// Site is a LAN of a lab apart from the underlay: a bridge of its own in the
// hub namespace, to which gateways are attached (Attach) and on which
// agentless hosts live (Host). It stands for a cloud VPC, an office or a
// data-centre subnet.
type Site struct {
	// Name is the name given to Lab.Site; Link ("s-" + Name) is the
	// site's interface inside every host attached to it.
	Name, Link string
	// Prefix is the site's subnet, inside 198.19.0.0/16.
	Prefix netip.Prefix

	lab    *Lab
	index  int
	bridge string
	ports  int // veths made so far; must hold lab.mu
}

// Site adds a site LAN with the given prefix. name must match
// [a-z][a-z0-9]{0,9} and be new in this lab; prefix must lie inside
// 198.19.0.0/16.
func (l *Lab) Site(name string, prefix netip.Prefix) *Site {
	l.t.Helper()
	if !siteName.MatchString(name) {
		l.t.Fatalf("netlab: site name %q: want [a-z][a-z0-9]{0,9}", name)
	}
	if !prefix.IsValid() || prefix != prefix.Masked() || !prefix.Addr().Is4() || prefix.Bits() < sitePrefix.Bits() || !sitePrefix.Contains(prefix.Addr()) {
		l.t.Fatalf("netlab: site %s: prefix %v: want a network prefix inside %v", name, prefix, sitePrefix)
	}
	l.mu.Lock()
	for _, s := range l.sites {
		if s.Name == name {
			l.mu.Unlock()
			l.t.Fatalf("netlab: site %q added twice", name)
		}
	}
	s := &Site{Name: name, Link: "s-" + name, Prefix: prefix, lab: l, index: len(l.sites)}
	s.bridge = "ls" + strconv.Itoa(s.index) + "-" + l.suffix
	l.sites = append(l.sites, s)
	l.mu.Unlock()
	for _, st := range [][]string{
		{"-n", l.hub, "link", "add", s.bridge, "type", "bridge"},
		{"-n", l.hub, "link", "set", s.bridge, "up"},
	} {
		if err := ip(st...); err != nil {
			l.t.Fatalf("netlab: site %s: %v", name, err)
		}
	}
	return s
}

// Attach plugs host h into the site with address a (on link s.Link), as a
// gateway or router of the site would be. a must lie inside the site's
// prefix.
func (s *Site) Attach(h *Host, a netip.Addr) {
	s.lab.t.Helper()
	if !s.Prefix.Contains(a) {
		s.lab.t.Fatalf("netlab: site %s: address %v is outside %v", s.Name, a, s.Prefix)
	}
	s.lab.mu.Lock()
	port := "s" + strconv.Itoa(s.index) + "x" + strconv.Itoa(s.ports) + "-" + s.lab.suffix
	s.ports++
	s.lab.mu.Unlock()
	for _, st := range [][]string{
		{"-n", s.lab.hub, "link", "add", port, "type", "veth", "peer", "name", s.Link, "netns", h.NS},
		{"-n", s.lab.hub, "link", "set", port, "master", s.bridge, "up"},
		{"-n", h.NS, "addr", "add", netip.PrefixFrom(a, s.Prefix.Bits()).String(), "dev", s.Link},
		{"-n", h.NS, "link", "set", s.Link, "up"},
	} {
		if err := ip(st...); err != nil {
			s.lab.t.Fatalf("netlab: site %s: attaching %s: %v", s.Name, h.Name, err)
		}
	}
}

// Host adds an agentless host of the site: a namespace whose only link is
// the site's, holding address a, with its default route through router
// (the site's router or gateway; the zero address for none). It has no
// underlay address.
func (s *Site) Host(name string, a, router netip.Addr) *Host {
	l := s.lab
	l.t.Helper()
	l.checkHostName(name)
	l.mu.Lock()
	if _, dup := l.hosts[name]; dup {
		l.mu.Unlock()
		l.t.Fatalf("netlab: host %q added twice", name)
	}
	h := &Host{Name: name, NS: nsPrefix + name + "-" + l.suffix, Link: s.Link, lab: l}
	l.hosts[name] = h
	l.mu.Unlock()
	if err := l.addNS(h.NS); err != nil {
		l.t.Fatalf("netlab: host %s: %v", name, err)
	}
	if err := ip("-n", h.NS, "link", "set", "lo", "up"); err != nil {
		l.t.Fatalf("netlab: host %s: %v", name, err)
	}
	s.Attach(h, a)
	if router.IsValid() {
		s.Route(h, netip.MustParsePrefix("0.0.0.0/0"), router)
	}
	return h
}

// Route adds (or replaces) a route in h's namespace: to dst through gw on
// the site's link, as a site's router is told where another site or the
// overlay lies.
func (s *Site) Route(h *Host, dst netip.Prefix, gw netip.Addr) {
	s.lab.t.Helper()
	if err := ip("-n", h.NS, "route", "replace", dst.String(), "via", gw.String(), "dev", s.Link); err != nil {
		s.lab.t.Fatalf("netlab: site %s: route in %s: %v", s.Name, h.Name, err)
	}
}

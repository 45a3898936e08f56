package netmap

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Sites and gateways. A site's hosts run no agent; a gateway is a node
// with approved routes that cover site addresses. For every site address
// the primary gateway is the node with the lowest name among the online
// nodes whose approved routes contain it (SetGatewayOnline; a node not
// marked offline counts as online); when none of them is online, the
// lowest-named of them stays primary, since dropping it would cut the
// address off for certain. A node N gets
// the primary gateway G of a site address a as a peer iff some flow
// between one of N's workloads (N itself included) and the site host at
// a is allowed in either direction on some protocol and port; G's
// AllowedIPs on N then hold exactly those addresses, as minimal prefixes,
// and G's view holds N as a peer with the addresses of those workloads
// and their identities. A namespace in monitor mode lets everything
// through on its side, as for workloads.
//
// Standby gateways: every other online gateway H whose approved routes
// contain a is a standby for it. N and H then hold each other as peers
// without AllowedIPs (unless they are peers for other reasons), so that
// their WireGuard session is up, kept by the persistent keepalive, when H
// takes over: a failover moves AllowedIPs only, with no handshake to wait
// for. The same holds between the gateways of two sites (site to site).
//
// Two sites S and T behind different primary gateways GS and GT: when a
// flow between a host of S and a host of T is allowed in either
// direction, GS gets GT as a peer with exactly those addresses of T, and
// GT gets GS with those of S; each gateway enforces its own site's side
// with the site's rule tables, which name the other site by CIDR. Two
// site addresses behind the same gateway (two sites, or one site)
// exchange traffic without the tunnel: Latch does not see it.
//
// Every gateway's view lists its approved routes (View.Routes), each
// marked Primary when the gateway is the primary gateway for a site
// address in it.
//
// The site part of the views is recomputed whole on every change while
// the engine holds sites or routes, with the reference evaluator, and
// merged into the views; nodes whose part changed are rebuilt and
// reported like any other. An engine with neither builds views exactly
// as before.

// sitePart is what the sites add to one node's view.
type sitePart struct {
	// peers are the gateways (on a node) or the nodes (on a gateway) to
	// add, with the prefixes to add to their AllowedIPs, by node name.
	peers map[string]view.Peer
	// idents are the identities of the remote workloads whose site flows
	// a gateway carries, sorted by address.
	idents []view.IdentityEntry
	ids    []int32 // the workloads of idents
	// primary are, on a gateway, the addresses of each site it is the
	// primary gateway for, by site key.
	primary []primarySite
	// routes are, on a gateway, its approved routes (View.Routes).
	routes []view.Route
}

type primarySite struct {
	site  string
	cidrs []view.Prefix
}

// siteHost stands for every host of a site in the rule tables: the
// site's namespace, labels and ports.
type siteHost struct {
	host  *workload
	cidrs []view.Prefix
}

// indexSites recomputes e.siteHosts from e.sites, sorted by key.
func (e *Engine) indexSites() {
	keys := make([]string, 0, len(e.sites))
	for k := range e.sites {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.siteHosts = e.siteHosts[:0]
	for _, k := range keys {
		s := e.sites[k]
		sh := siteHost{host: &workload{w: s.Host(s.CIDRs[0].Addr()), ns: e.namespaces[s.Namespace]}}
		for _, c := range s.CIDRs {
			vp, _ := view.PrefixFrom(c)
			sh.cidrs = append(sh.cidrs, vp)
		}
		e.siteHosts = append(e.siteHosts, sh)
	}
}

// allNodes returns every node's name, for changes that may touch any
// view.
func (e *Engine) allNodes() map[string]bool {
	all := map[string]bool{}
	for name := range e.nodes {
		all[name] = true
	}
	return all
}

// checkSite refuses a site the views cannot place.
func (e *Engine) checkSite(s *inventory.Site) error {
	if s.Name == "" || s.Namespace == "" {
		return fmt.Errorf("site %q: name and namespace are required", s.Key())
	}
	if len(s.CIDRs) == 0 {
		return fmt.Errorf("site %s: no CIDRs: give the site's IPv4 prefixes, for example 198.19.1.0/24", s.Key())
	}
	for _, p := range s.CIDRs {
		if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() {
			return fmt.Errorf("site %s: %v is not an IPv4 network address: give a prefix such as 198.19.1.0/24", s.Key(), p)
		}
		if p.Overlaps(inventory.OverlayRange) {
			return fmt.Errorf("site %s: %s overlaps the overlay range %s: give the site's own prefix", s.Key(), p, inventory.OverlayRange)
		}
		for k, o := range e.sites {
			if k == s.Key() {
				continue
			}
			for _, q := range o.CIDRs {
				if p.Overlaps(q) {
					return fmt.Errorf("site %s: %s overlaps %s of site %s: a site address must belong to one site", s.Key(), p, q, k)
				}
			}
		}
	}
	return nil
}

func checkRoutes(nodeName string, routes []netip.Prefix) error {
	for _, p := range routes {
		if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() {
			return fmt.Errorf("node %q: route %v is not an IPv4 network address: give a prefix such as 198.19.1.0/24", nodeName, p)
		}
	}
	return nil
}

// putSite stores a checked site, creating its namespace if needed.
func (e *Engine) putSite(s inventory.Site) {
	s.CIDRs = slices.Clone(s.CIDRs)
	e.sites[s.Key()] = s
	if _, ok := e.namespaces[s.Namespace]; !ok {
		e.putNamespace(inventory.Namespace{Name: s.Namespace})
	}
}

// UpsertSite adds a site or replaces the one with the same
// namespace/name, and returns the nodes whose view changed.
func (e *Engine) UpsertSite(s inventory.Site) ([]string, error) {
	if err := e.checkSite(&s); err != nil {
		return nil, err
	}
	e.putSite(s)
	e.indexSites()
	// Rule tables of any node may name the site's CIDRs.
	return e.rebuild(e.allNodes()), nil
}

// DeleteSite removes a site by namespace/name.
func (e *Engine) DeleteSite(key string) ([]string, error) {
	if _, ok := e.sites[key]; !ok {
		return nil, fmt.Errorf("site %s does not exist", key)
	}
	delete(e.sites, key)
	e.indexSites()
	return e.rebuild(e.allNodes()), nil
}

// SetApprovedRoutes replaces the approved routes of a node (none removes
// them). Routes of a node the engine does not hold are kept and take
// effect when the node joins.
func (e *Engine) SetApprovedRoutes(nodeName string, routes []netip.Prefix) ([]string, error) {
	if err := checkRoutes(nodeName, routes); err != nil {
		return nil, err
	}
	if len(routes) == 0 {
		delete(e.routes, nodeName)
	} else {
		e.routes[nodeName] = slices.Clone(routes)
	}
	return e.rebuild(map[string]bool{}), nil
}

// SetGatewayOnline marks a node online or offline, and returns the nodes
// whose view changed. An offline node is the primary gateway of no site
// address that an online node's approved routes also contain. Nodes
// never marked are online; a mark on a node the engine does not hold
// (yet) is kept and takes effect when it joins.
func (e *Engine) SetGatewayOnline(nodeName string, online bool) []string {
	if online == !e.offline[nodeName] {
		return nil
	}
	if online {
		delete(e.offline, nodeName)
	} else {
		e.offline[nodeName] = true
	}
	if len(e.routes[nodeName]) == 0 {
		return nil // a node without routes is nobody's gateway
	}
	return e.rebuild(map[string]bool{})
}

// refreshSites recomputes the site part of every view and adds to names
// the nodes whose part changed.
func (e *Engine) refreshSites(names map[string]bool) {
	if len(e.sites) == 0 && len(e.routes) == 0 && len(e.siteParts) == 0 {
		return
	}
	parts := e.computeSites()
	for name := range e.siteParts {
		if !reflect.DeepEqual(e.siteParts[name], parts[name]) {
			names[name] = true
		}
	}
	for name := range parts {
		if _, ok := e.siteParts[name]; !ok {
			names[name] = true
		}
	}
	e.siteParts = parts
	// A gateway's site rule tables depend on any policy of the site's
	// namespace and on any workload its selectors match: rebuild every
	// gateway (rebuild keeps the version of a view that did not change).
	for name, p := range parts {
		if len(p.primary) > 0 {
			names[name] = true
		}
	}
}

// sitePorts are the ports at which allowed port sets can change: 1, every
// declared port and the first port of every policy port range.
func (e *Engine) sitePorts() map[inventory.Protocol][]uint16 {
	set := map[inventory.Protocol]map[uint16]bool{}
	add := func(p inventory.Protocol, n uint16) {
		if set[p] == nil {
			set[p] = map[uint16]bool{}
		}
		set[p][n] = true
	}
	for _, p := range inventory.Protocols {
		add(p, 1)
	}
	for _, w := range e.wls {
		if w != nil {
			for _, p := range w.w.Ports {
				add(p.Protocol, p.Port)
			}
		}
	}
	for _, s := range e.sites {
		for _, p := range s.Ports {
			add(p.Protocol, p.Port)
		}
	}
	for _, cp := range e.policies {
		var ports []networkingv1.NetworkPolicyPort
		for _, r := range cp.p.Spec.Ingress {
			ports = append(ports, r.Ports...)
		}
		for _, r := range cp.p.Spec.Egress {
			ports = append(ports, r.Ports...)
		}
		for i := range ports {
			if pr, lo, _, ok := policy.PortRange(&ports[i], nil); ok {
				add(pr, lo)
			}
		}
	}
	out := map[inventory.Protocol][]uint16{}
	for _, p := range inventory.Protocols {
		for n := range set[p] {
			out[p] = append(out[p], n)
		}
		slices.Sort(out[p])
	}
	return out
}

// cuts are the prefixes at whose boundaries a site address's verdict or
// gateway can change: every IPv4 ipBlock cidr and except, and every
// approved route.
func (e *Engine) cuts() []netip.Prefix {
	var out []netip.Prefix
	for _, cp := range e.policies {
		for _, rules := range [][]crule{cp.in, cp.out} {
			for _, r := range rules {
				for _, pe := range r.peers {
					if pe.block != nil {
						out = append(out, pe.block.cidr)
						out = append(out, pe.block.except...)
					}
				}
			}
		}
	}
	for _, rs := range e.routes {
		out = append(out, rs...)
	}
	return slices.DeleteFunc(out, func(p netip.Prefix) bool { return !p.Addr().Is4() })
}

// uniformPieces cuts p at every cut that falls strictly inside it.
func uniformPieces(p netip.Prefix, cuts []netip.Prefix, out []netip.Prefix) []netip.Prefix {
	for _, c := range cuts {
		if c.Bits() > p.Bits() && p.Contains(c.Addr()) {
			lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
			a := p.Addr().As4()
			bit := p.Bits()
			a[bit/8] |= 0x80 >> (bit % 8)
			hi := netip.PrefixFrom(netip.AddrFrom4(a), p.Bits()+1)
			return uniformPieces(hi, cuts, uniformPieces(lo, cuts, out))
		}
	}
	return append(out, p)
}

// primaryGateway returns the online node with the lowest name whose
// approved routes contain piece p; failing that, the offline one with the
// lowest name; failing that, "".
func (e *Engine) primaryGateway(p netip.Prefix, gateways []string) string {
	fallback := ""
	for _, g := range gateways {
		if fallback != "" && e.offline[g] {
			continue
		}
		for _, r := range e.routes[g] {
			if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
				if !e.offline[g] {
					return g
				}
				fallback = g
				break
			}
		}
	}
	return fallback
}

// standbyGateways returns the online gateways other than primary whose
// approved routes hold piece p, in name order.
func (e *Engine) standbyGateways(p netip.Prefix, primary string, gateways []string) []string {
	var out []string
	for _, g := range gateways {
		if g == primary || e.offline[g] {
			continue
		}
		for _, r := range e.routes[g] {
			if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// gatewayRoutes returns the approved routes of a gateway in prefix order,
// each Primary when one of the pieces it is primary for lies in it.
func (e *Engine) gatewayRoutes(g string, pieces []netip.Prefix) []view.Route {
	var out []view.Route
	for _, r := range e.routes[g] {
		if !r.Addr().Is4() {
			continue
		}
		vr, _ := view.PrefixFrom(r)
		rt := view.Route{Prefix: vr}
		for _, p := range pieces {
			if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
				rt.Primary = true
				break
			}
		}
		out = append(out, rt)
	}
	slices.SortFunc(out, func(a, b view.Route) int {
		if c := a.Prefix.Addr.Compare(b.Prefix.Addr); c != 0 {
			return c
		}
		return int(a.Prefix.Bits) - int(b.Prefix.Bits)
	})
	return out
}

// computeSites computes the site part of every view.
func (e *Engine) computeSites() map[string]*sitePart {
	parts := map[string]*sitePart{}
	var gateways []string
	for g := range e.routes {
		if _, ok := e.nodes[g]; ok {
			gateways = append(gateways, g)
		}
	}
	if len(gateways) == 0 {
		return parts
	}
	slices.Sort(gateways)
	part := func(name string) *sitePart {
		p := parts[name]
		if p == nil {
			p = &sitePart{peers: map[string]view.Peer{}}
			parts[name] = p
		}
		return p
	}
	// mine[g] are the pieces gateway g is primary for.
	mine := map[string][]netip.Prefix{}
	defer func() {
		for _, g := range gateways {
			part(g).routes = e.gatewayRoutes(g, mine[g])
		}
	}()
	if len(e.sites) == 0 {
		return parts
	}
	nss := make([]inventory.Namespace, 0, len(e.namespaces))
	monitor := map[string]bool{}
	for _, ns := range e.namespaces {
		nss = append(nss, inventory.Namespace{Name: ns.name, Labels: ns.labels, Monitor: ns.monitor})
		monitor[ns.name] = ns.monitor
	}
	pols := make([]*policy.Policy, 0, len(e.policies))
	for _, cp := range e.policies {
		pols = append(pols, cp.p)
	}
	policy.SortPolicies(pols)
	ev := policy.NewEvaluator(nss, pols, e.baseline)
	ports := e.sitePorts()
	cuts := e.cuts()
	// allowed reports whether some flow between a and b is allowed in
	// either direction.
	allowed := func(a, b *inventory.Workload) bool {
		for _, proto := range inventory.Protocols {
			for _, port := range ports[proto] {
				for _, d := range [2][2]*inventory.Workload{{a, b}, {b, a}} {
					v := ev.Decide(d[0], d[1], proto, port)
					if (v.Egress.Allowed || monitor[d[0].Namespace]) && (v.Ingress.Allowed || monitor[d[1].Namespace]) {
						return true
					}
				}
			}
		}
		return false
	}
	keys := make([]string, 0, len(e.sites))
	for k := range e.sites {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	type piece struct {
		p  netip.Prefix
		gw string
		// standby are the other online gateways whose approved routes
		// hold p: they take over when gw goes offline.
		standby []string
	}
	// toGW[node][gateway] collects site pieces; fromGW[gateway][node]
	// collects the workloads whose flows the gateway carries.
	toGW := map[string]map[string][]netip.Prefix{}
	primary := map[string]map[string][]netip.Prefix{} // gateway → site → pieces
	fromGW := map[string]map[string]map[int32]bool{}
	// standby[node][gateway]: node holds gateway as a peer without
	// AllowedIPs (and the gateway node), so that their WireGuard session
	// is up when the gateway takes over.
	standby := map[string]map[string]bool{}
	addStandby := func(n string, gws []string) {
		for _, g := range gws {
			if g == n {
				continue
			}
			for _, pair := range [2][2]string{{n, g}, {g, n}} {
				if standby[pair[0]] == nil {
					standby[pair[0]] = map[string]bool{}
				}
				standby[pair[0]][pair[1]] = true
			}
		}
	}
	addToGW := func(n, g string, p netip.Prefix) {
		if toGW[n] == nil {
			toGW[n] = map[string][]netip.Prefix{}
		}
		toGW[n][g] = append(toGW[n][g], p)
	}
	pieces := make([][]piece, len(keys)) // by site
	for i, k := range keys {
		s := e.sites[k]
		var ps []piece
		for _, c := range s.CIDRs {
			for _, p := range uniformPieces(c, cuts, nil) {
				if g := e.primaryGateway(p, gateways); g != "" {
					ps = append(ps, piece{p, g, e.standbyGateways(p, g, gateways)})
					if primary[g] == nil {
						primary[g] = map[string][]netip.Prefix{}
					}
					primary[g][k] = append(primary[g][k], p)
					mine[g] = append(mine[g], p)
				}
			}
		}
		pieces[i] = ps
		for _, w := range e.wls {
			if w == nil || w.host == nil {
				continue
			}
			n := w.host.n.Name
			for _, pc := range ps {
				if pc.gw == n {
					continue // the gateway reaches its sites directly
				}
				host := s.Host(pc.p.Addr())
				if !allowed(&w.w, &host) {
					continue
				}
				addToGW(n, pc.gw, pc.p)
				addStandby(n, pc.standby)
				if fromGW[pc.gw] == nil {
					fromGW[pc.gw] = map[string]map[int32]bool{}
				}
				if fromGW[pc.gw][n] == nil {
					fromGW[pc.gw][n] = map[int32]bool{}
				}
				fromGW[pc.gw][n][w.id] = true
			}
		}
	}
	// Site to site: the gateways of two sites' hosts with an allowed
	// flow are each other's peers, with the other side's pieces.
	for i := range keys {
		si := e.sites[keys[i]]
		for j := i + 1; j < len(keys); j++ {
			sj := e.sites[keys[j]]
			for _, a := range pieces[i] {
				ha := si.Host(a.p.Addr())
				for _, b := range pieces[j] {
					if a.gw == b.gw {
						continue // no tunnel between them
					}
					hb := sj.Host(b.p.Addr())
					if allowed(&ha, &hb) {
						addToGW(a.gw, b.gw, b.p)
						addToGW(b.gw, a.gw, a.p)
						addStandby(a.gw, b.standby)
						addStandby(b.gw, a.standby)
					}
				}
			}
		}
	}
	peerOf := func(name, peer string) *view.Peer {
		sp := part(name)
		pe, ok := sp.peers[peer]
		if !ok {
			n := &e.nodes[peer].n
			pe = view.Peer{Node: n.Name, PublicKey: n.PublicKey, Endpoints: n.Endpoints}
		}
		sp.peers[peer] = pe
		return &pe
	}
	// A node may be both: a gateway for some addresses and a client of
	// another gateway for others, possibly with the same peer.
	for n, gws := range toGW {
		for g, pfx := range gws {
			pe := peerOf(n, g)
			for _, p := range policy.AggregatePrefixes(pfx) {
				vp, _ := view.PrefixFrom(p) // sites are IPv4
				pe.AllowedIPs = append(pe.AllowedIPs, vp)
			}
			parts[n].peers[g] = *pe
		}
	}
	for g, ns := range fromGW {
		sp := part(g)
		seen := map[view.Addr]bool{}
		for n, ids := range ns {
			pe := peerOf(g, n)
			for id := range ids {
				h := &e.hot[id]
				pe.AllowedIPs = append(pe.AllowedIPs, view.HostPrefix(h.ip))
				if !seen[h.ip] {
					seen[h.ip] = true
					sp.idents = append(sp.idents, view.IdentityEntry{IP: h.ip, Identity: h.identity})
					sp.ids = append(sp.ids, id)
				}
			}
			sortPrefixes(pe.AllowedIPs)
			sp.peers[n] = *pe
		}
		slices.SortFunc(sp.idents, func(a, b view.IdentityEntry) int { return a.IP.Compare(b.IP) })
		slices.SortFunc(sp.ids, func(a, b int32) int { return e.hot[a].ip.Compare(e.hot[b].ip) })
	}
	for n, gws := range standby {
		for g := range gws {
			peerOf(n, g) // without AllowedIPs, unless it has some already
		}
	}
	for g, bySite := range primary {
		sp := part(g)
		for _, k := range keys {
			if pcs, ok := bySite[k]; ok {
				ps := primarySite{site: k}
				for _, p := range policy.AggregatePrefixes(pcs) {
					vp, _ := view.PrefixFrom(p)
					ps.cidrs = append(ps.cidrs, vp)
				}
				sp.primary = append(sp.primary, ps)
			}
		}
	}
	return parts
}

func sortPrefixes(ps []view.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr.Compare(ps[j].Addr); c != 0 {
			return c < 0
		}
		return ps[i].Bits < ps[j].Bits
	})
}

// addSites merges a node's site part into its view. known are the
// workloads of the view's identity map before the merge.
func (e *Engine) addSites(v *view.View, sp *sitePart, known []int32, s *viewScratch) {
	if sp == nil {
		return
	}
	v.Routes = slices.Clone(sp.routes)
	if len(sp.primary) > 0 {
		known = append(slices.Clone(known), sp.ids...)
		seen := map[view.Identity]bool{}
		var reps []int32
		for _, id := range known {
			if h := &e.hot[id]; !seen[h.identity] {
				seen[h.identity] = true
				reps = append(reps, id)
			}
		}
		slices.Sort(reps)
		for _, ps := range sp.primary {
			site := e.sites[ps.site]
			host := &workload{w: site.Host(site.CIDRs[0].Addr()), ns: e.namespaces[site.Namespace]}
			set := labels.Set(site.Labels)
			for _, cp := range e.polByNS[site.Namespace] {
				if cp.pods.Matches(set) {
					if cp.ingress {
						host.inPol = append(host.inPol, cp)
					}
					if cp.egress {
						host.outPol = append(host.outPol, cp)
					}
				}
			}
			v.Sites = append(v.Sites, view.SiteRules{
				Site:    ps.site,
				CIDRs:   ps.cidrs,
				Ingress: e.rules(host, true, known, reps, s),
				Egress:  e.rules(host, false, known, reps, s),
				Monitor: host.ns.monitor,
			})
		}
	}
	for _, add := range sp.peers {
		i, found := slices.BinarySearchFunc(v.Peers, add.Node, func(p view.Peer, name string) int {
			switch {
			case p.Node < name:
				return -1
			case p.Node > name:
				return 1
			}
			return 0
		})
		if !found {
			add.AllowedIPs = slices.Clone(add.AllowedIPs)
			v.Peers = slices.Insert(v.Peers, i, add)
			continue
		}
		pe := &v.Peers[i]
		ips := append(slices.Clone(pe.AllowedIPs), add.AllowedIPs...)
		sortPrefixes(ips)
		pe.AllowedIPs = slices.Compact(ips)
	}
	if len(sp.idents) > 0 {
		ids := append(slices.Clone(v.Identities), sp.idents...)
		slices.SortStableFunc(ids, func(a, b view.IdentityEntry) int { return a.IP.Compare(b.IP) })
		v.Identities = slices.CompactFunc(ids, func(a, b view.IdentityEntry) bool { return a.IP == b.IP })
	}
}

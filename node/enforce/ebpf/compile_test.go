package ebpf

import (
	"errors"
	"github.com/latchnet/latch/node/enforce"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

func pr(p inventory.Protocol, first, last uint16) view.PortRange {
	return view.PortRange{Protocol: p, First: first, Last: last}
}

func set(rs ...PortRange) PortSet {
	var s PortSet
	s.N = uint32(len(rs))
	copy(s.Ranges[:], rs)
	return s
}

func TestCompile(t *testing.T) {
	v := &view.View{
		Identities: []view.IdentityEntry{
			{IP: view.MustAddr("100.64.0.1"), Identity: 256},
			{IP: view.MustAddr("100.64.0.2"), Identity: 0},
		},
		Workloads: []view.WorkloadRules{{
			Workload: "ns/a", IP: view.MustAddr("100.64.0.1"), Identity: 256,
			Ingress: view.Rules{
				Any: []view.PortRange{pr(inventory.TCP, 10, 20), pr(inventory.TCP, 21, 30), pr(inventory.TCP, 25, 26),
					pr(inventory.UDP, 5, 5), pr(inventory.TCP, 9, 8)},
				Identities: []view.IdentityRule{
					{Identity: 300, Ports: []view.PortRange{pr(inventory.SCTP, 1, 1)}},
					{Identity: 300, Ports: []view.PortRange{pr(inventory.TCP, 2, 2)}}, // shadowed, as in Allows
					{Identity: 0, Ports: []view.PortRange{pr(inventory.TCP, 3, 3)}},   // never matches
				},
				CIDRs: []view.CIDRRule{
					{Prefix: view.MustPrefix("10.1.2.3/16"), Ports: []view.PortRange{pr(inventory.UDP, 7, 7)}},
					{Prefix: view.MustPrefix("10.1.0.0/16"), Ports: []view.PortRange{pr(inventory.UDP, 8, 8)}}, // same prefix: first wins
				},
			},
			Egress: view.Rules{AllowAll: true, Any: []view.PortRange{pr(inventory.TCP, 1, 1)}},
		}},
	}
	got, err := Compile(v)
	if err != nil {
		t.Fatal(err)
	}
	want := &Tables{
		Workloads:  []Workload{{Name: "ns/a", Addr: view.MustAddr("100.64.0.1"), Index: 0, Identity: 256, AllowAll: [2]bool{false, true}}},
		Identities: []IdentityEntry{{Addr: view.MustAddr("100.64.0.1"), Identity: 256}},
		Rules: []Rule{
			{Dir: enforce.Ingress, Proto: protoTCP, Ports: set(PortRange{10, 30})},
			{Dir: enforce.Ingress, Proto: protoUDP, Ports: set(PortRange{5, 5})},
			{Identity: 300, Dir: enforce.Ingress, Proto: protoSCTP, Ports: set(PortRange{1, 1})},
		},
		CIDRs: []CIDR{
			{Dir: enforce.Ingress, Proto: protoTCP, Prefix: view.MustPrefix("10.1.0.0/16")},
			{Dir: enforce.Ingress, Proto: protoUDP, Prefix: view.MustPrefix("10.1.0.0/16"), Ports: set(PortRange{7, 7})},
			{Dir: enforce.Ingress, Proto: protoSCTP, Prefix: view.MustPrefix("10.1.0.0/16")},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Compile (-want +got):\n%s", d)
	}
}

func TestCompileErrors(t *testing.T) {
	many := make([]view.PortRange, MaxRanges+1)
	for i := range many {
		many[i] = pr(inventory.TCP, uint16(2*i), uint16(2*i))
	}
	ok16 := many[:MaxRanges]
	w := func(r view.Rules) view.WorkloadRules {
		return view.WorkloadRules{Workload: "ns/a", IP: view.MustAddr("100.64.0.1"), Ingress: r}
	}
	if _, err := Compile(&view.View{Workloads: []view.WorkloadRules{w(view.Rules{Any: ok16})}}); err != nil {
		t.Errorf("16 ranges: %v", err)
	}
	for name, v := range map[string]*view.View{
		"17 ranges":    {Workloads: []view.WorkloadRules{w(view.Rules{Any: many})}},
		"17 in a cidr": {Workloads: []view.WorkloadRules{w(view.Rules{CIDRs: []view.CIDRRule{{Prefix: view.MustPrefix("0.0.0.0/0"), Ports: many}}})}},
	} {
		if _, err := Compile(v); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: got %v, want ErrTooLarge", name, err)
		}
	}
	if _, err := Compile(&view.View{Workloads: []view.WorkloadRules{w(view.Rules{Any: []view.PortRange{pr("ICMP", 1, 1)}})}}); err == nil {
		t.Error("unknown protocol: no error")
	}
	if _, err := Compile(&view.View{Workloads: []view.WorkloadRules{w(view.Rules{}), w(view.Rules{})}}); err == nil {
		t.Error("duplicate address: no error")
	}
}

// decide reads Tables as the programs read the maps: the local address's
// workload, else the site whose longest prefix holds it.
func (t *Tables) decide(local, remote view.Addr, dir enforce.Direction, proto uint8, port uint16) (allowed, known bool) {
	var index uint32
	var allowAll [2]bool
	found := false
	for i := range t.Workloads {
		if t.Workloads[i].Addr == local {
			index, allowAll, found = t.Workloads[i].Index, t.Workloads[i].AllowAll, true
		}
	}
	if !found {
		bits := -1
		for _, s := range t.Sites {
			if s.Prefix.Contains(local) && int(s.Prefix.Bits) > bits {
				index, allowAll, found, bits = s.Index, s.AllowAll, true, int(s.Prefix.Bits)
			}
		}
	}
	if !found {
		return false, false
	}
	if allowAll[kernelDir(dir)] {
		return true, true
	}
	var id view.Identity
	for _, e := range t.Identities {
		if e.Addr == remote {
			id = e.Identity
		}
	}
	for _, r := range t.Rules {
		if r.Workload == index && r.Dir == dir && r.Proto == proto && (r.Identity == 0 || r.Identity == id) && r.Ports.Contains(port) {
			return true, true
		}
	}
	best := -1
	for i, c := range t.CIDRs {
		if c.Workload == index && c.Dir == dir && c.Proto == proto && c.Prefix.Contains(remote) &&
			(best < 0 || c.Prefix.Bits > t.CIDRs[best].Prefix.Bits) {
			best = i
		}
	}
	return best >= 0 && t.CIDRs[best].Ports.Contains(port), true
}

// randomSiteAddr is an address in the random views' site space,
// 198.19.0.0/22 (site prefixes are drawn from it).
func randomSiteAddr(r *rand.Rand) view.Addr {
	return view.Addr{198, 19, byte(r.IntN(4)), byte(r.IntN(256))}
}

// randomView makes a view with overlapping ranges, duplicate identities and
// nested prefixes drawn from a small address space so that they collide,
// and (mostly) sites of disjoint prefixes in 198.19.0.0/22 whose rules
// name each other by CIDR.
func randomView(r *rand.Rand, workloads, rulesPer int) *view.View {
	addr := func() view.Addr { return view.Addr{100, 64, byte(r.IntN(2)), byte(r.IntN(16))} }
	proto := func() inventory.Protocol { return inventory.Protocols[r.IntN(3)] }
	ports := func() []view.PortRange {
		var rs []view.PortRange
		for range r.IntN(4) {
			a := uint16(r.IntN(40))
			rs = append(rs, pr(proto(), a, a+uint16(r.IntN(6))))
		}
		return rs
	}
	v := &view.View{}
	ids := map[view.Addr]bool{}
	for range 20 {
		a := addr()
		if !ids[a] {
			ids[a] = true
			v.Identities = append(v.Identities, view.IdentityEntry{IP: a, Identity: view.Identity(256 + r.IntN(6))})
		}
	}
	slices.SortFunc(v.Identities, func(a, b view.IdentityEntry) int { return a.IP.Compare(b.IP) })
	rules := func() view.Rules {
		rs := view.Rules{AllowAll: r.IntN(8) == 0, Any: nil}
		if r.IntN(3) == 0 {
			rs.Any = ports()
		}
		for range rulesPer {
			rs.Identities = append(rs.Identities, view.IdentityRule{Identity: view.Identity(255 + r.IntN(8)), Ports: ports()})
		}
		for range r.IntN(4) {
			a := addr()
			rs.CIDRs = append(rs.CIDRs, view.CIDRRule{Prefix: view.Prefix{Addr: a, Bits: uint8(20 + r.IntN(13))}, Ports: ports()})
		}
		for range r.IntN(3) {
			a := randomSiteAddr(r)
			rs.CIDRs = append(rs.CIDRs, view.CIDRRule{Prefix: view.Prefix{Addr: a, Bits: uint8(22 + r.IntN(11))}, Ports: ports()})
		}
		return rs
	}
	seen := map[view.Addr]bool{}
	for i := range workloads {
		a := view.Addr{100, 64, 9, byte(i)}
		if seen[a] {
			continue
		}
		seen[a] = true
		v.Workloads = append(v.Workloads, view.WorkloadRules{Workload: "ns/w" + string(rune('a'+i)), IP: a, Ingress: rules(), Egress: rules()})
	}
	// Sites: each /24 of 198.19.0.0/22 goes to one site, whole, cut in
	// two /25s, or not at all.
	nSites := r.IntN(4)
	if nSites > 0 {
		for i := range nSites {
			v.Sites = append(v.Sites, view.SiteRules{Site: "lab/s" + string(rune('a'+i)), Ingress: rules(), Egress: rules()})
		}
		for third := range 4 {
			switch r.IntN(3) {
			case 0:
				s := &v.Sites[r.IntN(nSites)]
				s.CIDRs = append(s.CIDRs, view.Prefix{Addr: view.Addr{198, 19, byte(third), 0}, Bits: 24})
			case 1:
				for _, half := range []byte{0, 128} {
					s := &v.Sites[r.IntN(nSites)]
					s.CIDRs = append(s.CIDRs, view.Prefix{Addr: view.Addr{198, 19, byte(third), half}, Bits: 25})
				}
			}
		}
	}
	return v
}

// query is a random packet to decide: its local side (a workload or a
// site host), remote address, protocol index, port and direction, and the
// rules and monitor flag that decide it.
type query struct {
	name          string
	local, remote view.Addr
	pi            int
	port          uint16
	dir           enforce.Direction
	rules         *view.Rules
	monitor       bool
}

// randomQuery picks a local workload or, when the view has sites, about
// half the time a site host; a remote address among workloads, site hosts
// and others; a protocol index, a port and a direction.
func randomQuery(r *rand.Rand, v *view.View) query {
	q := query{pi: r.IntN(3), port: uint16(r.IntN(50)), dir: directions[r.IntN(2)]}
	var ingress, egress *view.Rules
	if s := siteWithHosts(r, v); s != nil && r.IntN(2) == 0 {
		c := s.CIDRs[r.IntN(len(s.CIDRs))]
		q.local = view.Addr{c.Addr[0], c.Addr[1], c.Addr[2], c.Addr[3] + byte(r.IntN(1<<(32-int(c.Bits))))}
		q.name, ingress, egress, q.monitor = s.Site, &s.Ingress, &s.Egress, s.Monitor
	} else {
		w := &v.Workloads[r.IntN(len(v.Workloads))]
		q.local = w.IP
		q.name, ingress, egress, q.monitor = w.Workload, &w.Ingress, &w.Egress, w.Monitor
	}
	if r.IntN(3) == 0 {
		q.remote = randomSiteAddr(r)
	} else {
		q.remote = view.Addr{100, 64, byte(r.IntN(2)), byte(r.IntN(16))}
	}
	q.rules = ingress
	if q.dir == enforce.Egress {
		q.rules = egress
	}
	return q
}

// siteWithHosts picks a site of v that has prefixes, or nil.
func siteWithHosts(r *rand.Rand, v *view.View) *view.SiteRules {
	var with []*view.SiteRules
	for i := range v.Sites {
		if len(v.Sites[i].CIDRs) > 0 {
			with = append(with, &v.Sites[i])
		}
	}
	if len(with) == 0 {
		return nil
	}
	return with[r.IntN(len(with))]
}

func TestCompileMatchesAllows(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sites := 0
	for range 200 {
		v := randomView(r, 3, 4)
		tb, err := Compile(v)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			q := randomQuery(r, v)
			if q.local[0] == 198 {
				sites++
			}
			want := q.rules.Allows(v.IdentityOf(q.remote), q.remote, protocols[q.pi].name, q.port)
			got, known := tb.decide(q.local, q.remote, q.dir, protocols[q.pi].num, q.port)
			if got != want || !known {
				t.Fatalf("%s (%s) %s remote %s %s/%d: tables %v (known %v), Allows %v\nrules %+v", q.name, q.local, q.dir, q.remote, protocols[q.pi].name, q.port, got, known, want, q.rules)
			}
		}
	}
	if sites < 5000 {
		t.Errorf("only %d of 40000 queries had a site host as local address", sites)
	}
}

// TestCompileSites: a site's prefixes share one index after the
// workloads', its rules are keyed by it, and Names names it there.
func TestCompileSites(t *testing.T) {
	v := &view.View{
		Workloads: []view.WorkloadRules{{Workload: "ns/a", IP: view.MustAddr("100.64.0.1"), Ingress: view.Rules{AllowAll: true}}},
		Sites: []view.SiteRules{
			{Site: "lab/empty"}, // no prefix here: no entry, but its index is kept
			{
				Site: "lab/p", CIDRs: []view.Prefix{view.MustPrefix("198.19.1.0/24"), view.MustPrefix("198.19.3.7/25")},
				Ingress: view.Rules{Any: []view.PortRange{pr(inventory.TCP, 631, 631)}},
				Egress:  view.Rules{AllowAll: true},
				Monitor: true,
			},
		},
	}
	got, err := Compile(v)
	if err != nil {
		t.Fatal(err)
	}
	wantSites := []Site{
		{Name: "lab/p", Prefix: view.MustPrefix("198.19.1.0/24"), Index: 2, AllowAll: [2]bool{false, true}, Monitor: true},
		{Name: "lab/p", Prefix: view.MustPrefix("198.19.3.0/25"), Index: 2, AllowAll: [2]bool{false, true}, Monitor: true},
	}
	if d := cmp.Diff(wantSites, got.Sites); d != "" {
		t.Errorf("sites (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Rule{{Workload: 2, Dir: enforce.Ingress, Proto: protoTCP, Ports: set(PortRange{631, 631})}}, got.Rules); d != "" {
		t.Errorf("rules (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"ns/a", "", "lab/p"}, got.Names()); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}

	v.Sites = append(v.Sites, view.SiteRules{Site: "lab/q", CIDRs: []view.Prefix{view.MustPrefix("198.19.1.0/24")}})
	if _, err := Compile(v); err == nil || !strings.Contains(err.Error(), "lab/p and lab/q both claim the prefix 198.19.1.0/24") {
		t.Errorf("prefix of two sites: error %v", err)
	}
	many := &view.View{Sites: []view.SiteRules{{Site: "lab/big"}}}
	for i := range MaxSiteCIDRs + 1 {
		many.Sites[0].CIDRs = append(many.Sites[0].CIDRs, view.Prefix{Addr: view.Addr{10, byte(i >> 8), byte(i), 0}, Bits: 24})
	}
	if _, err := Compile(many); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too many site prefixes: error %v, want ErrTooLarge", err)
	}
}

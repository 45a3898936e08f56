package ebpf

import (
	"errors"
	"github.com/latchnet/latch/node/enforce"
	"math/rand/v2"
	"slices"
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

// decide reads Tables as the programs read the maps.
func (t *Tables) decide(local, remote view.Addr, dir enforce.Direction, proto uint8, port uint16) (allowed, known bool) {
	var w *Workload
	for i := range t.Workloads {
		if t.Workloads[i].Addr == local {
			w = &t.Workloads[i]
		}
	}
	if w == nil {
		return false, false
	}
	if w.AllowAll[kernelDir(dir)] {
		return true, true
	}
	var id view.Identity
	for _, e := range t.Identities {
		if e.Addr == remote {
			id = e.Identity
		}
	}
	for _, r := range t.Rules {
		if r.Workload == w.Index && r.Dir == dir && r.Proto == proto && (r.Identity == 0 || r.Identity == id) && r.Ports.Contains(port) {
			return true, true
		}
	}
	best := -1
	for i, c := range t.CIDRs {
		if c.Workload == w.Index && c.Dir == dir && c.Proto == proto && c.Prefix.Contains(remote) &&
			(best < 0 || c.Prefix.Bits > t.CIDRs[best].Prefix.Bits) {
			best = i
		}
	}
	return best >= 0 && t.CIDRs[best].Ports.Contains(port), true
}

// randomView makes a view with overlapping ranges, duplicate identities and
// nested prefixes drawn from a small address space so that they collide.
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
	return v
}

// randomQuery picks a local workload, a remote address, a protocol index,
// a port and a direction, and the rules that decide them.
func randomQuery(r *rand.Rand, v *view.View) (w *view.WorkloadRules, remote view.Addr, pi int, port uint16, dir enforce.Direction, rules *view.Rules) {
	w = &v.Workloads[r.IntN(len(v.Workloads))]
	remote = view.Addr{100, 64, byte(r.IntN(2)), byte(r.IntN(16))}
	pi = r.IntN(3)
	port = uint16(r.IntN(50))
	dir = directions[r.IntN(2)]
	rules = &w.Ingress
	if dir == enforce.Egress {
		rules = &w.Egress
	}
	return w, remote, pi, port, dir, rules
}

func TestCompileMatchesAllows(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		v := randomView(r, 3, 4)
		tb, err := Compile(v)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			w, remote, pi, port, dir, rules := randomQuery(r, v)
			want := rules.Allows(v.IdentityOf(remote), remote, protocols[pi].name, port)
			got, _ := tb.decide(w.IP, remote, dir, protocols[pi].num, port)
			if got != want {
				t.Fatalf("%s %s remote %s %s/%d: tables %v, Allows %v\nrules %+v", w.Workload, dir, remote, protocols[pi].name, port, got, want, rules)
			}
		}
	}
}

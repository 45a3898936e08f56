package policy_test

import (
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

const siteInventory = `namespaces:
  - {name: prod, labels: {env: prod}}
  - {name: site-eu, labels: {region: eu}}
  - {name: site-us, labels: {region: us}}
workloads:
  - {name: api, namespace: prod, labels: {app: api}, ip: 100.64.0.20, ports: [{name: http, port: 8080}]}
  - {name: web, namespace: prod, labels: {app: web}, ip: 100.64.0.30, ports: [{port: 443}]}
sites:
  - {name: db, namespace: site-eu, labels: {role: db}, cidrs: [198.19.1.0/24], ports: [{name: postgres, port: 5432}]}
  - {name: office, namespace: site-eu, labels: {role: office}, cidrs: [198.19.2.0/24], ports: [{port: 22}]}
  - {name: app, namespace: site-us, labels: {role: app}, cidrs: [198.19.10.0/24, 198.19.11.0/24], ports: [{name: http, port: 8080}]}
`

// sitePolicies select site hosts by labels (podSelector in the site's
// namespace, namespaceSelector from elsewhere) and by address (ipBlock).
const sitePolicies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: site-eu}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {env: prod}}
          podSelector: {matchLabels: {app: api}}
        - ipBlock: {cidr: 198.19.10.0/24, except: [198.19.10.128/25]}
      ports: [{port: postgres}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{ipBlock: {cidr: 198.19.2.0/25}}]
  egress:
    - to:
        - namespaceSelector: {matchLabels: {region: eu}}
          podSelector: {matchLabels: {role: db}}
    - to: [{ipBlock: {cidr: 198.19.2.0/23, except: [198.19.2.0/26, 198.19.3.0/24]}}]
      ports: [{port: 22}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: office, namespace: site-eu}
spec:
  podSelector: {matchLabels: {role: office}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{namespaceSelector: {matchLabels: {env: prod}}}]
  egress:
    - to: [{podSelector: {}, namespaceSelector: {matchLabels: {env: prod}}}]
      ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: app, namespace: site-us}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 198.19.1.0/24, except: [198.19.1.192/26]}}]
      ports: [{port: 5432}]
`

func siteFixture(t *testing.T, baseline policy.Baseline) (*policy.Evaluator, *inventory.Inventory) {
	t.Helper()
	inv, err := inventory.Parse("site inventory", []byte(siteInventory))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := policy.Parse("site policies", []byte(sitePolicies))
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewEvaluator(inv.Namespaces, ps, baseline), inv
}

// ranges writes allowed address pairs as "from>to;..." with "+" between
// the prefixes of a set.
func ranges(rs []policy.AddrRange) string {
	join := func(ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		return strings.Join(s, "+")
	}
	var out []string
	for _, r := range rs {
		out = append(out, join(r.From)+">"+join(r.To))
	}
	return strings.Join(out, ";")
}

func TestSiteSelection(t *testing.T) {
	ev, inv := siteFixture(t, policy.BaselineDeny)
	for _, c := range []struct {
		name     string
		from, to string
		port     uint16
		full     bool
		want     string // allowed pairs; "" for none
	}{
		{"labels select the db subnet for api's egress and db's ingress", "prod/api", "site-eu/db", 5432, true, "100.64.0.20/32>198.19.1.0/24"},
		{"one address of the db subnet", "prod/api", "site-eu/db@198.19.1.77", 5432, true, "100.64.0.20/32>198.19.1.77/32"},
		{"a bare site address", "prod/api", "198.19.1.77", 5432, true, "100.64.0.20/32>198.19.1.77/32"},
		{"db's ingress names only postgres", "prod/api", "site-eu/db", 5433, false, ""},
		{"web is not api", "prod/web", "site-eu/db", 5432, false, ""},
		{"db's egress is isolated with no rule: it cannot open", "site-eu/db", "prod/api", 8080, false, ""},
		{"ipBlock with except selects part of the office", "prod/api", "site-eu/office", 22, false, "100.64.0.20/32>198.19.2.64/26+198.19.2.128/25"},
		{"office to api: office egress by labels, api ingress by ipBlock", "site-eu/office", "prod/api", 8080, false, "198.19.2.0/25>100.64.0.20/32"},
		{"an office address outside api's ipBlock", "site-eu/office@198.19.2.200", "prod/api", 8080, false, ""},
		{"an office prefix inside it", "site-eu/office@198.19.2.0/26", "prod/api", 8080, true, "198.19.2.0/26>100.64.0.20/32"},
		{"site to site: both ipBlocks cut", "site-us/app", "site-eu/db", 5432, false, "198.19.10.0/25>198.19.1.0/25+198.19.1.128/26"},
		{"site to site: one pair", "site-us/app@198.19.10.1", "site-eu/db@198.19.1.1", 5432, true, "198.19.10.1/32>198.19.1.1/32"},
		{"site to site: excepted destination", "site-us/app@198.19.10.1", "site-eu/db@198.19.1.200", 5432, false, ""},
		{"site to site, reverse direction: app's ingress is baseline deny", "site-eu/db", "site-us/app", 8080, false, ""},
		{"unisolated egress of site us under baseline deny", "site-us/app", "prod/api", 8080, false, ""},
	} {
		a, err := ev.WhatIfSites(inv.AllWorkloads(), inv.Sites, c.from, c.to, inventory.TCP, c.port)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := ranges(a.Allowed); got != c.want || a.Full != c.full {
			t.Errorf("%s: %s -> %s %d: allowed %q full %v; want %q full %v", c.name, c.from, c.to, c.port, got, a.Full, c.want, c.full)
		}
	}
}

func TestSiteWhatIfVerdict(t *testing.T) {
	ev, inv := siteFixture(t, policy.BaselineDeny)
	a, err := ev.WhatIfSites(inv.AllWorkloads(), inv.Sites, "site-eu/office@198.19.2.9", "prod/api", inventory.TCP, 8080)
	if err != nil {
		t.Fatal(err)
	}
	want := &policy.Verdict{Allowed: true,
		Egress:  policy.Side{Isolated: true, Allowed: true, Policies: []string{"site-eu/office"}},
		Ingress: policy.Side{Isolated: true, Allowed: true, Policies: []string{"prod/api"}}}
	if d := cmp.Diff(want, a.Verdict); d != "" {
		t.Errorf("verdict (-want +got):\n%s", d)
	}
	a, err = ev.WhatIfSites(inv.AllWorkloads(), inv.Sites, "site-eu/office", "prod/api", inventory.TCP, 8080)
	if err != nil || a.Verdict != nil {
		t.Errorf("a whole site has no single verdict: %+v, %v", a.Verdict, err)
	}
}

func TestSiteWhatIfErrors(t *testing.T) {
	ev, inv := siteFixture(t, policy.BaselineDeny)
	for _, c := range []struct{ from, to, want string }{
		{"prod/nope", "site-eu/db", `source "prod/nope": no such workload, node or site`},
		{"prod/api", "site-eu/db@198.19.2.1", "198.19.2.1/32 is not a network inside site site-eu/db"},
		{"prod/api", "site-eu/db@198.19.1.1/24", "not a network inside site"},
		{"prod/api", "site-eu/db@x", `"x" is neither an address nor a prefix`},
		{"prod/api", "198.18.0.1", "the address is in no site"},
		{"prod/api@198.19.1.1", "site-eu/db", "no such workload, node or site"},
	} {
		_, err := ev.WhatIfSites(inv.AllWorkloads(), inv.Sites, c.from, c.to, inventory.TCP, 1)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: error %v, want one containing %q", c.from, c.to, err, c.want)
		}
	}
	if _, err := ev.WhatIfSites(inv.AllWorkloads(), inv.Sites, "prod/x", "prod/api", inventory.TCP, 1); !errors.Is(err, policy.ErrNoEndpoint) {
		t.Errorf("error %v does not wrap ErrNoEndpoint", err)
	}
}

func TestAggregatePrefixes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"198.19.1.0/25 198.19.1.128/25", "198.19.1.0/24"},
		{"198.19.1.128/25 198.19.1.0/26 198.19.1.64/26", "198.19.1.0/24"},
		{"198.19.1.0/26 198.19.1.128/26", "198.19.1.0/26 198.19.1.128/26"},
		{"198.19.1.64/26 198.19.1.128/26", "198.19.1.64/26 198.19.1.128/26"},
		{"198.19.1.0/24 198.19.1.7/32 198.19.2.0/24", "198.19.1.0/24 198.19.2.0/24"},
		{"198.19.2.0/24 198.19.3.0/24", "198.19.2.0/23"},
		{"198.19.1.0/24 198.19.2.0/24", "198.19.1.0/24 198.19.2.0/24"},
		{"198.19.1.5/24", "198.19.1.0/24"},
	} {
		var in []netip.Prefix
		for _, f := range strings.Fields(c.in) {
			in = append(in, netip.MustParsePrefix(f))
		}
		var got []string
		for _, p := range policy.AggregatePrefixes(in) {
			got = append(got, p.String())
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("AggregatePrefixes(%s) = %s, want %s", c.in, g, c.want)
		}
	}
}

// TestSiteCIDRsProperty: for random sites and policies over them, an
// address is in AllowedSiteCIDRs iff Decide allows the flow for the host
// at that address, checked on sampled addresses (every ipBlock boundary
// and its neighbours, and random ones); the CIDR set is minimal (no two
// prefixes merge) and in address order.
func TestSiteCIDRsProperty(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	nss := []inventory.Namespace{{Name: "prod"}, {Name: "site-a", Labels: map[string]string{"kind": "site"}}, {Name: "site-b", Labels: map[string]string{"kind": "site"}}}
	api := inventory.Workload{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"}, IP: netip.MustParseAddr("100.64.0.20")}
	randPrefix := func(within netip.Prefix, maxExtra int) netip.Prefix {
		bits := within.Bits() + rng.Intn(maxExtra+1)
		a := within.Addr().As4()
		u := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		u |= rng.Uint32() & (1<<(32-within.Bits()) - 1)
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}), bits).Masked()
	}
	space := netip.MustParsePrefix("198.19.0.0/22")
	for iter := 0; iter < 300; iter++ {
		sites := []inventory.Site{
			{Name: "s1", Namespace: "site-a", Labels: map[string]string{"role": []string{"db", "web"}[rng.Intn(2)]},
				CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24"), netip.MustParsePrefix("198.19.2.0/25")}},
			{Name: "s2", Namespace: "site-b", Labels: map[string]string{"role": "db"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}},
		}
		var docs []string
		peer := func() string {
			switch rng.Intn(4) {
			case 0:
				return `{namespaceSelector: {matchLabels: {kind: site}}, podSelector: {matchLabels: {role: db}}}`
			case 1:
				return `{podSelector: {}}`
			default:
				c := randPrefix(space, 8)
				var ex []string
				for k := rng.Intn(3); k > 0; k-- {
					if c.Bits() < 32 {
						e := randPrefix(c, 32-c.Bits()-1)
						ex = append(ex, netip.PrefixFrom(e.Addr(), e.Bits()+1).Masked().String())
					}
				}
				if len(ex) == 0 {
					return fmt.Sprintf(`{ipBlock: {cidr: %s}}`, c)
				}
				return fmt.Sprintf(`{ipBlock: {cidr: %s, except: [%s]}}`, c, strings.Join(ex, ", "))
			}
		}
		for i, ns := range []string{"prod", "site-a", "site-b"} {
			if rng.Intn(4) == 0 {
				continue
			}
			docs = append(docs, fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p%d, namespace: %s}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [%s, %s]}]
  egress: [{to: [%s, %s]}]
`, i, ns, peer(), peer(), peer(), peer()))
		}
		ps, err := policy.Parse("random", []byte(strings.Join(docs, "---\n")))
		if err != nil {
			t.Fatalf("random policies: %v\n%s", err, strings.Join(docs, "---\n"))
		}
		ev := policy.NewEvaluator(nss, ps, policy.Baseline([]string{"deny", "allow"}[rng.Intn(2)]))
		siteSamples := make([][]netip.Addr, len(sites))
		for si := range sites {
			s := &sites[si]
			for _, toSite := range []bool{true, false} {
				got := ev.AllowedSiteCIDRs(&api, s, toSite, inventory.TCP, 80)
				for i := 1; i < len(got); i++ {
					if !got[i-1].Addr().Less(got[i].Addr()) || got[i-1].Contains(got[i].Addr()) {
						t.Fatalf("CIDRs not disjoint and in order: %v", got)
					}
				}
				// Minimal: no prefix's parent is covered whole.
				for _, p := range got {
					parent := netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
					var covered uint64
					for _, q := range got {
						if parent.Contains(q.Addr()) && q.Bits() >= parent.Bits() {
							covered += 1 << (32 - q.Bits())
						}
					}
					if covered == 1<<(32-parent.Bits()) {
						t.Fatalf("CIDRs not minimal: %v cover %s whole", got, parent)
					}
				}
				// Sample addresses: boundaries of every ipBlock and random.
				var samples []netip.Addr
				for _, c := range s.CIDRs {
					samples = append(samples, c.Addr(), lastAddr(c))
					for k := 0; k < 40; k++ {
						samples = append(samples, randPrefix(c, 32-c.Bits()).Addr())
					}
				}
				for _, d := range docs {
					for _, f := range strings.FieldsFunc(d, func(r rune) bool { return r == ' ' || r == '[' || r == ']' || r == ',' || r == '}' }) {
						if p, err := netip.ParsePrefix(f); err == nil {
							samples = append(samples, p.Addr(), p.Addr().Prev(), lastAddr(p), lastAddr(p).Next())
						}
					}
				}
				siteSamples[si] = samples
				for _, a := range samples {
					if !s.Contains(a) {
						continue
					}
					h := s.Host(a)
					var v policy.Verdict
					if toSite {
						v = ev.Decide(&api, &h, inventory.TCP, 80)
					} else {
						v = ev.Decide(&h, &api, inventory.TCP, 80)
					}
					in := false
					for _, p := range got {
						in = in || p.Contains(a)
					}
					if in != v.Allowed {
						t.Fatalf("iteration %d, site %s, toSite %v: %s in %v = %v, but Decide says %v\npolicies:\n%s",
							iter, s.Key(), toSite, a, got, in, v.Allowed, strings.Join(docs, "---\n"))
					}
				}
			}
		}
		// Site to site: a pair of addresses is in some allowed range iff
		// Decide allows it.
		for _, dir := range [][2]int{{0, 1}, {1, 0}} {
			from, to := &sites[dir[0]], &sites[dir[1]]
			v := ev.DecideRange(policy.Endpoint{Site: from}, policy.Endpoint{Site: to}, inventory.TCP, 80)
			all := true
			for k := 0; k < 300; k++ {
				a := siteSamples[dir[0]][rng.Intn(len(siteSamples[dir[0]]))]
				b := siteSamples[dir[1]][rng.Intn(len(siteSamples[dir[1]]))]
				if !from.Contains(a) || !to.Contains(b) {
					continue
				}
				ha, hb := from.Host(a), to.Host(b)
				want := ev.Decide(&ha, &hb, inventory.TCP, 80).Allowed
				all = all && want
				in := false
				for _, r := range v.Allowed {
					in = in || (containsAddr(r.From, a) && containsAddr(r.To, b))
				}
				if in != want {
					t.Fatalf("iteration %d: %s -> %s: %s>%s in %s = %v, but Decide says %v\npolicies:\n%s",
						iter, from.Key(), to.Key(), a, b, ranges(v.Allowed), in, want, strings.Join(docs, "---\n"))
				}
			}
			if v.Full && !all {
				t.Fatalf("iteration %d: %s -> %s is Full but a pair is denied", iter, from.Key(), to.Key())
			}
		}
	}
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	u := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	u |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

package inventory

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const siteNS = "namespaces: [{name: site-eu}, {name: prod}]\n"

func TestParseSites(t *testing.T) {
	doc := siteNS + `workloads: [{name: api, namespace: prod, ip: 100.64.0.20}]
sites:
  - name: db
    namespace: site-eu
    labels: {role: db}
    cidrs: [198.19.1.0/24, 198.19.3.0/25]
    ports: [{name: postgres, port: 5432}]
  - name: office
    namespace: site-eu
    cidrs: [198.19.2.0/24]
`
	inv, err := Parse("inv.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	db := &inv.Sites[0]
	if db.Key() != "site-eu/db" || len(db.CIDRs) != 2 || db.Ports[0].Protocol != TCP {
		t.Fatalf("site read as %+v", db)
	}
	for _, c := range []struct {
		addr string
		want string
	}{
		{"198.19.1.0", "site-eu/db"},
		{"198.19.1.255", "site-eu/db"},
		{"198.19.3.127", "site-eu/db"},
		{"198.19.3.128", ""},
		{"198.19.2.7", "site-eu/office"},
		{"100.64.0.20", ""},
	} {
		got := ""
		if s := inv.SiteOf(netip.MustParseAddr(c.addr)); s != nil {
			got = s.Key()
		}
		if got != c.want {
			t.Errorf("SiteOf(%s) = %q, want %q", c.addr, got, c.want)
		}
	}
	h := db.Host(netip.MustParseAddr("198.19.1.9"))
	if h.Namespace != "site-eu" || h.Labels["role"] != "db" || h.IP.String() != "198.19.1.9" || len(h.Ports) != 1 {
		t.Errorf("Host = %+v", h)
	}
}

func TestParseSiteErrors(t *testing.T) {
	site := func(fields string) string {
		return siteNS + "workloads: []\nsites:\n  - {name: db, namespace: site-eu, " + fields + "}\n"
	}
	for _, c := range []struct{ name, doc, want string }{
		{"no cidrs", site("labels: {role: db}"), "sites[0].cidrs: required"},
		{"not a network address", site("cidrs: [198.19.1.5/24]"), "sites[0].cidrs[0]: 198.19.1.5/24 is not a network address: write 198.19.1.0/24"},
		{"ipv6", site("cidrs: ['fd00::/64']"), "sites[0].cidrs[0]: fd00::/64 is not IPv4"},
		{"overlay", site("cidrs: [100.64.128.0/24]"), "overlaps the overlay range 100.64.0.0/10"},
		{"everything", site("cidrs: [0.0.0.0/0]"), "0.0.0.0/0 overlaps the overlay range"},
		{"bad prefix", site("cidrs: [198.19.1.0/24, 198.19.1.0/33]"), `sites[0].cidrs[1]: "198.19.1.0/33" is not a prefix`},
		{"overlap within", site("cidrs: [198.19.0.0/16, 198.19.1.0/24]"), "sites[0].cidrs[1]: 198.19.1.0/24 overlaps 198.19.0.0/16 (sites[0].cidrs[0] of site site-eu/db)"},
		{"overlap between", siteNS + "workloads: []\nsites:\n  - {name: a, namespace: site-eu, cidrs: [198.19.1.0/24]}\n  - {name: b, namespace: prod, cidrs: [198.19.1.128/25]}\n",
			"sites[1].cidrs[0]: 198.19.1.128/25 overlaps 198.19.1.0/24 (sites[0].cidrs[0] of site site-eu/a)"},
		{"duplicate name", siteNS + "workloads: []\nsites:\n  - {name: a, namespace: site-eu, cidrs: [198.19.1.0/24]}\n  - {name: a, namespace: site-eu, cidrs: [198.19.2.0/24]}\n",
			"sites[1]: site-eu/a is already the name of sites[0]"},
		{"name of a workload", siteNS + "workloads: [{name: api, namespace: prod, ip: 100.64.0.1}]\nsites: [{name: api, namespace: prod, cidrs: [198.19.2.0/24]}]\n",
			"sites[0]: prod/api is already the name of workloads[0]"},
		{"undeclared namespace", siteNS + "workloads: []\nsites: [{name: a, namespace: site-us, cidrs: [198.19.2.0/24]}]\n", `sites[0].namespace: namespace "site-us" is not listed`},
		{"bad name", site("cidrs: [198.19.2.0/24]") + "  - {name: Bad_Name, namespace: site-eu, cidrs: [198.19.3.0/24]}\n", `sites[1].name: "Bad_Name"`},
		{"bad label", site("labels: {'-x': y}, cidrs: [198.19.2.0/24]"), `sites[0].labels: key "-x"`},
		{"bad port", site("cidrs: [198.19.2.0/24], ports: [{port: 0}]"), "sites[0].ports[0].port: must be between 1 and 65535"},
		{"unknown field", site("cidr: 198.19.2.0/24"), "sites[0].cidr: unknown field"},
		{"workload inside a site", siteNS + "workloads: [{name: api, namespace: prod, ip: 198.19.2.9}]\nsites: [{name: a, namespace: site-eu, cidrs: [198.19.2.0/24]}]\n",
			"workloads[0].ip: 198.19.2.9 is inside site site-eu/a"},
	} {
		_, err := Parse("inv.yaml", []byte(c.doc))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "inv.yaml") {
			t.Errorf("%s: error %v; want one naming inv.yaml and containing %q", c.name, err, c.want)
		}
	}
}

// TestSiteValidate: one site checked alone, by the rules the inventory
// applies to each site, with every problem named by its field.
func TestSiteValidate(t *testing.T) {
	p := netip.MustParsePrefix
	ok := Site{Name: "db", Namespace: "site-eu", Labels: map[string]string{"role": "db"}, CIDRs: []netip.Prefix{p("198.19.1.0/24")},
		Ports: []Port{{Name: "postgres", Port: 5432, Protocol: TCP}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a valid site: %v", err)
	}
	bad := Site{Name: "Db_", Namespace: "Site_EU", Labels: map[string]string{"role": "a b"},
		CIDRs: []netip.Prefix{p("198.19.1.5/24"), p("100.64.1.0/24"), p("198.19.2.0/24"), p("198.19.2.128/25"), p("fd00::/64")},
		Ports: []Port{{Port: 0, Protocol: "TCP"}}}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("an invalid site: %v", err)
	}
	for _, want := range []string{
		`site Site_EU/Db_: `,
		`namespace: "Site_EU": `,
		`name: "Db_": `,
		`labels[role]: value "a b": `,
		`ports[0].port: must be between 1 and 65535`,
		`cidrs[0]: 198.19.1.5/24 is not a network address: write 198.19.1.0/24`,
		`cidrs[1]: 100.64.1.0/24 overlaps the overlay range 100.64.0.0/10`,
		`cidrs[3]: 198.19.2.128/25 overlaps 198.19.2.0/24 (cidrs[2])`,
		`cidrs[4]: fd00::/64 is not IPv4`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if err := (&Site{Name: "x", Namespace: "n"}).Validate(); err == nil || !strings.Contains(err.Error(), "cidrs: required") {
		t.Errorf("a site without cidrs: %v", err)
	}
}

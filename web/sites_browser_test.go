package web

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

// sites lists the sites through the admin API.
func (h *harness) sites() []adminapi.Site {
	h.t.Helper()
	var out []adminapi.Site
	if r := h.admin().call("GET", "/v1/admin/sites", nil, &out); r.code != 200 {
		h.t.Fatalf("listing sites: %d %s", r.code, r.body)
	}
	return out
}

// fillSite fills the Sites page's form in one step of the page's script,
// then does then.
func fillSite(ns, name, labels, cidrs, ports string, then ...chromedp.Action[chromedp.Void]) []chromedp.Action[chromedp.Void] {
	vals, _ := json.Marshal(map[string]string{"site-namespace": ns, "site-name": name, "site-labels": labels, "site-cidrs": cidrs, "site-ports": ports})
	return append([]chromedp.Action[chromedp.Void]{visible("#site-form"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void Object.entries(%s).forEach(([id, v]) => { document.getElementById(id).value = v; })`, vals))}, then...)
}

// clearSiteError empties the form's error, so that a test waits for the
// next one.
var clearSiteError = chromedp.Evaluate[chromedp.Void](`void (document.getElementById('site-error').textContent = '')`)

// TestBrowserSites: the Sites page (under Network, after Subnet routes)
// declares a site with its labels, CIDRs and ports, shows for each CIDR the
// gateways whose approved routes cover it, replaces and deletes sites; bad
// input (a CIDR in the overlay, one overlapping another site) shows the
// coordinator's message as it is and changes nothing; a viewer only reads.
func TestBrowserSites(t *testing.T) {
	h := newHarness(t)
	b := newBrowser(t, h)
	// gw-1's route covering 198.19.1.0/24 is approved; gw-2 advertises the
	// same route, not approved; gw-3's approved route covers half of
	// 198.19.2.0/24.
	for _, g := range []struct {
		name, prefix string
		approve      bool
	}{{"gw-1", "198.19.0.0/23", true}, {"gw-2", "198.19.0.0/23", false}, {"gw-3", "198.19.2.0/25", true}} {
		n := h.MustEnroll(h.Token(1), g.name)
		if code, body := h.Post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: coordtest.PublicKey(g.name),
			Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")},
			Routes:    []wire.Route{{Prefix: g.prefix}}}, nil); code != 200 {
			t.Fatalf("register %s: %d %s", g.name, code, body)
		}
		if g.approve {
			if r := h.admin().call("POST", "/v1/admin/routes/approve", adminapi.RouteDecision{Node: g.name, Prefix: g.prefix}, nil); r.code != 200 {
				t.Fatalf("approve %s: %+v", g.name, r)
			}
		}
	}

	b.login("admin", h.adminPW)
	links := js[[]string](b, "reading the Network menu", `Array.from(document.querySelectorAll('#nav-network a')).map((a) => a.getAttribute('href'))`)
	if i := indexOf(links, "#routes"); i < 0 || i+1 >= len(links) || links[i+1] != "#sites" {
		t.Errorf("the Network menu links %q: want #sites right after #routes", links)
	}
	b.run("opening Sites from the menu", click("#nav-network-button"), click(`#nav-network a[href="#sites"]`),
		visible(`main[data-page="sites"] h1`))
	b.checkLabels("sites page")
	if tb := liveText(b, "#sites tbody"); !strings.Contains(tb, "None.") {
		t.Errorf("sites table before any site: %q", tb)
	}

	// Declare a site.
	b.run("declaring site-eu/db", fillSite("site-eu", "db", "role=db, tier=data", "198.19.1.0/24, 198.19.2.0/24", "postgres=5432/TCP, 53/UDP",
		click("#site-save"), visible(`#sites tr[data-site="site-eu/db"]`))...)
	want := []adminapi.Site{{Namespace: "site-eu", Name: "db", Labels: map[string]string{"role": "db", "tier": "data"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24"), netip.MustParsePrefix("198.19.2.0/24")},
		Ports: []adminapi.Port{{Name: "postgres", Port: 5432, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}}}
	if got := h.sites(); !reflect.DeepEqual(got, want) {
		t.Fatalf("sites after the form: %+v, want %+v", got, want)
	}
	row := liveText(b, `#sites tr[data-site="site-eu/db"]`)
	for _, s := range []string{"site-eu/db", "role=db", "tier=data", "198.19.1.0/24", "198.19.2.0/24", "postgres 5432/TCP", "53/UDP"} {
		if !strings.Contains(row, s) {
			t.Errorf("site row %q lacks %q", row, s)
		}
	}
	gws := func(cidr string) string {
		return liveText(b, fmt.Sprintf(`[data-site-cidr="site-eu/db %s"]`, cidr))
	}
	if g := gws("198.19.1.0/24"); !strings.Contains(g, "gw-1") || !strings.Contains(g, "198.19.0.0/23") || strings.Contains(g, "gw-2") {
		t.Errorf("gateways of 198.19.1.0/24: %q; want gw-1 (198.19.0.0/23) and not gw-2, whose route is not approved", g)
	}
	if g := gws("198.19.2.0/24"); !strings.Contains(g, "gw-3") || !strings.Contains(g, "198.19.2.0/25") || !strings.Contains(g, "part") || strings.Contains(g, "gw-1") {
		t.Errorf("gateways of 198.19.2.0/24: %q; want gw-3 for part of it (198.19.2.0/25) only", g)
	}
	b.screenshot("sites")

	// Bad input: the coordinator's message shows as it is; nothing changes.
	before := h.sites()
	admin := h.admin()
	for _, x := range []struct {
		what, ns, name, cidrs string
		msg                   string
	}{
		{"a CIDR in the overlay", "site-eu", "office", "100.64.1.0/24", "overlaps the overlay"},
		{"a CIDR overlapping another site", "site-eu", "office", "198.19.0.0/16", "overlaps 198.19.1.0/24 of site site-eu/db"},
		{"replacing db with a CIDR in the overlay", "site-eu", "db", "198.19.1.0/24, 100.64.0.0/16", "overlaps the overlay"},
		{"a CIDR that is no prefix", "site-eu", "office", "198.19.5.0", "is not a prefix"},
	} {
		// What the admin API answers to the same request.
		var req adminapi.SiteRequest
		for _, c := range strings.Split(x.cidrs, ",") {
			req.CIDRs = append(req.CIDRs, strings.TrimSpace(c))
		}
		r := admin.call("PUT", "/v1/admin/sites/"+x.ns+"/"+x.name, req, nil)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(r.body), &e); r.code < 400 || err != nil || !strings.Contains(e.Error, x.msg) {
			t.Fatalf("%s through the API: %d %s; want an error with %q", x.what, r.code, r.body, x.msg)
		}
		b.run("trying "+x.what, fillSite(x.ns, x.name, "", x.cidrs, "", clearSiteError, click("#site-save"),
			chromedp.Poll[chromedp.Void](`document.getElementById('site-error').textContent !== ''`))...)
		if got := text(b, "#site-error"); !strings.Contains(got, e.Error) {
			t.Errorf("%s: the page says %q; want the coordinator's message %q as it is", x.what, got, e.Error)
		}
		if got := h.sites(); !reflect.DeepEqual(got, before) {
			t.Errorf("%s changed the sites: %+v, want %+v", x.what, got, before)
		}
		if n := js[int](b, "counting rows", `document.querySelectorAll('#sites tr[data-site]').length`); n != 1 {
			t.Errorf("%s: %d sites listed, want 1", x.what, n)
		}
	}
	b.screenshot("sites-bad-input")
	// A label without "=" is refused before anything is sent.
	b.run("trying a bad label", fillSite("site-eu", "db", "role", "198.19.1.0/24", "", clearSiteError, click("#site-save"),
		chromedp.Poll[chromedp.Void](`document.getElementById('site-error').textContent.includes('key=value')`))...)
	if got := h.sites(); !reflect.DeepEqual(got, before) {
		t.Errorf("a bad label changed the sites: %+v", got)
	}

	// Edit fills the form with the site; saving replaces it.
	b.run("editing site-eu/db", click(`[data-edit-site="site-eu/db"]`))
	if got := []string{value(b, "#site-namespace"), value(b, "#site-name"), value(b, "#site-labels"), value(b, "#site-cidrs"), value(b, "#site-ports")}; !reflect.DeepEqual(got,
		[]string{"site-eu", "db", "role=db, tier=data", "198.19.1.0/24, 198.19.2.0/24", "postgres=5432/TCP, 53/UDP"}) {
		t.Errorf("the form after Edit: %q", got)
	}
	b.run("replacing site-eu/db", set("#site-labels", "role=db"), set("#site-cidrs", "198.19.1.0/24"), set("#site-ports", "postgres=5432"),
		click("#site-save"), chromedp.Poll[chromedp.Void](`!document.querySelector('#sites tr[data-site="site-eu/db"]').textContent.includes('198.19.2.0/24')`))
	want[0].Labels, want[0].CIDRs, want[0].Ports = map[string]string{"role": "db"}, want[0].CIDRs[:1], want[0].Ports[:1]
	if got := h.sites(); !reflect.DeepEqual(got, want) {
		t.Errorf("sites after the replacement: %+v, want %+v", got, want)
	}

	// Delete, with confirmation.
	b.run("declaring site-eu/office", fillSite("site-eu", "office", "", "198.19.3.0/24", "", click("#site-save"),
		visible(`#sites tr[data-site="site-eu/office"]`))...)
	b.run("deleting site-eu/office", click(`[data-delete-site="site-eu/office"]`), visible("#confirm-yes"), click("#confirm-yes"),
		chromedp.WaitNotPresent(chromedp.CSS(`#sites tr[data-site="site-eu/office"]`)))
	if got := h.sites(); !reflect.DeepEqual(got, want) {
		t.Errorf("sites after the delete: %+v, want %+v", got, want)
	}

	// What if, with the site in the inventory.
	web := h.MustEnroll(h.Token(1, "namespace=prod,labels=app=api"), "web-1")
	h.MustRegister(web, wire.WorkloadDecl{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"}, Ports: []inventory.Port{{Port: 8080}}})
	if r := admin.do("POST", "/v1/admin/policies", "application/yaml", sitePolicies, map[string]string{auth.CSRFHeader: admin.csrf}); r.code != 200 {
		t.Fatalf("applying the site policies: %d %s", r.code, r.body)
	}
	b.page("whatif")
	b.checkLabels("what-if page with sites")
	if opts := js[[]string](b, "reading the choices", `Array.from(document.querySelectorAll('#whatif-ends option')).map((o) => o.value)`); indexOf(opts, "site-eu/db") < 0 || indexOf(opts, "prod/api") < 0 {
		t.Errorf("what-if choices %q: want the site and the workload", opts)
	}
	ask := func(from, to string) string {
		b.t.Helper()
		b.run("asking what if "+from+" → "+to, chromedp.Evaluate[chromedp.Void](`void document.getElementById('whatif-result').replaceChildren()`),
			set("#whatif-from", from), set("#whatif-to", to), set("#whatif-port", "5432"), click("#whatif-go"),
			visible("#whatif-result > *"))
		return text(b, "#whatif-result")
	}
	for _, x := range []struct {
		from, to string
		want     []string
	}{
		{"prod/api", "site-eu/db@198.19.1.5", []string{"Allowed", "prod/api-to-db", "site-eu/db"}},
		{"prod/api", "site-eu/db", []string{"Partly allowed", "198.19.1.0/25"}},
		{"prod/api", "198.19.1.200", []string{"Denied", "prod/api-to-db"}},
		{"prod/api", "198.19.7.5", []string{"the address is in no site"}},
		{"prod/web-1", "prod/api", []string{"Denied", "Source egress", "Destination ingress"}},
	} {
		got := ask(x.from, x.to)
		if x.to == "site-eu/db" {
			b.screenshot("whatif-site-partial")
		}
		if strings.Contains(got, "null") || strings.Contains(got, "undefined") {
			t.Errorf("what if %s → %s: %q shows a missing value", x.from, x.to, got)
		}
		for _, w := range x.want {
			if !strings.Contains(got, w) {
				t.Errorf("what if %s → %s: %q lacks %q", x.from, x.to, got, w)
			}
		}
	}
	b.screenshot("whatif-site")

	// A viewer reads the sites and changes nothing.
	pw := h.createUser("vic", "viewer")
	b.run("logging out", click("#logout"), visible("#login-form"))
	b.login("vic", pw)
	b.page("sites")
	if n := js[int](b, "counting controls", `document.querySelectorAll('#site-form, [data-edit-site], [data-delete-site]').length`); n != 0 {
		t.Errorf("a viewer sees %d site controls", n)
	}
	if row := liveText(b, `#sites tr[data-site="site-eu/db"]`); !strings.Contains(row, "gw-1") {
		t.Errorf("viewer's site row %q", row)
	}
}

const sitePolicies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-to-db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 198.19.1.0/24, except: [198.19.1.128/25]}
    ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: site-eu}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: prod}}
      podSelector: {matchLabels: {app: api}}
    ports: [{port: postgres}]
`

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
)

// TestSites: an admin declares, replaces, lists and deletes sites; a
// viewer may only list; invalid and overlapping sites are refused with the
// API's codes and a message saying what to do; every change is audited.
func TestSites(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.Admin()
	got, err := c.PutSite(ctx, "site-eu", "db", adminapi.SiteRequest{Labels: map[string]string{"role": "db"},
		CIDRs: []string{"198.19.1.0/24"}, Ports: []adminapi.Port{{Name: "postgres", Port: 5432}}})
	if err != nil {
		t.Fatal(err)
	}
	want := adminapi.Site{Name: "db", Namespace: "site-eu", Labels: map[string]string{"role": "db"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}, Ports: []adminapi.Port{{Name: "postgres", Port: 5432, Protocol: "TCP"}}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Fatalf("put (-want +got):\n%s", diff)
	}
	if _, err := c.PutSite(ctx, "site-eu", "office", adminapi.SiteRequest{CIDRs: []string{"198.19.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutSite(ctx, "site-eu", "office", adminapi.SiteRequest{Labels: map[string]string{"role": "office"}, CIDRs: []string{"198.19.2.0/24", "198.19.3.0/24"}}); err != nil {
		t.Fatalf("replace: %v", err)
	}

	viewer, err := c.CreateAPIToken(ctx, adminapi.APITokenRequest{Name: "ro", Role: "viewer", TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	v := h.Client(viewer.Token)
	sites, err := v.Sites(ctx)
	if err != nil || len(sites) != 2 || sites[1].Namespace+"/"+sites[1].Name != "site-eu/office" || len(sites[1].CIDRs) != 2 || sites[1].Labels["role"] != "office" {
		t.Fatalf("a viewer lists: %+v %v", sites, err)
	}
	var ce *client.Error
	if _, err := v.PutSite(ctx, "site-eu", "x", adminapi.SiteRequest{CIDRs: []string{"198.19.9.0/24"}}); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Fatalf("a viewer declares a site: %v, want 403", err)
	}
	if err := v.DeleteSite(ctx, "site-eu", "db"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Fatalf("a viewer deletes a site: %v, want 403", err)
	}

	for _, x := range []struct {
		req  adminapi.SiteRequest
		code string
		msg  string
	}{
		{adminapi.SiteRequest{CIDRs: []string{"198.19.9.5/24"}}, "invalid", "site site-eu/x: cidrs[0]: 198.19.9.5/24 is not a network address: write 198.19.9.0/24"},
		{adminapi.SiteRequest{CIDRs: []string{"198.19.9.0"}}, "invalid", `cidrs[0]: "198.19.9.0" is not a prefix: give an IPv4 prefix such as 198.19.1.0/24`},
		{adminapi.SiteRequest{CIDRs: []string{"100.64.1.0/24"}}, "invalid", "overlaps the overlay range 100.64.0.0/10"},
		{adminapi.SiteRequest{}, "invalid", "cidrs: required"},
		{adminapi.SiteRequest{CIDRs: []string{"198.19.0.0/16"}}, "conflict", "198.19.0.0/16 overlaps 198.19.1.0/24 of site site-eu/db"},
	} {
		_, err := c.PutSite(ctx, "site-eu", "x", x.req)
		if !client.IsCode(err, x.code) || !strings.Contains(err.Error(), x.msg) {
			t.Errorf("%+v: %v, want %s with %q", x.req, err, x.code, x.msg)
		}
	}
	// The body is read strictly: a misspelt field is refused.
	resp, body := h.rawAdmin(http.MethodPut, "/sites/site-eu/x", "application/json", `{"cidr":["198.19.9.0/24"]}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "cidr") {
		t.Errorf("a misspelt field: %d %s", resp.StatusCode, body)
	}

	if err := c.DeleteSite(ctx, "site-eu", "office"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSite(ctx, "site-eu", "office"); !client.IsCode(err, "not_found") {
		t.Fatalf("delete a missing site: %v, want not_found", err)
	}
	if sites, err := c.Sites(ctx); err != nil || len(sites) != 1 {
		t.Fatalf("after delete: %+v %v", sites, err)
	}
	audit, err := c.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range audit {
		if strings.HasPrefix(a.Action, "site.") {
			actions = append(actions, a.Action+" "+a.Object)
		}
	}
	if diff := cmp.Diff([]string{"site.delete site-eu/office", "site.put site-eu/office", "site.put site-eu/office", "site.put site-eu/db"}, actions); diff != "" {
		t.Errorf("audit, newest first (-want +got):\n%s", diff)
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

// TestWhatIfSites: the admin what-if answers for a site address, part of a
// site and a whole site with the allowed address pairs (the ipBlock's
// except cut out), and for two workloads exactly as before.
func TestWhatIfSites(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.Admin()
	flowSetup(t, h)
	if _, err := c.PutSite(ctx, "site-eu", "db", adminapi.SiteRequest{Labels: map[string]string{"role": "db"},
		CIDRs: []string{"198.19.1.0/24"}, Ports: []adminapi.Port{{Name: "postgres", Port: 5432}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicies(ctx, "p.yaml", "", []byte(sitePolicies)); err != nil {
		t.Fatal(err)
	}
	ws, err := c.Workloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var api string
	for _, w := range ws {
		if w.Name == "api" {
			api = w.IP.String() + "/32"
		}
	}

	ranges := func(w adminapi.WhatIf) string {
		var out []string
		for _, r := range w.AllowedRanges {
			out = append(out, strings.ReplaceAll(fmtPrefixes(r.From)+">"+fmtPrefixes(r.To), api, "api"))
		}
		return strings.Join(out, ";")
	}
	for _, x := range []struct {
		from, to string
		allowed  bool
		verdict  string
		ranges   string
		sides    bool
	}{
		{"prod/api", "site-eu/db@198.19.1.5", true, "allow", "api>198.19.1.5/32", true},
		{"prod/api", "198.19.1.200", false, "deny", "", true},
		{"prod/api", "site-eu/db", false, "partial", "api>198.19.1.0/25", false},
		{"prod/api", "site-eu/db@198.19.1.0/26", true, "allow", "api>198.19.1.0/26", false},
		{"site-eu/db@198.19.1.5", "prod/api", false, "deny", "", true},
	} {
		w, err := c.WhatIf(ctx, x.from, x.to, 5432, "TCP")
		if err != nil {
			t.Fatalf("%s → %s: %v", x.from, x.to, err)
		}
		if w.Allowed != x.allowed || w.Verdict != x.verdict || ranges(w) != x.ranges || (w.Egress != nil) != x.sides || (w.Ingress != nil) != x.sides {
			t.Errorf("%s → %s: allowed %v verdict %q ranges %q sides %v, want %v %q %q %v", x.from, x.to, w.Allowed, w.Verdict, ranges(w), w.Egress != nil, x.allowed, x.verdict, x.ranges, x.sides)
		}
	}
	w, err := c.WhatIf(ctx, "prod/api", "site-eu/db@198.19.1.5", 5432, "TCP")
	if err != nil || !w.Egress.Allowed || !w.Ingress.Allowed || !cmp.Equal(w.Egress.Policies, []string{"prod/api-to-db"}) || !cmp.Equal(w.Ingress.Policies, []string{"site-eu/db"}) {
		t.Errorf("the sides of a site address: %+v %+v %v", w.Egress, w.Ingress, err)
	}

	// The answer with address pairs, read strictly against its schema.
	doc := loadOpenAPI(t, h)
	resp, body := h.rawAdmin(http.MethodGet, "/whatif?from=prod/api&to=site-eu/db&port=5432", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"allowedRanges":[{"from":["`) {
		t.Fatalf("whatif of a whole site: %d %s", resp.StatusCode, body)
	}
	checkAnswer(t, body, reflect.TypeFor[adminapi.WhatIf](), doc.Paths.Find("/whatif").Get.Responses.Status(200).Value.Content.Get("application/json").Schema)

	// Two workloads: the answer is what it always was, with no site field.
	resp, body = h.rawAdmin(http.MethodGet, "/whatif?from=prod/web&to=prod/api&port=80", "", "")
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "verdict") || strings.Contains(string(body), "allowedRanges") ||
		!strings.Contains(string(body), `"egress":{`) || !strings.Contains(string(body), `"ingress":{`) {
		t.Errorf("workload to workload: %d %s", resp.StatusCode, body)
	}

	for _, x := range []struct{ to, code, msg string }{
		{"site-eu/db@198.19.7.5", "invalid", "198.19.7.5/32 is not a network inside site site-eu/db"},
		{"site-eu/nope", "not_found", "no such workload, node or site"},
		{"198.19.7.5", "not_found", "the address is in no site"},
	} {
		if _, err := c.WhatIf(ctx, "prod/api", x.to, 5432, "TCP"); !client.IsCode(err, x.code) || !strings.Contains(err.Error(), x.msg) {
			t.Errorf("to %s: %v, want %s with %q", x.to, err, x.code, x.msg)
		}
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return strings.Join(out, "+")
}

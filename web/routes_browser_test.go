package web

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/wire"
)

// TestBrowserRoutes: the Subnet routes page lists what a gateway
// advertises; an admin approves one and rejects another with the buttons
// (the rejection asks first); a viewer sees the list without controls.
func TestBrowserRoutes(t *testing.T) {
	h := newHarness(t)
	b := newBrowser(t, h)
	gw := h.MustEnroll(h.Token(1), "gw-1")
	if code, body := h.Post(gw, wire.PathRegister, wire.RegisterRequest{PublicKey: coordtest.PublicKey("gw-1"),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")},
		Routes:    []wire.Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}}}, nil); code != 200 {
		t.Fatalf("register the gateway: %d %s", code, body)
	}
	b.login("admin", h.adminPW)
	b.page("routes")
	b.checkLabels("routes page")
	if tb := liveText(b, "#routes tbody"); !strings.Contains(tb, "198.19.1.0/24") || !strings.Contains(tb, "198.19.2.0/24") || !strings.Contains(tb, "advertised") {
		t.Errorf("routes table %q", tb)
	}
	b.screenshot("routes")

	status := func(prefix string) string {
		var rs []adminapi.SubnetRoute
		h.admin().call("GET", "/v1/admin/routes", nil, &rs)
		for _, r := range rs {
			if r.Prefix.String() == prefix {
				return r.Status
			}
		}
		return ""
	}
	b.run("approving 198.19.1.0/24", click(`[data-approve-route="gw-1 198.19.1.0/24"]`),
		chromedp.WaitNotPresent(chromedp.CSS(`[data-approve-route="gw-1 198.19.1.0/24"]`)))
	waitFor(t, "198.19.1.0/24 approved", func() bool { return status("198.19.1.0/24") == adminapi.RouteApproved })
	// The primary and online columns say what the API says.
	var rs []adminapi.SubnetRoute
	h.admin().call("GET", "/v1/admin/routes", nil, &rs)
	for _, r := range rs {
		key := r.Node + " " + r.Prefix.String()
		wantPrimary := map[bool]string{true: "primary", false: "standby"}[r.Primary]
		if r.Status != adminapi.RouteApproved {
			wantPrimary = "—"
		}
		wantOnline := map[bool]string{true: "online", false: "offline"}[r.Online]
		b.run("waiting for "+key+"'s state", chromedp.Poll[chromedp.Void](
			`(document.querySelector('[data-route-primary="`+key+`"]')||{}).textContent === '`+wantPrimary+`' && (document.querySelector('[data-route-online="`+key+`"]')||{}).textContent === '`+wantOnline+`'`,
			chromedp.WithPollingTimeout(20*time.Second)))
	}
	b.run("rejecting 198.19.2.0/24", click(`[data-reject-route="gw-1 198.19.2.0/24"]`), visible("#confirm-yes"), click("#confirm-yes"),
		chromedp.WaitNotPresent(chromedp.CSS(`[data-reject-route="gw-1 198.19.2.0/24"]`)))
	waitFor(t, "198.19.2.0/24 rejected", func() bool { return status("198.19.2.0/24") == adminapi.RouteRejected })

	pw := h.createUser("vic", "viewer")
	b.run("logging out", click("#logout"), visible("#login-form"))
	b.login("vic", pw)
	b.page("routes")
	if n := js[int](b, "counting controls", `document.querySelectorAll('[data-approve-route], [data-reject-route]').length`); n != 0 {
		t.Errorf("a viewer sees %d approve/reject controls", n)
	}
	if tb := liveText(b, "#routes tbody"); !strings.Contains(tb, "approved") || !strings.Contains(tb, "rejected") {
		t.Errorf("viewer's routes table %q", tb)
	}

	// An admin's decision shows live, without a reload.
	js[chromedp.Void](b, "marking the page", `void (window.latchNoReload = 45)`)
	if r := h.admin().call("POST", "/v1/admin/routes/approve", adminapi.RouteDecision{Node: "gw-1", Prefix: "198.19.2.0/24"}, nil); r.code != 200 {
		t.Fatalf("approve: %+v", r)
	}
	b.run("waiting for the approval to show", chromedp.Poll[chromedp.Void](`!document.querySelector('#routes tbody').textContent.includes('rejected')`, chromedp.WithPollingTimeout(30*time.Second)))
	if js[int](b, "checking no reload", `window.latchNoReload || 0`) != 45 {
		t.Error("the page reloaded; the decision should show through live updates")
	}
}

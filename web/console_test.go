package web

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

// isPublic lists what answers without credentials: the login page and
// its assets, the node API (enrollment, and the mTLS calls that refuse on
// their own), and what a machine being installed fetches (the install
// script, the CA certificate, the binaries; coordinator/api tests them).
func isPublic(method, path string) bool {
	switch {
	case path == "/" || path == "/console": // redirects to the console
		return true
	case path == Prefix+"login":
		return true
	case strings.HasPrefix(path, "/v1/") && !strings.HasPrefix(path, "/v1/admin"):
		return true // node API: checked by its own tests
	case method == "GET" && (path == "/install.sh" || path == "/ca.pem" || strings.HasPrefix(path, "/dl/")):
		return true
	}
	return false
}

func TestNothingWithoutSessionOrToken(t *testing.T) {
	h := newHarness(t)
	routes := h.API.Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes: the walk would miss some", len(routes))
	}
	anon := h.newClient()
	bogus := h.newClient()
	u, _ := http.NewRequest("GET", h.URL, nil)
	bogus.http.Jar.SetCookies(u.URL, []*http.Cookie{{Name: auth.SessionCookie, Value: "not-a-session"}})
	badBearer := h.newClient()
	badBearer.bearer = "latchapi.nope.nope"
	checked := 0
	for _, r := range routes {
		if r.Method == echoRouteNotFound || isPublic(r.Method, r.Path) {
			continue
		}
		path := pathFor(r)
		for name, c := range map[string]*client{"no credentials": anon, "unknown session cookie": bogus, "unknown API token": badBearer} {
			got := c.do(r.Method, path, "application/json", "{}", nil)
			switch {
			case got.code == http.StatusUnauthorized:
			case got.code == http.StatusSeeOther && got.hdr.Get("Location") == Prefix+"login":
			default:
				t.Errorf("%s %s with %s: %d %q; want 401 or a redirect to the login page", r.Method, path, name, got.code, got.body)
			}
			checked++
		}
	}
	t.Logf("%d route/credential combinations refused", checked)
	// The asset walk above used app.js; every non-public asset needs a session.
	entries, _ := assetFS.ReadDir("assets")
	for _, e := range entries {
		got := anon.do("GET", Prefix+"assets/"+e.Name(), "", "", nil)
		if publicAssets[e.Name()] != (got.code == 200) {
			t.Errorf("asset %s without a session: %d (public: %v)", e.Name(), got.code, publicAssets[e.Name()])
		}
	}
	// The login page itself is served; the console redirects to it.
	if got := anon.do("GET", Prefix+"login", "", "", nil); got.code != 200 || !strings.Contains(got.body, `<label for="login-name">`) {
		t.Errorf("login page: %d", got.code)
	}
	if got := anon.do("GET", "/", "", "", nil); got.code != http.StatusSeeOther {
		t.Errorf("GET /: %d, want a redirect", got.code)
	}
}

// echoRouteNotFound is the method echo records for its own not-found routes.
const echoRouteNotFound = "echo_route_not_found"

func TestCSRF(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	ns := `{"Mode":"monitor"}`
	for name, hdr := range map[string]map[string]string{
		"missing": nil,
		"wrong":   {auth.CSRFHeader: "wrong"},
		"empty":   {auth.CSRFHeader: ""},
		"other session's": {auth.CSRFHeader: func() string {
			return h.admin().csrf
		}()},
	} {
		if got := c.do("PUT", "/v1/admin/namespaces/prod", "application/json", ns, hdr); got.code != http.StatusForbidden || !strings.Contains(got.body, "csrf") {
			t.Errorf("CSRF %s: %d %s; want 403", name, got.code, got.body)
		}
		if got := c.do("POST", Prefix+"logout", "", "", hdr); got.code != http.StatusForbidden {
			t.Errorf("logout with CSRF %s: %d; want 403", name, got.code)
		}
	}
	// Nothing was changed.
	var nss []adminapi.Namespace
	c.call("GET", "/v1/admin/namespaces", nil, &nss)
	if len(nss) != 0 {
		t.Errorf("a refused change left namespaces %v", nss)
	}
	if got := c.do("PUT", "/v1/admin/namespaces/prod", "application/json", ns, map[string]string{auth.CSRFHeader: c.csrf}); got.code != 200 {
		t.Errorf("with the right CSRF token: %d %s", got.code, got.body)
	}
	// Bearer tokens need no CSRF token (no browser sends them on its own).
	tok := h.newClient()
	tok.bearer = h.AdminToken
	if got := tok.do("PUT", "/v1/admin/namespaces/dev", "application/json", ns, nil); got.code != 200 {
		t.Errorf("admin token: %d %s", got.code, got.body)
	}
	// Login refuses a form post (a cross-site form cannot send JSON).
	if got := h.newClient().do("POST", Prefix+"login", "application/x-www-form-urlencoded", "name=admin&password="+h.adminPW, nil); got.code != http.StatusUnsupportedMediaType {
		t.Errorf("form login: %d, want 415", got.code)
	}
}

func TestCookieFlags(t *testing.T) {
	h := newHarness(t)
	got := h.newClient().login("admin", h.adminPW)
	ck := got.hdr.Get("Set-Cookie")
	for _, want := range []string{auth.SessionCookie + "=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %s", ck, want)
		}
	}
	if csp := got.hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestAssetPathTraversal(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	for _, p := range []string{
		"../console.go", "..%2fconsole.go", "%2e%2e/console.go", "%2e%2e%2fconsole.go", "..%5cconsole.go",
		"../../../../etc/passwd", "..%2f..%2f..%2f..%2fetc%2fpasswd", "assets/app.js", "./app.js", ".%2fapp.js",
		"%00app.js", "app.js%00", "/etc/passwd", "%2fetc%2fpasswd", "..", "%2e%2e", "", "nope.js",
	} {
		got := c.do("GET", Prefix+"assets/"+p, "", "", nil)
		if got.code == 200 && (strings.Contains(got.body, "package console") || strings.Contains(got.body, "root:")) {
			t.Errorf("asset %q served a file outside the assets: %q", p, got.body[:min(len(got.body), 80)])
		}
		if got.code == 200 && !strings.HasPrefix(p, "nope") {
			// Only an exact asset name may be served; the server may clean
			// a path to one (then it is an asset, which is fine).
			t.Logf("asset %q: 200 (%d bytes)", p, len(got.body))
		}
	}
	// Go's router cleans ../ before echo sees it; the raw path must not
	// escape either.
	if got := c.do("GET", Prefix+"assets/..%2f..%2fconsole.go", "", "", nil); got.code == 200 {
		t.Errorf("encoded traversal served: %d", got.code)
	}
	if got := c.do("GET", Prefix+"assets/app.js", "", "", nil); got.code != 200 || !strings.Contains(got.hdr.Get("Content-Type"), "javascript") {
		t.Errorf("app.js: %d %s", got.code, got.hdr.Get("Content-Type"))
	}
}

func TestViewerChangesNothing(t *testing.T) {
	h := newHarness(t)
	pw := h.createUser("vera", "viewer")
	v := h.loggedIn("vera", pw)
	// A viewer API token is refused the same way.
	var tok adminapi.APITokenCreated
	if got := h.admin().call("POST", "/v1/admin/apitokens", adminapi.APITokenRequest{Name: "ro", Role: "viewer"}, &tok); got.code != 200 {
		t.Fatalf("api token: %d %s", got.code, got.body)
	}
	vt := h.newClient()
	vt.bearer = tok.Token
	before := h.auditLen()
	mutating := 0
	for _, r := range h.API.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/admin") || r.Method == http.MethodGet || r.Method == echoRouteNotFound {
			continue
		}
		mutating++
		for name, c := range map[string]*client{"viewer session": v, "viewer API token": vt} {
			got := c.call(r.Method, pathFor(r), map[string]string{"name": "x", "role": "admin"}, nil)
			if got.code != http.StatusForbidden || !strings.Contains(got.body, "may only read") {
				t.Errorf("%s %s as %s: %d %s; want 403 saying viewers only read", r.Method, r.Path, name, got.code, got.body)
			}
		}
	}
	if mutating < 10 {
		t.Errorf("only %d mutating admin routes found", mutating)
	}
	if after := h.auditLen(); after != before {
		t.Errorf("the audit log grew from %d to %d: a viewer changed something", before, after)
	}
	// Reads work.
	for _, p := range []string{"/v1/admin/status", "/v1/admin/nodes", "/v1/admin/audit", "/v1/admin/users", "/v1/admin/flows/denied"} {
		if got := v.call("GET", p, nil, nil); got.code != 200 {
			t.Errorf("viewer GET %s: %d %s", p, got.code, got.body)
		}
	}
}

func (h *harness) auditLen() int {
	var n int
	h.State.Read(context.Background(), func(tx store.Tx) error {
		es, err := tx.ListAudit(0)
		n = len(es)
		return err
	})
	return n
}

func TestLoginRateLimit(t *testing.T) {
	h := newHarness(t)
	pw := h.createUser("bob", "viewer")
	c := h.newClient()
	for i := 0; i < 5; i++ {
		if got := c.login("admin", "wrong password!"); got.code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, got.code)
		}
	}
	got := c.login("admin", h.adminPW)
	if got.code != http.StatusTooManyRequests || got.hdr.Get("Retry-After") == "" {
		t.Fatalf("6th attempt with the right password: %d %s; want 429 with Retry-After", got.code, got.body)
	}
	// Another user from the same address is not blocked.
	if got := h.newClient().login("bob", pw); got.code != 200 {
		t.Errorf("other user: %d", got.code)
	}
	// After the window, the user may try again.
	h.Clock.Advance(16 * time.Minute)
	if got := c.login("admin", h.adminPW); got.code != 200 {
		t.Errorf("after the window: %d %s", got.code, got.body)
	}
}

func TestLimiterBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewLimiter(3, time.Minute, 100, func() time.Time { return now })
	for i := 0; i < 1000; i++ {
		l.Fail(string(rune('a'+i%26)) + strings.Repeat("x", i))
		now = now.Add(time.Millisecond)
	}
	if l.Len() > 100 {
		t.Errorf("limiter holds %d keys, bound is 100", l.Len())
	}
	for i := 0; i < 3; i++ {
		l.Fail("k")
	}
	if l.Blocked("k") <= 0 {
		t.Error("key not blocked after 3 failures")
	}
	l.Reset("k")
	if l.Blocked("k") != 0 {
		t.Error("key blocked after reset")
	}
}

func TestLogoutEndsSession(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	if got := c.call("GET", "/v1/admin/whoami", nil, nil); got.code != 200 {
		t.Fatalf("whoami: %d", got.code)
	}
	u, _ := http.NewRequest("GET", h.URL, nil)
	old := c.http.Jar.Cookies(u.URL)
	if got := c.call("POST", Prefix+"logout", nil, nil); got.code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", got.code, got.body)
	}
	// Replaying the old cookie is refused: the session is gone server-side.
	replay := h.newClient()
	replay.http.Jar.SetCookies(u.URL, old)
	replay.csrf = c.csrf
	if got := replay.call("GET", "/v1/admin/whoami", nil, nil); got.code != http.StatusUnauthorized {
		t.Errorf("old session after logout: %d", got.code)
	}
	if got := replay.do("GET", Prefix, "", "", nil); got.code != http.StatusSeeOther {
		t.Errorf("console page after logout: %d, want a redirect to login", got.code)
	}
	// An expired session is refused too.
	c2 := h.admin()
	h.Clock.Advance(13 * time.Hour)
	if got := c2.call("GET", "/v1/admin/whoami", nil, nil); got.code != http.StatusUnauthorized {
		t.Errorf("expired session: %d", got.code)
	}
}

func TestFirstAdminAndUsers(t *testing.T) {
	h := newHarness(t)
	fi, err := os.Stat(filepath.Join(h.Dir, PasswordFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-password: %v %v; want mode 0600", fi, err)
	}
	data, _ := os.ReadFile(filepath.Join(h.Dir, PasswordFile))
	if strings.TrimSpace(string(data)) != h.adminPW || len(h.adminPW) < auth.MinPasswordLength {
		t.Fatalf("password file holds %q, want the first admin's password", data)
	}
	// Users existing, a second start makes nobody.
	if pw, err := EnsureFirstAdmin(context.Background(), h.State, h.Dir, nil); err != nil || pw != "" {
		t.Errorf("second EnsureFirstAdmin: %q %v", pw, err)
	}
	c := h.admin()
	for _, bad := range []adminapi.UserRequest{{Name: "Bad Name", Role: "viewer"}, {Name: "ok", Role: "root"}, {Name: "ok", Role: "viewer", Password: "short"}} {
		if got := c.call("POST", "/v1/admin/users", bad, nil); got.code != http.StatusBadRequest {
			t.Errorf("create %+v: %d %s; want 400", bad, got.code, got.body)
		}
	}
	if got := c.call("POST", "/v1/admin/users", adminapi.UserRequest{Name: "alice", Role: "admin", Password: "a long password"}, nil); got.code != 200 {
		t.Fatalf("create alice: %d %s", got.code, got.body)
	}
	if got := c.call("POST", "/v1/admin/users", adminapi.UserRequest{Name: "alice", Role: "admin"}, nil); got.code != http.StatusConflict {
		t.Errorf("create alice twice: %d", got.code)
	}
	alice := h.loggedIn("alice", "a long password")
	// Changes are audited under the user's name, with before and after.
	if got := alice.call("PUT", "/v1/admin/namespaces/prod", adminapi.Namespace{Mode: "monitor"}, nil); got.code != 200 {
		t.Fatalf("put namespace: %d %s", got.code, got.body)
	}
	alice.call("PUT", "/v1/admin/namespaces/prod", adminapi.Namespace{Mode: "enforce"}, nil)
	var audit []adminapi.AuditEntry
	alice.call("GET", "/v1/admin/audit", nil, &audit)
	if len(audit) == 0 || audit[0].Actor != "alice" || audit[0].Action != "namespace.put" ||
		!strings.Contains(audit[0].Detail, `"before":{"Name":"prod","Labels":null,"Mode":"monitor"}`) {
		t.Errorf("newest audit entry %+v: want alice's namespace.put with the before state", audit[0])
	}
	// Deleting a user ends its sessions; the last admin cannot be deleted.
	if got := c.call("DELETE", "/v1/admin/users/alice", nil, nil); got.code != http.StatusNoContent {
		t.Fatalf("delete alice: %d %s", got.code, got.body)
	}
	if got := alice.call("GET", "/v1/admin/whoami", nil, nil); got.code != http.StatusUnauthorized {
		t.Errorf("deleted user's session: %d", got.code)
	}
	if got := c.call("DELETE", "/v1/admin/users/admin", nil, nil); got.code != http.StatusConflict || !strings.Contains(got.body, "last admin") {
		t.Errorf("delete the last admin: %d %s", got.code, got.body)
	}
}

func TestAPITokens(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	var tok adminapi.APITokenCreated
	if got := c.call("POST", "/v1/admin/apitokens", adminapi.APITokenRequest{Name: "deploy", Role: "admin", TTL: "1h"}, &tok); got.code != 200 {
		t.Fatalf("create: %d %s", got.code, got.body)
	}
	bot := h.newClient()
	bot.bearer = tok.Token
	if got := bot.call("PUT", "/v1/admin/namespaces/ci", adminapi.Namespace{}, nil); got.code != 200 {
		t.Errorf("admin API token change: %d %s", got.code, got.body)
	}
	var list []adminapi.APIToken
	c.call("GET", "/v1/admin/apitokens", nil, &list)
	if len(list) != 1 || list[0].Name != "deploy" || list[0].CreatedBy != "admin" || strings.Contains(c.call("GET", "/v1/admin/apitokens", nil, nil).body, "ecret") {
		t.Errorf("list: %+v", list)
	}
	var audit []adminapi.AuditEntry
	c.call("GET", "/v1/admin/audit", nil, &audit)
	if audit[0].Actor != "apitoken:deploy" {
		t.Errorf("audit actor %q, want apitoken:deploy", audit[0].Actor)
	}
	if got := c.call("DELETE", "/v1/admin/apitokens/"+tok.ID, nil, nil); got.code != http.StatusNoContent {
		t.Fatalf("revoke: %d", got.code)
	}
	if got := bot.call("GET", "/v1/admin/nodes", nil, nil); got.code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", got.code)
	}
	// Expired tokens are refused.
	c.call("POST", "/v1/admin/apitokens", adminapi.APITokenRequest{Name: "short", Role: "viewer", TTL: "1m"}, &tok)
	bot.bearer = tok.Token
	h.Clock.Advance(2 * time.Minute)
	if got := bot.call("GET", "/v1/admin/nodes", nil, nil); got.code != http.StatusUnauthorized {
		t.Errorf("expired token: %d", got.code)
	}
	// A wrong secret with a real id is refused.
	bot.bearer = auth.APITokenPrefix + tok.ID + ".wrong"
	if got := bot.call("GET", "/v1/admin/nodes", nil, nil); got.code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d", got.code)
	}
}

const badPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: prod
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: 80
      protocol: TCPP
`

func TestPolicyValidateWhatIfGraph(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	var v adminapi.Validation
	if got := c.do("POST", "/v1/admin/policies/validate", "application/yaml", badPolicy, map[string]string{auth.CSRFHeader: c.csrf}); got.code != 200 {
		t.Fatalf("validate: %d %s", got.code, got.body)
	} else {
		json.Unmarshal([]byte(got.body), &v)
	}
	if v.Valid || len(v.Problems) != 1 || v.Problems[0].Line != 11 || !strings.Contains(v.Problems[0].Field, "protocol") {
		t.Fatalf("validation %+v: want one problem at line 11 on the protocol", v)
	}
	good := strings.Replace(badPolicy, "TCPP", "TCP", 1)
	got := c.do("POST", "/v1/admin/policies/validate", "application/yaml", good, map[string]string{auth.CSRFHeader: c.csrf})
	json.Unmarshal([]byte(got.body), &v)
	if !v.Valid || len(v.Changes) != 1 || v.Changes[0].Key != "prod/web" || v.Changes[0].Before != "" || !strings.Contains(v.Changes[0].After, "port: 80") {
		t.Fatalf("validation of the fixed policy %+v", v)
	}
	if got := c.do("POST", "/v1/admin/policies", "application/yaml", good, map[string]string{auth.CSRFHeader: c.csrf}); got.code != 200 {
		t.Fatalf("apply: %d %s", got.code, got.body)
	}
	got = c.do("POST", "/v1/admin/policies/validate", "application/yaml", strings.Replace(good, "80", "8080", 1), map[string]string{auth.CSRFHeader: c.csrf})
	json.Unmarshal([]byte(got.body), &v)
	if !v.Valid || !strings.Contains(v.Changes[0].Before, "port: 80\n") || !strings.Contains(v.Changes[0].After, "port: 8080") {
		t.Errorf("diff against the applied policy: %+v", v)
	}
	// Two nodes: web (selected by the policy, ingress on 80 allowed) and
	// a client; egress from the client is not isolated, so the baseline
	// (deny) decides it.
	var tok adminapi.JoinTokenCreated
	c.call("POST", "/v1/admin/tokens", adminapi.JoinTokenRequest{Namespace: "prod", Uses: 2}, &tok)
	h.MustEnroll(tok.Token, "web")
	h.MustEnroll(tok.Token, "cli")
	var w adminapi.WhatIf
	if got := c.call("GET", "/v1/admin/whatif?from=prod/cli&to=prod/web&port=80&protocol=tcp", nil, &w); got.code != 200 {
		t.Fatalf("whatif: %d %s", got.code, got.body)
	}
	if w.Allowed || !w.Ingress.Allowed || !w.Ingress.Isolated || len(w.Ingress.Policies) != 1 || w.Ingress.Policies[0] != "prod/web" || w.Egress.Isolated {
		t.Errorf("whatif %+v: want ingress allowed by prod/web, egress denied by the baseline", w)
	}
	if got := c.call("GET", "/v1/admin/whatif?from=prod/nope&to=prod/web&port=80", nil, nil); got.code != http.StatusNotFound {
		t.Errorf("unknown source: %d", got.code)
	}
	if got := c.call("GET", "/v1/admin/whatif?from=prod/cli&to=prod/web&port=0", nil, nil); got.code != http.StatusBadRequest {
		t.Errorf("port 0: %d", got.code)
	}
	var g adminapi.Graph
	c.call("GET", "/v1/admin/graph?namespace=prod", nil, &g)
	if len(g.Nodes) != 2 || len(g.Edges) != 0 {
		t.Errorf("graph %+v: want the two nodes and no edge (the baseline denies egress)", g)
	}
	var st adminapi.Status
	c.call("GET", "/v1/admin/status", nil, &st)
	if len(st.Nodes) != 2 || st.Nodes[0].SpiffeID != "spiffe://example.test/latch/node/cli" || st.Nodes[0].CertExpires.IsZero() || st.Nodes[0].Online {
		t.Errorf("status %+v", st.Nodes)
	}
}

func TestEventStream(t *testing.T) {
	h := newHarness(t)
	c := h.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+"/v1/admin/events", nil)
	r, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	var tok adminapi.JoinTokenCreated
	c.call("POST", "/v1/admin/tokens", adminapi.JoinTokenRequest{Uses: 1}, &tok)
	h.MustEnroll(tok.Token, "n1")
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") && strings.Contains(line, `"action":"node.enroll"`) && strings.Contains(line, `"object":"n1"`) {
			return
		}
	}
	t.Fatalf("no node.enroll event: %v", sc.Err())
}

func TestDeniedFlowsSource(t *testing.T) {
	h := newHarness(t)
	var got adminapi.DeniedFlows
	h.admin().call("GET", "/v1/admin/flows/denied", nil, &got)
	if !got.Available || got.Flows == nil || len(got.Flows) != 0 {
		t.Errorf("before any flow: %+v; want available=true and no flows", got)
	}
	// Flow records reported through the node API: the panel lists the
	// denied and would-deny ones, newest first, not the allowed ones.
	a, b := h.flowNodes()
	now := h.Clock.Now()
	rec := func(n int, verdict string, port uint16) wire.FlowRecord {
		return wire.FlowRecord{Start: now.Add(time.Duration(n) * time.Second), End: now.Add(time.Duration(n+1) * time.Second),
			Direction: wire.DirEgress, Src: a, Dst: b, Protocol: "TCP", Port: port, Verdict: verdict, Reason: "policy", Packets: 1, Bytes: 60}
	}
	if _, err := h.PostFlows(h.flowNode, rec(0, wire.VerdictDenied, 22), rec(1, wire.VerdictAllowed, 80), rec(2, wire.VerdictWouldDeny, 8080)); err != nil {
		t.Fatal(err)
	}
	h.admin().call("GET", "/v1/admin/flows/denied", nil, &got)
	if len(got.Flows) != 2 {
		t.Fatalf("denied flows %+v; want the would-deny and the denied one", got.Flows)
	}
	if f := got.Flows[0]; f.Port != 8080 || !f.Monitor || f.From != "prod/api" || f.To != "prod/pg" || f.Node != "db-1" || f.Protocol != "TCP" {
		t.Errorf("newest denied flow %+v; want the would-deny prod/api -> prod/pg:8080 reported by db-1", f)
	}
	if f := got.Flows[1]; f.Port != 22 || f.Monitor {
		t.Errorf("second denied flow %+v; want the denied one on 22", f)
	}
	// The newest first, at most the limit.
	fl, err := StoredFlows{State: h.State}.RecentDenied(context.Background(), 1)
	if err != nil || len(fl) != 1 || fl[0].Port != 8080 {
		t.Errorf("RecentDenied(1): %+v %v", fl, err)
	}
	// A viewer reads the flows and the suggestion, and may not apply or enforce.
	v := h.loggedIn("vera", h.createUser("vera", "viewer"))
	if r := v.do("GET", "/v1/admin/flows?namespace=prod&format=jsonl", "", "", nil); r.code != 200 || strings.Count(r.body, "\n") != 3 {
		t.Errorf("viewer export: %d %q", r.code, r.body)
	}
	if r := v.do("GET", "/v1/admin/namespaces/prod/suggest?since=1h", "", "", nil); r.code != 200 || !strings.Contains(r.body, "kind: NetworkPolicy") {
		t.Errorf("viewer suggestion: %d %q", r.code, r.body)
	}
	if r := v.call("PUT", "/v1/admin/namespaces/prod", adminapi.Namespace{Mode: "enforce"}, nil); r.code != http.StatusForbidden {
		t.Errorf("viewer switching prod to enforce: %d %s", r.code, r.body)
	}
}

// flowNodes enrolls db-1 with workloads prod/api and prod/pg and returns
// their addresses; h.flowNode is db-1.
func (h *harness) flowNodes() (api, pg netip.Addr) {
	h.t.Helper()
	c := h.admin()
	var tok adminapi.JoinTokenCreated
	if r := c.call("POST", "/v1/admin/tokens", map[string]any{"namespace": "prod", "uses": 1,
		"workloads": []string{"namespace=prod,labels=app=api", "namespace=prod,labels=app=pg"}}, &tok); r.code != 200 {
		h.t.Fatalf("join token: %d %s", r.code, r.body)
	}
	n := h.MustEnroll(tok.Token, "db-1")
	h.MustRegister(n,
		wire.WorkloadDecl{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"}, Ports: []inventory.Port{{Port: 8080}}},
		wire.WorkloadDecl{Name: "pg", Namespace: "prod", Labels: map[string]string{"app": "pg"}, Ports: []inventory.Port{{Port: 5432}}},
	)
	h.flowNode = n
	return h.workloadIP("prod/api"), h.workloadIP("prod/pg")
}

// workloadIP is the address the coordinator gave workload ns/name.
func (h *harness) workloadIP(key string) netip.Addr {
	h.t.Helper()
	var ws []adminapi.Workload
	h.admin().call("GET", "/v1/admin/workloads", nil, &ws)
	for _, w := range ws {
		if w.Namespace+"/"+w.Name == key {
			return w.IP
		}
	}
	h.t.Fatalf("no workload %s in %+v", key, ws)
	return netip.Addr{}
}

// TestSpiffeApproval: a node with an SVID from the trusted SPIRE-like CA
// whose ID matches no mapping waits; the console's session sees it (the
// event stream says so), a viewer cannot decide on it, an admin approves
// one and rejects another through the admin API, each in the audit log.
func TestSpiffeApproval(t *testing.T) {
	h := newHarness(t)
	adm := h.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+"/v1/admin/events", nil)
	ev, err := adm.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Body.Close()

	laptop := h.spireNode("spiffe://spire.test/dev/laptop")
	if code, e := h.registerSpire(laptop); code != http.StatusForbidden || e.Code != "pending" {
		t.Fatalf("register of an unmapped SPIRE node: %d %+v; want 403 pending", code, e)
	}
	sc := bufio.NewScanner(ev.Body)
	for found := false; !found; {
		if !sc.Scan() {
			t.Fatalf("no node.spiffe.pending event: %v", sc.Err())
		}
		found = strings.Contains(sc.Text(), `"action":"node.spiffe.pending"`) && strings.Contains(sc.Text(), `"object":"laptop"`)
	}
	kiosk := h.spireNode("spiffe://spire.test/dev/kiosk")
	h.registerSpire(kiosk)
	web := h.spireNode("spiffe://spire.test/prod/web")
	if code, e := h.registerSpire(web); code != 200 {
		t.Fatalf("register of a mapped SPIRE node: %d %+v", code, e)
	}

	// A viewer reads the lists and may decide nothing.
	v := h.loggedIn("vera", h.createUser("vera", "viewer"))
	var pending []adminapi.SpiffeNode
	if r := v.call("GET", "/v1/admin/spiffe/nodes?status=pending", nil, &pending); r.code != 200 || len(pending) != 2 {
		t.Fatalf("viewer: pending list %d %s", r.code, r.body)
	}
	before := h.auditLen()
	if r := v.call("POST", "/v1/admin/spiffe/nodes/approve", adminapi.SpiffeApproval{Node: "laptop", Namespace: "dev"}, nil); r.code != http.StatusForbidden {
		t.Errorf("viewer approving: %d %s", r.code, r.body)
	}
	if r := v.call("POST", "/v1/admin/spiffe/nodes/reject", adminapi.SpiffeRejection{Node: "laptop"}, nil); r.code != http.StatusForbidden {
		t.Errorf("viewer rejecting: %d %s", r.code, r.body)
	}
	// An admin's session without the CSRF header is refused too.
	if r := adm.do("POST", "/v1/admin/spiffe/nodes/approve", "application/json", `{"node":"laptop","namespace":"dev"}`, nil); r.code != http.StatusForbidden {
		t.Errorf("approving without the CSRF header: %d %s", r.code, r.body)
	}
	if after := h.auditLen(); after != before {
		t.Errorf("refused decisions changed the audit log (%d to %d entries)", before, after)
	}

	// The admin approves laptop (by SPIFFE ID, as the console does) with a
	// bad label first, then a good one; then it registers.
	if r := adm.call("POST", "/v1/admin/spiffe/nodes/approve", adminapi.SpiffeApproval{Node: "spiffe://spire.test/dev/laptop", Namespace: "dev",
		Labels: map[string]string{"role": "bad value!"}}, nil); r.code != http.StatusBadRequest || !strings.Contains(r.body, "label role") {
		t.Errorf("approving with a bad label: %d %s", r.code, r.body)
	}
	var n adminapi.Node
	if r := adm.call("POST", "/v1/admin/spiffe/nodes/approve", adminapi.SpiffeApproval{Node: "spiffe://spire.test/dev/laptop", Namespace: "dev",
		Labels: map[string]string{"role": "client"}}, &n); r.code != 200 || n.Name != "laptop" || n.Namespace != "dev" || n.Labels["role"] != "client" {
		t.Fatalf("approve: %d %s", r.code, r.body)
	}
	if code, e := h.registerSpire(laptop); code != 200 {
		t.Errorf("register after approval: %d %+v", code, e)
	}
	if r := adm.call("POST", "/v1/admin/spiffe/nodes/reject", adminapi.SpiffeRejection{Node: "spiffe://spire.test/dev/kiosk"}, nil); r.code != http.StatusNoContent {
		t.Fatalf("reject: %d %s", r.code, r.body)
	}
	if code, e := h.registerSpire(kiosk); code != http.StatusForbidden || e.Code != "rejected" {
		t.Errorf("register after rejection: %d %+v", code, e)
	}
	var audit []adminapi.AuditEntry
	adm.call("GET", "/v1/admin/audit", nil, &audit)
	actions := map[string]string{}
	for _, a := range audit {
		actions[a.Action+" "+a.Object] = a.Actor
	}
	if actions["node.spiffe.admit laptop"] != "admin" || actions["node.spiffe.reject spiffe://spire.test/dev/kiosk"] != "admin" {
		t.Errorf("audit: %v; want the approval and the rejection by admin", actions)
	}

	// The node list says where each identity comes from.
	var tok adminapi.JoinTokenCreated
	adm.call("POST", "/v1/admin/tokens", adminapi.JoinTokenRequest{Uses: 1}, &tok)
	h.MustEnroll(tok.Token, "tok-1")
	var nodes []adminapi.Node
	v.call("GET", "/v1/admin/nodes", nil, &nodes)
	got := map[string]string{}
	for _, n := range nodes {
		got[n.Name] = n.Identity + " " + n.SpiffeID
	}
	want := map[string]string{"laptop": "spire spiffe://spire.test/dev/laptop", "web": "spire spiffe://spire.test/prod/web",
		"tok-1": "ca spiffe://example.test/latch/node/tok-1"}
	if len(got) != len(want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("node %s: %q, want %q", k, got[k], w)
		}
	}
	var st adminapi.Status
	v.call("GET", "/v1/admin/status", nil, &st)
	for _, n := range st.Nodes {
		if n.Identity+" "+n.SpiffeID != want[n.Name] {
			t.Errorf("status of %s: %s %s", n.Name, n.Identity, n.SpiffeID)
		}
	}
}

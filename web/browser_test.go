package web

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/internal/readme"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

// chromiumPath is Debian's chromium (make deps installs it).
const chromiumPath = "/usr/bin/chromium"

// screenshotDir is where the browser test writes its PNGs:
// $LATCH_SCREENSHOTS, or e2e/screenshots/ in the repository (git-ignored).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("LATCH_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "e2e", "screenshots")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser drives one headless Chromium against the harness.
type browser struct {
	t    *testing.T
	h    *harness
	ctx  context.Context
	shot string
	n    int
}

func newBrowser(t *testing.T, h *harness) *browser {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (%v): the browser test must run in CI; install it with `make deps` (Debian package chromium)", chromiumPath, err)
		}
		t.Skipf("%s is missing: install the Debian package chromium (make deps) to run the browser test", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The harness serves the coordinator's certificate, signed by a CA
		// the browser does not know; the test talks only to loopback.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium makes its singleton socket directory in TMPDIR and
		// leaves it; one of the test's own is removed with the test.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	b := &browser{t: t, h: h, ctx: ctx, shot: screenshotDir(t)}
	// The first run starts the browser; it must not have a deadline, which
	// would stop the browser with it.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return b
}

// run performs actions with a deadline; a failure stops the test.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// js evaluates an expression (awaiting a promise) and returns its value.
func js[T any](b *browser, what, expr string) T {
	b.t.Helper()
	return get(b, what, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

func text(b *browser, sel string) string {
	b.t.Helper()
	return get(b, "reading "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func value(b *browser, sel string) string {
	b.t.Helper()
	return get(b, "reading "+sel, chromedp.Value(chromedp.CSS(sel)))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	path := filepath.Join(b.shot, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

// page switches the console to a page (hash routing) and waits for it.
func (b *browser) page(name string) {
	b.t.Helper()
	b.run("opening page "+name,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf("void (window.location.hash = %q)", "#"+name)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`main[data-page=%q] h1`, name))))
}

// checkLabels fails if a visible form control on the page has no label.
func (b *browser) checkLabels(where string) {
	b.t.Helper()
	unlabelled := js[[]string](b, "checking labels", `Array.from(document.querySelectorAll('input, select, textarea'))
		.filter((el) => el.type !== 'hidden' && (!el.labels || el.labels.length === 0) && !el.getAttribute('aria-label'))
		.map((el) => el.outerHTML)`)
	if len(unlabelled) > 0 {
		b.t.Errorf("%s: form fields without a label: %v", where, unlabelled)
	}
}

// focusOutline returns the id and outline style of the focused element.
func (b *browser) focusOutline() (string, string) {
	out := js[[]string](b, "reading focus", `[document.activeElement.id || document.activeElement.tagName,
		getComputedStyle(document.activeElement).outlineStyle + ' ' + getComputedStyle(document.activeElement).outlineWidth]`)
	return out[0], out[1]
}

func (b *browser) login(name, pw string) {
	b.t.Helper()
	b.run("logging in as "+name,
		chromedp.Navigate(b.h.URL+Prefix),
		chromedp.WaitVisible(chromedp.ID("login-name")),
		chromedp.SetValue(chromedp.ID("login-name"), name),
		chromedp.SetValue(chromedp.ID("login-password"), pw),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page="overview"] h1`)))
	if who := js[string](b, "reading the user", `document.getElementById('whoami').textContent`); !strings.HasPrefix(who, name+" ") {
		b.t.Fatalf("logged in as %q, want %s", who, name)
	}
}

func set(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), v)
}
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// TestBrowser drives the console in headless Chromium against a real
// coordinator (admin API, state, SQLite store) on loopback TLS.
func TestBrowser(t *testing.T) {
	h := newHarness(t)
	b := newBrowser(t, h)
	t.Logf("screenshots go to %s", b.shot)

	// The console sends an anonymous visitor to the login page.
	b.run("opening the console", chromedp.Navigate(h.URL+Prefix), visible("#login-form"))
	if loc := get(b, "location", chromedp.Location()); !strings.HasSuffix(loc, Prefix+"login") {
		t.Errorf("anonymous visit landed on %s, want the login page", loc)
	}
	b.checkLabels("login page")
	// Keyboard: Tab moves the focus, and the focus is visible.
	b.run("tabbing", chromedp.Focus(chromedp.ID("login-name")), chromedp.KeyEvent(kb.Tab))
	if id, outline := b.focusOutline(); id != "login-password" || !strings.HasPrefix(outline, "solid") {
		t.Errorf("after Tab the focus is on %s with outline %q; want login-password with a solid outline", id, outline)
	}
	b.run("tabbing", chromedp.KeyEvent(kb.Tab))
	if id, outline := b.focusOutline(); id != "login-submit" || !strings.HasPrefix(outline, "solid") {
		t.Errorf("after Tab the focus is on %s with outline %q; want login-submit with a solid outline", id, outline)
	}
	// A wrong password is refused with a message.
	b.run("wrong password", set("#login-name", "admin"), set("#login-password", "not the password"),
		click("#login-submit"), visible("#login-error"))
	if msg := text(b, "#login-error"); !strings.Contains(msg, "wrong user name or password") {
		t.Errorf("wrong password message %q", msg)
	}
	b.screenshot("login")

	b.login("admin", h.adminPW)
	if flows := text(b, "#no-denied-flows"); !strings.Contains(flows, "No denied flows recently") {
		t.Errorf("denied flows panel says %q", flows)
	}
	b.screenshot("overview-empty")

	// Join token: create one and read the install one-liner.
	b.page("tokens")
	b.checkLabels("join tokens page")
	// The token grants the workloads db-1 declares below, one per line.
	b.run("creating a join token", set("#token-namespace", "prod"), set("#token-labels", "role=web"),
		set("#token-workloads", "namespace=prod,labels=app=api\nnamespace=prod,labels=app=pg\n\nnamespace=jobs,name=batch"),
		set("#token-uses", "3"), set("#token-ttl", "1h"), click("#token-create"), visible("#token-value"))
	token, install := value(b, "#token-value"), value(b, "#token-install")
	// The command of README.md, which scripts and e2e tests run.
	if want := readmeInstallCommand(t, h.URL, token); install != want || token == "" {
		t.Errorf("install one-liner %q, want README's %q", install, want)
	}
	b.screenshot("join-tokens")

	// Policies: an error shows at its line; fixed, the diff shows and it applies.
	b.page("policies")
	b.checkLabels("policies page")
	b.run("validating a bad policy", set("#policy-yaml", badPolicy), click("#policy-validate"), visible("#policy-annotated .msg"))
	problem, lineText := text(b, "#policy-annotated .msg"), text(b, "#policy-annotated .ln.err")
	if !strings.Contains(problem, "line 11") || !strings.Contains(problem, "protocol") || !strings.Contains(lineText, "TCPP") {
		t.Errorf("problem %q at line %q; want the protocol error at line 11 (protocol: TCPP)", problem, lineText)
	}
	if js[int](b, "message placement", `(() => { const m = document.querySelector('#policy-annotated .msg'); return +m.previousElementSibling.dataset.line; })()`) != 11 {
		t.Error("the message is not shown right under line 11")
	}
	if !js[bool](b, "apply state", `document.getElementById('policy-apply').disabled`) {
		t.Error("Apply is enabled for an invalid policy")
	}
	b.screenshot("policy-error")
	good := strings.Replace(badPolicy, "TCPP", "TCP", 1)
	b.run("validating the fixed policy", set("#policy-yaml", good), click("#policy-validate"), visible("#policy-result .diff .add"))
	if diff := text(b, "#policy-result .diff"); !strings.Contains(diff, "+ kind: NetworkPolicy") {
		t.Errorf("diff %q: want the new policy's lines added", diff)
	}
	b.screenshot("policy-diff")
	b.run("applying", click("#policy-apply"), visible("#policy-applied"))
	if applied := text(b, "#policy-applied"); !strings.Contains(applied, "prod/web") {
		t.Errorf("applied: %q", applied)
	}
	b.screenshot("policy-applied")
	var ps []adminapi.Policy
	h.admin().call("GET", "/v1/admin/policies", nil, &ps)
	if len(ps) != 1 || ps[0].Name != "web" {
		t.Errorf("stored policies %+v", ps)
	}
	// Changing the applied policy shows a diff against it.
	b.run("validating a change", set("#policy-yaml", strings.Replace(good, "port: 80", "port: 8080", 1)), click("#policy-validate"), visible("#policy-result .diff .del"))
	if diff := text(b, "#policy-result .diff"); !strings.Contains(diff, "- ") || !strings.Contains(diff, "+ ") || !strings.Contains(diff, "8080") {
		t.Errorf("diff against the applied policy %q", diff)
	}

	// A node appears live on the nodes page, without a reload.
	b.page("nodes")
	js[chromedp.Void](b, "marking the page", `void (window.latchNoReload = 42)`)
	h.MustEnroll(token, "web-1")
	b.run("waiting for the node to appear", visible(`[data-node-status="web-1"]`))
	if js[int](b, "checking no reload", `window.latchNoReload || 0`) != 42 {
		t.Error("the page reloaded; the node should appear through live updates")
	}
	if ident := text(b, `main[data-page="nodes"] tbody`); !strings.Contains(ident, "spiffe://example.test/latch/node/web-1") || !strings.Contains(ident, "role=web") {
		t.Errorf("nodes table %q: want the SPIFFE ID and labels of web-1", ident)
	}
	db := h.MustEnroll(token, "db-1")
	b.run("waiting for the second node", visible(`[data-node-status="db-1"]`))
	// Its view stream connects: it turns online live, and offline when the
	// stream ends.
	streamCtx, endStream := context.WithCancel(context.Background())
	defer endStream()
	if err := h.Connect(streamCtx, db); err != nil {
		t.Fatal(err)
	}
	b.run("waiting for db-1 online", visible(`[data-node-status="db-1"].online`))
	b.run("showing peers", click(`[aria-label="Show the peers of db-1"]`), chromedp.Sleep(0))
	b.screenshot("nodes-live")

	// Revoke web-1 with the keyboard: the button, then the confirmation.
	b.run("revoking web-1", chromedp.Focus(chromedp.CSS(`[data-revoke="web-1"]`)), chromedp.KeyEvent(kb.Enter), visible("#confirm-yes"))
	if id, _ := b.focusOutline(); id != "confirm-no" {
		t.Errorf("the confirmation dialog focuses %s; want Cancel first", id)
	}
	b.screenshot("revoke-confirm")
	b.run("confirming", chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitNotPresent(chromedp.CSS(`[data-node-status="web-1"]`)))
	var nodes []adminapi.Node
	h.admin().call("GET", "/v1/admin/nodes", nil, &nodes)
	if len(nodes) != 1 || nodes[0].Name != "db-1" {
		t.Errorf("nodes after revoking web-1: %+v", nodes)
	}
	b.screenshot("nodes-after-revoke")
	endStream()
	b.run("waiting for db-1 offline", visible(`[data-node-status="db-1"].offline`))
	if js[int](b, "checking no reload", `window.latchNoReload || 0`) != 42 {
		t.Error("the page reloaded; status should change through live updates")
	}

	// The other pages.
	b.page("overview")
	b.screenshot("overview")
	b.page("namespaces")
	b.checkLabels("namespaces page")
	b.run("setting prod to monitor", set("#ns-mode-prod", "monitor"), click(`[data-save-ns="prod"]`))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var nss []adminapi.Namespace
		h.admin().call("GET", "/v1/admin/namespaces", nil, &nss)
		if len(nss) == 1 && nss[0].Mode == "monitor" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespaces after saving prod as monitor: %+v", nss)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.page("overview")
	b.page("namespaces")
	b.screenshot("namespaces")
	// Workloads on db-1 and a policy letting prod talk to itself make a
	// graph with edges; a workload in another namespace stays apart.
	h.MustRegister(db,
		wire.WorkloadDecl{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"}, Ports: []inventory.Port{{Port: 8080}}},
		wire.WorkloadDecl{Name: "pg", Namespace: "prod", Labels: map[string]string{"app": "pg"}, Ports: []inventory.Port{{Port: 5432}}},
		wire.WorkloadDecl{Name: "batch", Namespace: "jobs", Ports: []inventory.Port{{Port: 9000}}},
	)
	admin := h.admin()
	if got := admin.do("POST", "/v1/admin/policies", "application/yaml", internalPolicy, map[string]string{auth.CSRFHeader: admin.csrf}); got.code != 200 {
		t.Fatalf("applying the internal policy: %d %s", got.code, got.body)
	}
	b.page("workloads")
	if wl := text(b, `main[data-page="workloads"] tbody`); !strings.Contains(wl, "api") || !strings.Contains(wl, "8080/TCP") {
		t.Errorf("workloads page %q", wl)
	}
	b.screenshot("workloads")
	b.page("whatif")
	b.checkLabels("what-if page")
	b.run("asking what if", set("#whatif-from", "prod/api"), set("#whatif-to", "prod/pg"), set("#whatif-port", "5432"),
		click("#whatif-go"), visible("#whatif-result .verdict"))
	if verdict := text(b, "#whatif-result"); !strings.Contains(verdict, "Allowed") || !strings.Contains(verdict, "prod/internal") {
		t.Errorf("what-if answer %q: want Allowed by prod/internal", verdict)
	}
	b.run("asking what if", set("#whatif-from", "jobs/batch"), set("#whatif-to", "prod/pg"), click("#whatif-go"),
		chromedp.WaitVisible(chromedp.CSS("#whatif-result .verdict.bad")))
	b.screenshot("whatif")
	b.page("graph")
	b.checkLabels("graph page")
	b.run("graph", visible("svg.graph line"))
	all := js[int](b, "counting edges", `document.querySelectorAll('svg.graph line').length`)
	b.screenshot("graph")
	b.run("filtering the graph", set("#graph-ns", "jobs"),
		chromedp.Evaluate[chromedp.Void](`void document.getElementById('graph-ns').dispatchEvent(new Event('change'))`),
		chromedp.WaitNotPresent(chromedp.CSS("svg.graph line")))
	if n := js[int](b, "counting nodes", `document.querySelectorAll('svg.graph g[data-key]').length`); all < 2 || n != 1 {
		t.Errorf("graph: %d edges for all namespaces, %d workloads for jobs; want edges, and jobs/batch alone", all, n)
	}
	b.screenshot("graph-jobs")
	b.page("audit")
	if audit := text(b, `main[data-page="audit"] tbody`); !strings.Contains(audit, "node.delete") || !strings.Contains(audit, "policy.apply") {
		t.Errorf("audit page %q: want the revocation and the policy", audit)
	}
	js[chromedp.Void](b, "opening a diff", `void Array.from(document.querySelectorAll('main tbody tr'))
		.find((tr) => tr.textContent.includes('namespace.put')).querySelector('summary').click()`)
	if d := text(b, `main[data-page="audit"] details[open] .diff`); !strings.Contains(d, "-   \"Mode\": \"enforce\"") || !strings.Contains(d, "+   \"Mode\": \"monitor\"") {
		t.Errorf("audit diff of the namespace change %q: want enforce replaced by monitor", d)
	}
	b.screenshot("audit")

	// Flows: db-1 reports flow records through the node API (mTLS, its
	// own certificate): prod is in monitor mode since above.
	api, pg, batch := h.workloadIP("prod/api"), h.workloadIP("prod/pg"), h.workloadIP("jobs/batch")
	ext := netip.MustParseAddr("198.19.0.5")
	start := h.Clock.Now().Add(-30 * time.Second)
	flow := func(src, dst netip.Addr, port uint16, verdict string) wire.FlowRecord {
		return wire.FlowRecord{Start: start, End: start.Add(5 * time.Second), Direction: wire.DirEgress, Src: src, Dst: dst,
			Protocol: "TCP", Port: port, Verdict: verdict, Reason: map[bool]string{true: "policy"}[verdict != wire.VerdictAllowed], Packets: 3, Bytes: 180}
	}
	if n, err := h.PostFlows(db, flow(api, pg, 5432, wire.VerdictAllowed), flow(api, ext, 443, wire.VerdictWouldDeny),
		flow(batch, pg, 5432, wire.VerdictDenied)); err != nil || n != 3 {
		t.Fatalf("reporting flows: %d accepted, %v", n, err)
	}
	b.page("overview")
	if panel := text(b, `section[aria-labelledby="ov-flows"] tbody`); !strings.Contains(panel, "prod/api") || !strings.Contains(panel, "198.19.0.5") ||
		!strings.Contains(panel, "443/TCP (monitor)") || !strings.Contains(panel, "jobs/batch") || strings.Contains(panel, "5432/TCP (monitor)") {
		t.Errorf("denied flows panel %q: want the would-deny flow to 198.19.0.5:443 and the denied one from jobs/batch, not the allowed one", panel)
	}
	b.screenshot("overview-flows")
	b.page("flows")
	b.checkLabels("flows page")
	b.run("flows table", visible(`#flows-body tr[data-flow-id]`))
	rows := func() int {
		return js[int](b, "counting flows", `document.querySelectorAll('#flows-body tr[data-flow-id]').length`)
	}
	if n, tb := rows(), text(b, "#flows-body"); n != 3 || !strings.Contains(tb, "prod/pg:5432/TCP") || !strings.Contains(tb, "(db-1, "+api.String()+")") ||
		!strings.Contains(tb, "WOULD-DENY") || !strings.Contains(tb, "DENIED") || !strings.Contains(tb, "ALLOWED") || !strings.Contains(tb, "db-1 egress") {
		t.Errorf("flows table (%d rows) %q", n, tb)
	}
	// The live tail: a flow reported now appears without a reload.
	js[chromedp.Void](b, "marking the page", `void (window.latchNoReload = 43)`)
	b.run("starting the live tail with the keyboard", chromedp.Focus(chromedp.ID("flows-tail")), chromedp.KeyEvent(kb.Enter),
		visible(`#flows-tail[aria-pressed="true"]`))
	if id, outline := b.focusOutline(); id != "flows-tail" || !strings.HasPrefix(outline, "solid") {
		t.Errorf("the live tail button: focus on %s with outline %q", id, outline)
	}
	waitFor(t, "the follow request", func() bool { return h.following.Load() == 1 })
	if _, err := h.PostFlows(db, flow(pg, api, 8080, wire.VerdictAllowed)); err != nil {
		t.Fatal(err)
	}
	b.run("waiting for the live flow", chromedp.WaitVisible(chromedp.CSS(`#flows-body tr[data-flow-id]:nth-child(4)`)))
	if last := text(b, `#flows-body tr[data-flow-id]:last-child`); !strings.Contains(last, "prod/api:8080/TCP") || rows() != 4 {
		t.Errorf("the live flow row %q (%d rows): want prod/pg -> prod/api:8080 appended", last, rows())
	}
	if js[int](b, "checking no reload", `window.latchNoReload || 0`) != 43 {
		t.Error("the flows page reloaded; the live flow should arrive through the tail")
	}
	b.screenshot("flows-live")
	// Filter by verdict; the export link downloads the same flows as JSON lines.
	b.run("filtering would-deny", set("#flows-verdict", "would-deny"), click("#flows-show"),
		chromedp.WaitNotPresent(chromedp.CSS(`#flows-body tr[data-verdict="allowed"]`)))
	if n, v := rows(), text(b, "#flows-body"); n != 1 || !strings.Contains(v, "198.19.0.5:443/TCP") {
		t.Errorf("would-deny flows (%d rows): %q", n, v)
	}
	href := js[string](b, "export link", `document.getElementById('flows-export').href`)
	if !strings.Contains(href, "verdict=would-deny") || !strings.Contains(href, "format=jsonl") {
		t.Errorf("export link %q: want the verdict filter and JSON lines", href)
	}
	export := js[[]string](b, "downloading the export", `fetch(document.getElementById('flows-export').href).then(async (r) => [r.headers.get('Content-Disposition') || '', await r.text()])`)
	if lines := strings.Split(strings.TrimSpace(export[1]), "\n"); len(lines) != 1 || !strings.Contains(lines[0], `"verdict":"would-deny"`) ||
		!strings.Contains(lines[0], `"ip":"198.19.0.5"`) || !strings.HasPrefix(export[0], "attachment") {
		t.Errorf("export %q (%s): want one JSON line, the would-deny flow, as an attachment", export[1], export[0])
	}
	b.screenshot("flows-would-deny")
	// The tail follows the new filter; leaving the page ends it.
	waitFor(t, "the filtered follow request", func() bool { return h.following.Load() == 1 })
	b.page("suggest")
	waitFor(t, "the follow request to end after leaving the page", func() bool { return h.following.Load() == 0 })

	// Suggestions for prod: the YAML allows what was observed; it goes
	// through the policy editor (validate, diff, apply), then prod is
	// switched to enforce.
	b.checkLabels("suggestions page")
	b.run("suggesting for prod", set("#suggest-namespace", "prod"), set("#suggest-since", "1h"), click("#suggest-go"),
		chromedp.Poll[chromedp.Void](`document.getElementById('policy-yaml') && document.getElementById('policy-yaml').value.includes('198.19.0.5/32')`, chromedp.WithPollingTimeout(30*time.Second)))
	yml := value(b, "#policy-yaml")
	for _, want := range []string{"kind: NetworkPolicy", "namespace: prod", "port: 5432", "port: 443", "port: 8080", "198.19.0.5/32"} {
		if !strings.Contains(yml, want) {
			t.Errorf("suggested YAML lacks %q:\n%s", want, yml)
		}
	}
	if mode := text(b, "#suggest-mode"); mode != "monitor" {
		t.Errorf("suggestions page says prod is %q, want monitor", mode)
	}
	b.screenshot("suggest")
	// An edit with a mistake shows the validator's message at its line.
	b.run("validating a broken suggestion", set("#policy-yaml", strings.Replace(yml, "protocol: TCP", "protocol: TCPP", 1)), click("#policy-validate"),
		visible("#policy-annotated .msg"))
	if msg := text(b, "#policy-annotated .msg"); !strings.Contains(msg, "protocol") {
		t.Errorf("message for the broken suggestion %q", msg)
	}
	b.run("validating the suggestion", set("#policy-yaml", yml), click("#policy-validate"), visible("#policy-result .diff .add"))
	b.screenshot("suggest-diff")
	b.run("applying the suggestion", click("#policy-apply"), visible("#policy-applied"))
	h.admin().call("GET", "/v1/admin/policies", nil, &ps)
	if len(ps) < 3 {
		t.Errorf("policies after applying the suggestion: %+v; want the suggested ones added", ps)
	}
	b.run("switching prod to enforce", click("#suggest-enforce"), visible("#confirm-yes"), click("#confirm-yes"),
		chromedp.Poll[chromedp.Void](`document.getElementById('suggest-mode').textContent === 'enforce'`, chromedp.WithPollingTimeout(30*time.Second)))
	var nss []adminapi.Namespace
	h.admin().call("GET", "/v1/admin/namespaces", nil, &nss)
	for _, ns := range nss {
		if ns.Name == "prod" && ns.Mode != "enforce" {
			t.Errorf("prod is %s after switching it to enforce in the console", ns.Mode)
		}
	}
	if !js[bool](b, "enforce button", `document.getElementById('suggest-enforce').disabled`) {
		t.Error("the enforce button is still enabled for a namespace that enforces")
	}
	b.screenshot("suggest-enforced")
	// The overview links to the flows page with a verdict chosen.
	b.page("overview")
	b.run("following the would-deny link", click(`a[href="#flows?verdict=would-deny"]`), visible(`main[data-page="flows"] #flows-body tr[data-flow-id]`))
	if v, n := value(b, "#flows-verdict"), js[int](b, "counting flows", `document.querySelectorAll('#flows-body tr[data-flow-id]').length`); v != "would-deny" || n != 1 {
		t.Errorf("flows page from the overview link: verdict %q, %d rows; want would-deny, 1", v, n)
	}

	// Users and API tokens: create a viewer and a token in the console.
	b.page("access")
	b.checkLabels("access page")
	b.run("creating a viewer", set("#user-name", "vic"), set("#user-role", "viewer"), set("#user-password", "viewer password 1"),
		click("#user-create"), visible(`[data-delete-user="vic"]`))
	b.run("creating an API token", set("#apitoken-name", "ci"), click("#apitoken-create"), visible("#apitoken-value"))
	if tok := value(b, "#apitoken-value"); !strings.HasPrefix(tok, "latchapi.") {
		t.Errorf("API token %q", tok)
	}
	b.run("API token listed", visible(`[data-revoke-apitoken]`))
	b.screenshot("access")
	// Revoke the API token and the join token, delete a policy: each after
	// a confirmation.
	confirm := func(what, sel, gone string) {
		b.t.Helper()
		b.run(what, click(sel), visible("#confirm-yes"), click("#confirm-yes"), chromedp.WaitNotPresent(chromedp.CSS(gone)))
	}
	confirm("revoking the API token", `[data-revoke-apitoken]`, `[data-revoke-apitoken]`)
	b.page("tokens")
	if tl := text(b, "#token-list"); !strings.Contains(tl, "namespace=prod,labels=app=api | namespace=prod,labels=app=pg | namespace=jobs,name=batch") {
		t.Errorf("token list %q: want the token's workload grants", tl)
	}
	confirm("revoking the join token", `[data-revoke-token]`, `[data-revoke-token]`)
	if tl := text(b, "#token-list"); !strings.Contains(tl, "revoked") {
		t.Errorf("token list after revoking %q", tl)
	}
	b.page("policies")
	confirm("deleting a policy", `[data-delete-policy="prod/web"]`, `[data-delete-policy="prod/web"]`)
	h.admin().call("GET", "/v1/admin/policies", nil, &ps)
	for _, p := range ps {
		if p.Name == "web" {
			t.Errorf("policies after deleting prod/web: %+v", ps)
		}
	}
	if n, code, msg := h.Enroll(token, "late"); n != nil || !strings.Contains(msg, "revoked") {
		t.Errorf("enrolling with the revoked join token: %d %s", code, msg)
	}

	// Fifty minutes on, db-1's one-hour SVID is close to expiry.
	h.Clock.Advance(50 * time.Minute)
	b.page("overview")
	if svids := text(b, `section[aria-labelledby="ov-svid"]`); !strings.Contains(svids, "db-1: expires") {
		t.Errorf("SVIDs close to expiry %q: want db-1", svids)
	}
	b.screenshot("overview-svid-expiring")

	// Log out, then log in as the viewer: nothing can be changed.
	b.run("logging out", click("#logout"), visible("#login-form"))
	b.login("vic", "viewer password 1")
	for _, p := range []struct{ page, forbidden string }{
		{"nodes", `[data-revoke]`},
		{"namespaces", `[data-save-ns], main select`},
		{"policies", `#policy-apply, #policy-validate, main .danger`},
		{"tokens", `#token-create, [data-revoke-token]`},
		{"access", `#user-create, #apitoken-create, [data-delete-user], [data-revoke-apitoken]`},
		{"suggest", `#suggest-enforce, #policy-apply, #policy-validate`},
	} {
		b.page(p.page)
		if n := js[int](b, "counting controls", fmt.Sprintf(`document.querySelectorAll(%q).length`, p.forbidden)); n != 0 {
			t.Errorf("viewer sees %d change controls (%s) on %s", n, p.forbidden, p.page)
		}
		if js[int](b, "viewer note", `document.querySelectorAll('#viewer-note').length`) != 1 {
			t.Errorf("viewer page %s does not say the user may only look", p.page)
		}
		b.screenshot("viewer-" + p.page)
	}
	b.run("viewer reads the suggestion for prod", chromedp.Evaluate[chromedp.Void](`void (window.location.hash = '#suggest?namespace=prod')`),
		chromedp.Poll[chromedp.Void](`document.getElementById('suggest-namespace').value === 'prod' && document.getElementById('policy-yaml') &&
			document.getElementById('policy-yaml').value.includes('kind: NetworkPolicy')`, chromedp.WithPollingTimeout(30*time.Second)))
	if !js[bool](b, "read-only YAML", `document.getElementById('policy-yaml').readOnly`) {
		t.Error("the viewer can edit the suggested YAML")
	}
	b.screenshot("viewer-suggest-prod")
	// Even hand-made requests from the page, with the right CSRF token, are refused.
	got := js[[]int](b, "trying changes as viewer", `(async () => {
		const calls = [
			['DELETE', '/v1/admin/nodes/db-1'],
			['PUT', '/v1/admin/namespaces/prod', '{"Mode":"enforce"}'],
			['POST', '/v1/admin/tokens', '{}'],
			['DELETE', '/v1/admin/policies/prod/web'],
			['POST', '/v1/admin/users', '{"name":"eve","role":"admin"}'],
		];
		const out = [];
		for (const [m, p, body] of calls) {
			const r = await fetch(p, {method: m, headers: {'X-CSRF-Token': app.me.csrf, 'Content-Type': 'application/json'}, body});
			out.push(r.status);
		}
		return out;
	})()`)
	if len(got) != 5 {
		t.Errorf("viewer changes: %v", got)
	}
	for i, c := range got {
		if c != 403 {
			t.Errorf("viewer change %d: status %d, want 403", i, c)
		}
	}
	h.admin().call("GET", "/v1/admin/nodes", nil, &nodes)
	if len(nodes) != 1 {
		t.Errorf("a viewer changed the nodes: %+v", nodes)
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
	}
}

// TestBrowserSpiffe drives the SPIFFE identities page: nodes presenting
// SVIDs of the SPIRE-like CA the coordinator trusts (over mTLS with the
// ALPN latch-spiffe, as `latch node --spiffe-socket` does) wait for
// approval; the admin approves one into a namespace with a label and
// rejects another, with the keyboard; a viewer only looks.
func TestBrowserSpiffe(t *testing.T) {
	h := newHarness(t)
	b := newBrowser(t, h)
	const laptopID, kioskID, tabletID = "spiffe://spire.test/dev/laptop", "spiffe://spire.test/dev/kiosk", "spiffe://spire.test/dev/tablet"
	laptop, kiosk := h.spireNode(laptopID), h.spireNode(kioskID)
	if code, e := h.registerSpire(laptop); code != 403 || e.Code != "pending" {
		t.Fatalf("register of an unmapped SPIRE node: %d %+v; want 403 pending", code, e)
	}
	if code, e := h.registerSpire(h.spireNode("spiffe://spire.test/prod/web")); code != 200 {
		t.Fatalf("register of a mapped SPIRE node: %d %+v", code, e)
	}

	// The overview counts the pending IDs and links to them.
	b.login("admin", h.adminPW)
	b.run("pending count", visible("#ov-spiffe-pending"))
	if n := liveText(b, "#spiffe-pending-count"); n != "1" {
		t.Errorf("overview: %s pending SPIFFE IDs, want 1", n)
	}
	b.screenshot("spiffe-overview-pending")
	b.run("following the link", click(`#ov-spiffe-pending a[href="#spiffe"]`), visible(`main[data-page="spiffe"] #spiffe-pending`))
	b.checkLabels("SPIFFE identities page")
	if tb := liveText(b, "#spiffe-pending tbody"); !strings.Contains(tb, laptopID) || !strings.Contains(tb, "laptop") {
		t.Errorf("pending table %q: want %s, proposed name laptop", tb, laptopID)
	}

	// A second ID goes pending: it appears live, without a reload.
	js[chromedp.Void](b, "marking the page", `void (window.latchNoReload = 44)`)
	if code, e := h.registerSpire(kiosk); code != 403 || e.Code != "pending" {
		t.Fatalf("register of kiosk: %d %+v", code, e)
	}
	b.run("waiting for kiosk to appear", visible(fmt.Sprintf(`[data-approve-spiffe=%q]`, kioskID)))
	if js[int](b, "checking no reload", `window.latchNoReload || 0`) != 44 {
		t.Error("the page reloaded; the pending ID should appear through live updates")
	}
	b.screenshot("spiffe-pending")

	// Approve laptop with the keyboard: the dialog asks for the namespace
	// and labels, its fields labelled; a malformed label is refused in it.
	b.run("opening the approval", focusNow(fmt.Sprintf(`[data-approve-spiffe=%q]`, laptopID)), chromedp.KeyEvent(kb.Enter),
		visible("#approve-namespace"))
	if id, outline := b.focusOutline(); id != "approve-namespace" || !strings.HasPrefix(outline, "solid") {
		t.Errorf("the approval dialog focuses %s with outline %q; want the namespace field, visibly", id, outline)
	}
	b.checkLabels("approval dialog")
	if got := liveText(b, "#approve-id"); got != laptopID {
		t.Errorf("the approval dialog is for %q, want %s", got, laptopID)
	}
	// The namespace's default is selected: typing replaces it.
	b.run("typing the namespace", chromedp.SendKeys(chromedp.ID("approve-namespace"), "dev"))
	if ns := value(b, "#approve-namespace"); ns != "dev" {
		t.Errorf("namespace field after typing dev: %q", ns)
	}
	b.run("a malformed label", set("#approve-labels", "role"), chromedp.Focus(chromedp.ID("approve-labels")), chromedp.KeyEvent(kb.Enter),
		chromedp.Poll[chromedp.Void](`document.getElementById('approve-error').textContent.includes('key=value')`, chromedp.WithPollingTimeout(30*time.Second)))
	// A label value the coordinator refuses: its message shows in the dialog.
	b.run("a label the coordinator refuses", set("#approve-labels", "role=not ok!"), chromedp.Focus(chromedp.ID("approve-labels")), chromedp.KeyEvent(kb.Enter),
		chromedp.Poll[chromedp.Void](`document.getElementById('approve-error').textContent.includes('refused')`, chromedp.WithPollingTimeout(30*time.Second)))
	if msg := liveText(b, "#approve-error"); !strings.Contains(msg, "label role") {
		t.Errorf("the coordinator's refusal in the dialog: %q", msg)
	}
	b.run("typing the label and the grants", set("#approve-labels", "role=client"),
		set("#approve-workloads", "namespace=dev,labels=app=tool\n"), set("#approve-workload-ids", "spiffe://spire.test/dev/laptop/*"))
	b.screenshot("spiffe-approve-dialog")
	b.run("approving", chromedp.Focus(chromedp.ID("approve-labels")), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitNotPresent(chromedp.CSS("#approve")),
		chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`#spiffe-pending [data-approve-spiffe=%q]`, laptopID))))
	var nodes []adminapi.Node
	h.admin().call("GET", "/v1/admin/nodes", nil, &nodes)
	var admitted *adminapi.Node
	for i := range nodes {
		if nodes[i].Name == "laptop" {
			admitted = &nodes[i]
		}
	}
	if admitted == nil || admitted.Namespace != "dev" || admitted.Labels["role"] != "client" || admitted.Identity != adminapi.IdentitySPIRE || admitted.SpiffeID != laptopID {
		t.Fatalf("laptop after approving it in the console: %+v (nodes %+v)", admitted, nodes)
	}
	if code, e := h.registerSpire(laptop); code != 200 {
		t.Errorf("laptop registers after the approval: %d %+v", code, e)
	}
	var grants adminapi.NodeGrants
	h.admin().call("GET", "/v1/admin/nodes/laptop/grants", nil, &grants)
	if len(grants.Granted.Workloads) != 1 || !reflect.DeepEqual(grants.Granted.Workloads[0], adminapi.Grant{Namespace: "dev", Labels: map[string]string{"app": "tool"}}) ||
		len(grants.Granted.WorkloadIDs) != 1 || grants.Granted.WorkloadIDs[0] != "spiffe://spire.test/dev/laptop/*" {
		t.Errorf("laptop's grants after approving it in the console: %+v", grants)
	}

	// Reject kiosk: the confirmation focuses Cancel; Tab, Enter confirms.
	b.run("rejecting kiosk", focusNow(fmt.Sprintf(`#spiffe-pending [data-reject-spiffe=%q]`, kioskID)), chromedp.KeyEvent(kb.Enter),
		visible("#confirm-yes"))
	if id, _ := b.focusOutline(); id != "confirm-no" {
		t.Errorf("the confirmation focuses %s; want Cancel first", id)
	}
	if q := liveText(b, "#confirm-text"); !strings.Contains(q, kioskID) {
		t.Errorf("confirmation %q: want the SPIFFE ID", q)
	}
	b.screenshot("spiffe-reject-confirm")
	b.run("confirming", chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`#spiffe-pending [data-reject-spiffe=%q]`, kioskID))))
	var recs []adminapi.SpiffeNode
	h.admin().call("GET", "/v1/admin/spiffe/nodes?status=rejected", nil, &recs)
	if len(recs) != 1 || recs[0].ID != kioskID {
		t.Errorf("rejected IDs after rejecting kiosk: %+v", recs)
	}
	if code, e := h.registerSpire(kiosk); code != 403 || e.Code != "rejected" {
		t.Errorf("kiosk after the rejection: %d %+v", code, e)
	}

	// The decided list: admitted (laptop by the admin, web by the mapping)
	// and rejected; the status filter narrows it.
	if dec := liveText(b, "#spiffe-decided tbody"); !strings.Contains(dec, laptopID) || !strings.Contains(dec, kioskID) || !strings.Contains(dec, "spiffe://spire.test/prod/web") {
		t.Errorf("decided table %q", dec)
	}
	if p := liveText(b, "#spiffe-pending tbody"); !strings.Contains(p, "None.") {
		t.Errorf("pending table after deciding both: %q", p)
	}
	b.screenshot("spiffe-decided")
	b.run("filtering rejected",
		chromedp.Evaluate[chromedp.Void](`void (() => { const s = document.getElementById('spiffe-status'); s.value = 'rejected'; s.dispatchEvent(new Event('change')); })()`),
		chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`#spiffe-decided [data-spiffe-id=%q]`, laptopID))))
	if dec := liveText(b, "#spiffe-decided tbody"); !strings.Contains(dec, kioskID) || !strings.Contains(dec, "rejected") {
		t.Errorf("rejected filter: %q", dec)
	}
	b.screenshot("spiffe-rejected")

	// No pending ID: the overview shows no count. The nodes page says
	// where each identity comes from.
	b.page("overview")
	if n := js[int](b, "pending card", `document.querySelectorAll('#ov-spiffe-pending').length`); n != 0 {
		t.Error("the overview shows pending SPIFFE IDs when none waits")
	}
	b.page("nodes")
	if id := liveText(b, `[data-identity="laptop"]`); id != "SPIRE" {
		t.Errorf("laptop's identity source on the nodes page: %q", id)
	}
	if tb := liveText(b, `main[data-page="nodes"] tbody`); !strings.Contains(tb, laptopID) {
		t.Errorf("nodes table %q: want laptop's SPIFFE ID from SPIRE", tb)
	}
	b.screenshot("spiffe-nodes")

	// A viewer sees the lists, with no controls.
	if code, _ := h.registerSpire(h.spireNode(tabletID)); code != 403 {
		t.Fatalf("tablet: %d", code)
	}
	pw := h.createUser("vic", "viewer")
	b.run("logging out", click("#logout"), visible("#login-form"))
	b.login("vic", pw)
	if n := liveText(b, "#spiffe-pending-count"); n != "1" {
		t.Errorf("viewer's overview: %s pending, want 1", n)
	}
	b.page("spiffe")
	if tb := liveText(b, "#spiffe-pending tbody"); !strings.Contains(tb, tabletID) {
		t.Errorf("viewer's pending table %q", tb)
	}
	if n := js[int](b, "counting controls", `document.querySelectorAll('[data-approve-spiffe], [data-reject-spiffe]').length`); n != 0 {
		t.Errorf("viewer sees %d approve/reject controls", n)
	}
	if js[int](b, "viewer note", `document.querySelectorAll('#viewer-note').length`) != 1 {
		t.Error("the SPIFFE page does not tell the viewer they may only look")
	}
	b.screenshot("viewer-spiffe")
}

// focusNow focuses the element sel in one step of the page's script: the
// live updates may redraw the page between a lookup and a focus by node,
// and a redraw keeps the focus on the same control.
func focusNow(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void document.querySelector(%q).focus()`, sel))
}

// liveText waits up to 30 s for sel and returns its text, read in one step
// of the page's script (a live redraw may replace the element meanwhile).
func liveText(b *browser, sel string) string {
	b.t.Helper()
	return js[string](b, "reading "+sel, fmt.Sprintf(`(async () => {
		for (let i = 0; i < 300; i++) {
			const el = document.querySelector(%q);
			if (el) return el.innerText;
			await new Promise((r) => setTimeout(r, 100));
		}
		throw new Error('no element ' + %q);
	})()`, sel, sel))
}

// TestBrowserLiveUpdatesEndWithTheSession: when the console session ends
// on the server, the event stream ends saying so and the page goes to the
// login page by itself.
func TestBrowserLiveUpdatesEndWithTheSession(t *testing.T) {
	h := newHarness(t)
	b := newBrowser(t, h)
	b.login("admin", h.adminPW)
	b.run("live updates connected", visible("#live.on"))
	h.Clock.Advance(state.SessionTTL + time.Hour)
	b.run("sent to the login page", visible("#login-form"))
	if loc := get(b, "location", chromedp.Location()); !strings.HasSuffix(loc, Prefix+"login") {
		t.Errorf("after the session expired the browser is on %s, want the login page", loc)
	}
}

// readmeInstallCommand is the install one-liner of README.md ("Install on
// a server or laptop"), joined into one line, for coord and token.
func readmeInstallCommand(t *testing.T, coord, token string) string {
	t.Helper()
	cmd, err := readme.InstallCommand("..", coord, token)
	if err != nil {
		t.Fatal(err)
	}
	return readme.OneLine(cmd)
}

package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// flowSetup enrolls node-a (workload prod/web, app=web) and node-b
// (workload prod/api, app=api) and returns them with their workloads'
// addresses.
func flowSetup(t *testing.T, h *harness) (a, b *coordtest.Node, web, api netip.Addr) {
	t.Helper()
	tok := h.Token(2, "namespace=prod,labels=app=web", "namespace=prod,labels=app=api")
	a, _, msg := h.Enroll(tok, "node-a")
	b, _, msg2 := h.Enroll(tok, "node-b")
	if a == nil || b == nil {
		t.Fatalf("enroll: %s %s", msg, msg2)
	}
	addr := map[string]netip.Addr{}
	for _, x := range []struct {
		n    *coordtest.Node
		name string
	}{{a, "web"}, {b, "api"}} {
		var resp wire.RegisterResponse
		code, body := h.Post(x.n, wire.PathRegister, wire.RegisterRequest{PublicKey: "key-" + x.name,
			Workloads: []wire.WorkloadDecl{{Name: x.name, Namespace: "prod", Labels: map[string]string{"app": x.name}}}}, &resp)
		if code != 200 {
			t.Fatalf("register: %d %s", code, body)
		}
		addr[x.name] = resp.Workloads[0].IP
	}
	return a, b, addr["web"], addr["api"]
}

func TestFlowsIngestListFollowSuggest(t *testing.T) {
	h := newHarness(t)
	a, b, web, api := flowSetup(t, h)
	now := time.Now()
	rec := func(dir string, verdict string, port uint16) wire.FlowRecord {
		return wire.FlowRecord{Start: now.Add(-time.Minute), End: now, Direction: dir, Src: web, Dst: api,
			Protocol: "TCP", Port: port, Verdict: verdict, Reason: "policy", Packets: 2, Bytes: 120}
	}
	// node-a reports web's egress; the ingress side belongs to node-b, so
	// node-a may not report it, nor claim another workload name.
	var resp wire.FlowBatchResponse
	bad := rec(wire.DirEgress, wire.VerdictWouldDeny, 8080)
	bad.Workload = "prod/api"
	future := rec(wire.DirEgress, wire.VerdictWouldDeny, 8080)
	future.Start, future.End = now.Add(time.Hour), now.Add(time.Hour)
	batch := wire.FlowBatch{Records: []wire.FlowRecord{rec(wire.DirEgress, wire.VerdictWouldDeny, 8080),
		rec(wire.DirIngress, wire.VerdictWouldDeny, 8080), bad, future}, Dropped: 3}
	if code, body := h.Post(a, wire.PathFlows, batch, &resp); code != 200 || resp.Accepted != 1 || resp.Rejected != 3 ||
		!strings.Contains(resp.Message, "not a workload of node node-a") {
		t.Fatalf("node-a batch: %d %s", code, body)
	}
	if code, body := h.Post(b, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{
		rec(wire.DirIngress, wire.VerdictWouldDeny, 8080), rec(wire.DirIngress, wire.VerdictAllowed, 9090)}}, &resp); code != 200 || resp.Accepted != 2 {
		t.Fatalf("node-b batch: %d %s", code, body)
	}
	c := h.Admin()
	fs, err := c.Flows(context.Background(), client.FlowQuery{Namespace: "prod", Verdict: adminapi.VerdictWouldDeny, Since: "1h"})
	if err != nil || len(fs) != 2 {
		t.Fatalf("list: %v %+v", err, fs)
	}
	if f := fs[0]; f.Src.Workload != "web" || f.Src.Node != "node-a" || f.Dst.Workload != "api" || f.Dst.Node != "node-b" ||
		f.Reporter != "node-a" || f.Port != 8080 || f.Packets != 2 {
		t.Fatalf("resolved flow: %+v", f)
	}
	if _, err := c.Flows(context.Background(), client.FlowQuery{Verdict: "maybe"}); !client.IsCode(err, "invalid") || !strings.Contains(err.Error(), "want allowed, denied or would-deny") {
		t.Fatalf("bad verdict: %v", err)
	}
	if code, body := h.AdminCall("GET", "/v1/admin/flows?namespace=other", "", nil); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("empty list: %d %s", code, body)
	}
	// Export: the same filtered flows as JSON lines, to download.
	if code, body := h.AdminCall("GET", "/v1/admin/flows?namespace=prod&verdict=would-deny&since=1h&format=jsonl", "", nil); code != 200 {
		t.Fatalf("export: %d %s", code, body)
	} else {
		lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("export: %d lines, want 2:\n%s", len(lines), body)
		}
		for i, l := range lines {
			var f adminapi.Flow
			if err := json.Unmarshal([]byte(l), &f); err != nil || f.ID != fs[i].ID || f.Verdict != wire.VerdictWouldDeny {
				t.Errorf("export line %d %q: %v; want flow %d", i, l, err, fs[i].ID)
			}
		}
	}
	req, _ := http.NewRequest("GET", h.URL+"/v1/admin/flows?format=jsonl", nil)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	if res, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
		if ct, cd := res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"); ct != "application/x-ndjson" || !strings.HasPrefix(cd, "attachment;") {
			t.Errorf("export headers: Content-Type %q, Content-Disposition %q", ct, cd)
		}
	}
	if code, body := h.AdminCall("GET", "/v1/admin/flows?format=xml", "", nil); code != 400 || !strings.Contains(body, "want json (an array) or jsonl") {
		t.Fatalf("bad format: %d %s", code, body)
	}

	// Follow: the stored flows, then new ones as they come.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", h.URL+"/v1/admin/flows?follow=true&verdict=allowed", nil)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	res, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("follow: %v %v", err, res)
	}
	defer res.Body.Close()
	lines := bufio.NewScanner(res.Body)
	next := func() adminapi.Flow {
		if !lines.Scan() {
			t.Fatalf("follow ended: %v", lines.Err())
		}
		var f adminapi.Flow
		if err := json.Unmarshal(lines.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := next(); f.Port != 9090 {
		t.Fatalf("first followed flow: %+v", f)
	}
	if code, body := h.Post(b, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{rec(wire.DirIngress, wire.VerdictAllowed, 7070)}}, &resp); code != 200 {
		t.Fatalf("batch: %d %s", code, body)
	}
	if f := next(); f.Port != 7070 {
		t.Fatalf("second followed flow: %+v", f)
	}

	// Suggest: web may reach api on 8080 (would-deny) and 9090, 7070
	// (allowed), which both ends reported; the YAML validates. node-b
	// alone claims web -> api:6666: api's ingress learns it (node-b hosts
	// api), web's egress does not, so it stays denied.
	if code, body := h.Post(a, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{
		rec(wire.DirEgress, wire.VerdictAllowed, 9090), rec(wire.DirEgress, wire.VerdictAllowed, 7070)}}, &resp); code != 200 || resp.Accepted != 2 {
		t.Fatalf("node-a batch: %d %s", code, body)
	}
	if code, body := h.Post(b, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{rec(wire.DirIngress, wire.VerdictAllowed, 6666)}}, &resp); code != 200 || resp.Accepted != 1 {
		t.Fatalf("node-b batch: %d %s", code, body)
	}
	data, err := c.Suggest(ctx, "prod", "1h")
	if err != nil {
		t.Fatalf("suggest: %v", err)
	}
	yml := string(data)
	ps, err := policy.Parse("suggestion", data)
	if err != nil || len(ps) != 2 {
		t.Fatalf("suggestion: %v\n%s", err, yml)
	}
	ws := []inventory.Workload{{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}, IP: web},
		{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"}, IP: api}}
	ev := policy.NewEvaluator([]inventory.Namespace{{Name: "prod"}}, ps, policy.BaselineDeny)
	for _, want := range []string{"# Learned from flows reported by:\n#   ingress[0]: node-b\n", "# Learned from flows reported by:\n#   egress[0]: node-a\n"} {
		if !strings.Contains(yml, want) {
			t.Errorf("suggestion lacks %q:\n%s", want, yml)
		}
	}
	for port, want := range map[uint16]bool{8080: true, 9090: true, 7070: true, 22: false, 6666: false} {
		if got := ev.Decide(&ws[0], &ws[1], inventory.TCP, port).Allowed; got != want {
			t.Errorf("suggested policy: web -> api:%d allowed=%v, want %v\n%s", port, got, want, yml)
		}
	}
	if _, err := c.ApplyPolicies(ctx, "suggestion", "", data); err != nil {
		t.Fatalf("applying the suggestion: %v", err)
	}
	if _, err := c.Suggest(ctx, "nope", ""); !client.IsCode(err, "not_found") {
		t.Fatalf("unknown namespace: %v", err)
	}
}

// TestMetrics scrapes the coordinator's /metrics after some traffic and
// checks the names the issue lists.
func TestMetrics(t *testing.T) {
	h := newHarness(t)
	a, _, web, api := flowSetup(t, h)
	tok := h.Token(1)
	h.Enroll(tok, "node-c")
	if _, code, _ := h.Enroll(tok, "node-d"); code == 200 {
		t.Fatal("a used token enrolled")
	}
	h.Post(a, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{{Start: time.Now(), End: time.Now(), Direction: wire.DirEgress,
		Src: web, Dst: api, Protocol: "TCP", Port: 1, Verdict: wire.VerdictAllowed}}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+wire.PathStream+"?have=0", nil)
	resp, err := a.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	bufio.NewScanner(resp.Body).Scan() // the first view was pushed
	// The server counts a push just after sending it: scrape until it shows.
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		rec := httptest.NewRecorder()
		h.API.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body = rec.Body.String()
		if strings.Contains(body, "latch_coordinator_stream_lag_seconds_count 1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		`latch_coordinator_nodes{state="connected"} 1`,
		`latch_coordinator_nodes{state="disconnected"} 2`,
		`latch_coordinator_views_pushed_total{kind="full"} 1`,
		`latch_coordinator_stream_lag_seconds_count 1`,
		`latch_coordinator_api_request_duration_seconds_count{code="200",route="/v1/node/register"} 2`,
		`latch_coordinator_enrollments_total{result="ok"} 3`,
		`latch_coordinator_enrollments_total{result="refused"} 1`,
		`latch_coordinator_flows_ingested_total{result="accepted"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "latch_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// TestFlowExportAll: the JSON lines export holds every matching flow,
// past the 10,000 of one query.
func TestFlowExportAll(t *testing.T) {
	h := newHarness(t)
	a, _, web, api := flowSetup(t, h)
	now := time.Now()
	batch := func(n int, port uint16) wire.FlowBatch {
		var b wire.FlowBatch
		for range n {
			b.Records = append(b.Records, wire.FlowRecord{Start: now.Add(-time.Minute), End: now, Direction: wire.DirEgress, Src: web, Dst: api,
				Protocol: "TCP", Port: port, Verdict: wire.VerdictAllowed, Packets: 1, Bytes: 60})
		}
		return b
	}
	var resp wire.FlowBatchResponse
	for _, b := range []wire.FlowBatch{batch(store.MaxFlowQuery, 80), batch(2, 443), batch(1, 22)} {
		if code, body := h.Post(a, wire.PathFlows, b, &resp); code != 200 || resp.Accepted != len(b.Records) {
			t.Fatalf("batch: %d %s", code, body)
		}
	}
	code, body := h.AdminCall("GET", "/v1/admin/flows?namespace=prod&format=jsonl", "", nil)
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if code != 200 || len(lines) != store.MaxFlowQuery+3 {
		t.Fatalf("export: %d, %d lines; want %d", code, len(lines), store.MaxFlowQuery+3)
	}
	var prev int64
	for i, l := range lines {
		var f adminapi.Flow
		if err := json.Unmarshal([]byte(l), &f); err != nil || f.ID <= prev {
			t.Fatalf("line %d %q: %v (previous id %d); want flows oldest first, each once", i, l, err, prev)
		}
		prev = f.ID
	}
	if !strings.Contains(lines[len(lines)-1], `"port":22`) {
		t.Errorf("last exported flow %s; want the newest (port 22)", lines[len(lines)-1])
	}
	// limit= exports the newest few.
	if code, body := h.AdminCall("GET", "/v1/admin/flows?format=jsonl&limit=2", "", nil); code != 200 || strings.Count(body, "\n") != 2 ||
		!strings.Contains(body, `"port":443`) || !strings.Contains(body, `"port":22`) {
		t.Errorf("export with limit=2: %d %s", code, body)
	}
}

// TestFlowRecordBounds: a node's records are checked before they are
// stored: every string bounded, the fixed vocabularies (direction,
// verdict, protocol, reason) enforced, the times storable. A bad record
// is refused and counted, with a message saying what was wrong; the good
// records of the same batch are stored; the reporter is the node of the
// certificate, whatever the body says.
func TestFlowRecordBounds(t *testing.T) {
	h := newHarness(t)
	a, _, web, api := flowSetup(t, h)
	now := time.Now()
	good := wire.FlowRecord{Start: now.Add(-time.Minute), End: now, Direction: wire.DirEgress, Workload: "prod/web", Src: web, Dst: api,
		Protocol: "TCP", Port: 443, Verdict: wire.VerdictDenied, Reason: "policy", Packets: 1, Bytes: 60}
	long := strings.Repeat("x", 100<<10)
	for _, c := range []struct {
		name string
		edit func(*wire.FlowRecord)
		want string
	}{
		{"long reason", func(r *wire.FlowRecord) { r.Reason = long }, "reason"},
		{"escape in reason", func(r *wire.FlowRecord) { r.Reason = "policy\x1b[2J\x1b]0;owned\a" }, "reason"},
		{"unknown protocol", func(r *wire.FlowRecord) { r.Protocol = "FOO" }, "protocol"},
		{"long protocol", func(r *wire.FlowRecord) { r.Protocol = long }, "protocol"},
		{"protocol out of range", func(r *wire.FlowRecord) { r.Protocol = "300" }, "protocol"},
		{"long workload", func(r *wire.FlowRecord) { r.Workload = long }, "workload"},
		{"unknown verdict", func(r *wire.FlowRecord) { r.Verdict = "maybe" }, "verdict"},
		{"long direction", func(r *wire.FlowRecord) { r.Direction = long }, "direction"},
		{"no remote address", func(r *wire.FlowRecord) { r.Dst = netip.Addr{} }, "address"},
		{"end far in the future", func(r *wire.FlowRecord) { r.End = now.AddDate(1000, 0, 0) }, "future"},
		{"start long ago", func(r *wire.FlowRecord) { r.Start = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC) }, "old"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := good
			c.edit(&bad)
			var resp wire.FlowBatchResponse
			code, body := h.Post(a, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{good, bad}}, &resp)
			if code != 200 || resp.Accepted != 1 || resp.Rejected != 1 || !strings.Contains(resp.Message, c.want) {
				t.Fatalf("batch with a record with %s: %d %.300s; want 1 accepted, 1 refused saying %q", c.name, code, body, c.want)
			}
			if len(resp.Message) > 400 || strings.ContainsAny(resp.Message, "\x1b\a") {
				t.Errorf("refusal message %.500q: want it short and without control characters", resp.Message)
			}
		})
	}
	var fs []adminapi.Flow
	if code, body := h.AdminCall("GET", "/v1/admin/flows", "", &fs); code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, f := range fs {
		if f.Reason != "policy" || f.Protocol != "TCP" || f.Reporter != "node-a" {
			t.Errorf("stored flow %+v: want only the good records", f)
		}
	}
	// The reporter comes from the certificate: a "reporter" in the body
	// changes nothing.
	raw := `{"records":[{"start":"` + now.Add(-time.Second).Format(time.RFC3339Nano) + `","end":"` + now.Format(time.RFC3339Nano) +
		`","direction":"egress","src":"` + web.String() + `","dst":"` + api.String() + `","protocol":"UDP","port":53,"verdict":"allowed","reporter":"node-b"}],"reporter":"node-b"}`
	var resp wire.FlowBatchResponse
	if code, body := h.Post(a, wire.PathFlows, json.RawMessage(raw), &resp); code != 200 || resp.Accepted != 1 {
		t.Fatalf("batch: %d %s", code, body)
	}
	h.AdminCall("GET", "/v1/admin/flows?limit=1", "", &fs)
	if len(fs) != 1 || fs[0].Port != 53 || fs[0].Reporter != "node-a" {
		t.Errorf("flow %+v: want it reported by node-a, the certificate's node", fs)
	}
	// Too many records in one batch: refused as a whole.
	big := wire.FlowBatch{Records: make([]wire.FlowRecord, wire.MaxFlowBatch+1)}
	for i := range big.Records {
		big.Records[i] = good
	}
	if code, body := h.Post(a, wire.PathFlows, big, nil); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "send smaller batches") {
		t.Errorf("batch of %d records: %d %.300s", len(big.Records), code, body)
	}
}

// TestSuggestIgnoresAddressesThatChangedHands: flows to an address that
// has since gone to another workload teach nothing about the new one.
func TestSuggestIgnoresAddressesThatChangedHands(t *testing.T) {
	h := newHarness(t)
	a, b, web, api := flowSetup(t, h)
	now := time.Now()
	rec := wire.FlowRecord{Start: now.Add(-time.Minute), End: now, Direction: wire.DirEgress, Src: web, Dst: api,
		Protocol: "TCP", Port: 5432, Verdict: wire.VerdictAllowed, Packets: 1, Bytes: 60}
	if code, body := h.Post(a, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{rec}}, nil); code != 200 {
		t.Fatalf("node-a batch: %d %s", code, body)
	}
	// node-b replaces api by another workload (granted by an admin), which
	// gets api's address.
	if code, body := h.AdminCall("POST", "/v1/admin/nodes/node-b/grants", `{"workloads":["namespace=prod,labels=app=other"]}`, nil); code != 200 {
		t.Fatalf("grant: %d %s", code, body)
	}
	var resp wire.RegisterResponse
	if code, body := h.Post(b, wire.PathRegister, wire.RegisterRequest{PublicKey: "key-api",
		Workloads: []wire.WorkloadDecl{{Name: "other", Namespace: "prod", Labels: map[string]string{"app": "other"}}}}, &resp); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	if resp.Workloads[0].IP != api {
		t.Fatalf("prod/other got %s, not api's old address %s: the test needs the address reused", resp.Workloads[0].IP, api)
	}
	code, yml := h.AdminCall("GET", "/v1/admin/namespaces/prod/suggest?since=1h", "", nil)
	if code != 200 || strings.Contains(yml, "app: other") || !strings.Contains(yml, "1 flow reports are left out: an address of theirs now belongs to another workload") {
		t.Fatalf("suggestion: %d\n%s\nwant nothing learned for prod/other from web's flow to api", code, yml)
	}
}

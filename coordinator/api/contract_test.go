package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

// consoleRoutes are admin routes the web console mounts (Config.
// Extensions); package web checks them against the description.
var consoleRoutes = map[string]bool{"DeniedFlows": true}

// loadOpenAPI loads the description the coordinator serves.
func loadOpenAPI(t *testing.T, h *harness) *openapi3.T {
	t.Helper()
	data, err := h.Admin().OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, adminapi.OpenAPI) {
		t.Fatal("the coordinator serves another document than adminapi.OpenAPI")
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return doc
}

var echoParam = regexp.MustCompile(`:([a-z]+)`)

// TestOpenAPIMatchesTheRoutes: every admin route the server registers is
// in the OpenAPI description it serves (without authentication), with the
// same method and path, and every operation there is a registered route;
// each schema's properties are the json names of the adminapi type of the
// same name.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	h := newHarness(t)
	doc := loadOpenAPI(t, h)
	inSpec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec[method+" "+adminapi.Prefix+path] = true
		}
	}
	registered := map[string]bool{}
	for _, r := range h.API.Routes() {
		if !strings.HasPrefix(r.Path, adminapi.Prefix+"/") || strings.HasSuffix(r.Path, "/*") {
			continue // echo's answer for unknown paths of the group
		}
		k := r.Method + " " + echoParam.ReplaceAllString(r.Path, "{$1}")
		registered[k] = true
		if !inSpec[k] {
			t.Errorf("%s is registered but not in the OpenAPI description", k)
		}
	}
	for _, r := range adminapi.Routes {
		k := r.Method + " " + adminapi.Prefix + r.Path
		if !inSpec[k] {
			t.Errorf("%s is in adminapi.Routes but not in the OpenAPI description", k)
		}
		if !registered[k] && !consoleRoutes[r.Name] {
			t.Errorf("%s is in the OpenAPI description but not registered", k)
		}
	}
	if len(inSpec) != len(adminapi.Routes) {
		t.Errorf("%d operations in the description, %d routes", len(inSpec), len(adminapi.Routes))
	}

	types := adminTypes()
	for name, ref := range doc.Components.Schemas {
		typ, ok := types[name]
		if !ok {
			t.Errorf("schema %s: no adminapi type of that name", name)
			continue
		}
		var want, got []string
		for i := range typ.NumField() {
			if f := typ.Field(i); f.IsExported() {
				n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				want = append(want, n)
			}
		}
		for p := range ref.Value.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has the properties %v, adminapi.%s the json fields %v", name, got, name, want)
		}
	}
	for _, r := range adminapi.Routes {
		if r.Response == nil {
			continue
		}
		typ := reflect.TypeOf(r.Response)
		if typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			continue
		}
		media := cmpOr(r.ResponseMedia, "application/json")
		s := doc.Paths.Find(r.Path).GetOperation(r.Method).Responses.Status(200).Value.Content.Get(media).Schema
		if s.Value.Items != nil {
			s = s.Value.Items
		}
		if s.Ref != "#/components/schemas/"+typ.Name() {
			t.Errorf("%s %s answers %s in the description, adminapi.%s in Routes", r.Method, r.Path, s.Ref, typ.Name())
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// adminTypes returns the adminapi struct types reachable from Routes and
// Error, by name.
func adminTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		switch t.Kind() {
		case reflect.Slice, reflect.Map, reflect.Pointer:
			walk(t.Elem())
		case reflect.Struct:
			if t.PkgPath() != reflect.TypeFor[adminapi.Error]().PkgPath() || out[t.Name()] != nil {
				return
			}
			out[t.Name()] = t
			for i := range t.NumField() {
				walk(t.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeFor[adminapi.Error]())
	for _, r := range adminapi.Routes {
		for _, v := range []any{r.Request, r.Response} {
			if v != nil {
				walk(reflect.TypeOf(v))
			}
		}
	}
	return out
}

// contractCall is how the contract test calls one route.
type contractCall struct {
	params map[string]string // path parameters
	query  string
	body   string
}

// TestAdminContract calls every route of adminapi.Routes through the real
// server, with data in every list, and checks each answer against its
// declaration: decoded strictly (no unknown field) into the adminapi type,
// and valid against the schema of the OpenAPI description (exact property
// names, required fields, types). A store record, or a Go field name,
// reaching a client fails here.
func TestAdminContract(t *testing.T) {
	spire := spiffetest.NewCA(t, "spire.test")
	h := newHarnessWith(t, coordtest.Options{
		Spiffe:     &spiffetrust.Trust{TD: spire.TD, Bundles: spire.Bundle()},
		SpireSVIDs: spiffetest.Static{SVID: spire.Issue(t, "spiffe://spire.test/latch/coordinator", time.Hour)},
	})
	doc := loadOpenAPI(t, h)
	ctx := context.Background()
	c := h.Admin()

	// Data for every list: two nodes with workloads that may talk, flows,
	// a policy, a pending SPIRE node, a user, tokens.
	a, b, web, api := flowSetup(t, h)
	if code, body := h.Post(b, wire.PathRegister, wire.RegisterRequest{PublicKey: "key-api", Workloads: []wire.WorkloadDecl{
		{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"}, Ports: []inventory.Port{{Name: "http", Port: 80, Protocol: inventory.TCP}}}}}, nil); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	if _, err := c.ApplyPolicies(ctx, "p.yaml", "", []byte(policies)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var fr wire.FlowBatchResponse
	if code, body := h.Post(a, wire.PathFlows, wire.FlowBatch{Records: []wire.FlowRecord{
		{Start: now.Add(-time.Minute), End: now, Direction: wire.DirEgress, Src: web, Dst: api, Protocol: "TCP", Port: 80, Verdict: wire.VerdictAllowed, Packets: 1, Bytes: 60},
		{Start: now.Add(-time.Minute), End: now, Direction: wire.DirEgress, Src: web, Dst: api, Protocol: "TCP", Port: 81, Verdict: wire.VerdictDenied, Reason: "policy", Packets: 1, Bytes: 60},
	}}, &fr); code != 200 || fr.Accepted != 2 {
		t.Fatalf("flows: %d %s", code, body)
	}
	// A gateway with subnet routes: one approved, one waiting.
	gw := h.MustEnroll(h.Token(1), "gw-1")
	if code, body := h.Post(gw, wire.PathRegister, wire.RegisterRequest{PublicKey: coordtest.PublicKey("gw-1"),
		Routes: []wire.Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}}}, nil); code != 200 {
		t.Fatalf("register the gateway: %d %s", code, body)
	}
	if _, err := c.ApproveRoute(ctx, "gw-1", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	// Sites, with labels and ports, one to replace and one to delete.
	for _, x := range []struct{ name, cidr string }{{"db", "198.19.1.0/24"}, {"office", "198.19.2.0/24"}} {
		if _, err := c.PutSite(ctx, "site-eu", x.name, adminapi.SiteRequest{Labels: map[string]string{"role": x.name},
			CIDRs: []string{x.cidr}, Ports: []adminapi.Port{{Name: "postgres", Port: 5432, Protocol: "TCP"}}}); err != nil {
			t.Fatal(err)
		}
	}
	laptop := coordtest.SpireNode(spire, spire.Issue(t, "spiffe://spire.test/dev/laptop", time.Hour)).HTTP
	if code, e := postJSON(t, laptop, h.URL+wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}); code != http.StatusForbidden || e.Code != "pending" {
		t.Fatalf("register of an unmapped SPIRE node: %d %+v", code, e)
	}
	if n, _, msg := h.Enroll(h.Token(1), "node-c"); n == nil {
		t.Fatalf("enroll: %s", msg)
	}
	jt, err := c.CreateJoinToken(ctx, adminapi.JoinTokenRequest{Namespace: "prod", Workloads: []adminapi.Grant{adminapi.GrantSpec("namespace=prod,name=x-*")}})
	if err != nil {
		t.Fatal(err)
	}
	at, err := c.CreateAPIToken(ctx, adminapi.APITokenRequest{Name: "ci", Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateUser(ctx, adminapi.UserRequest{Name: "carol", Role: "viewer"}); err != nil {
		t.Fatal(err)
	}

	calls := map[string]contractCall{
		"Nodes":             {},
		"Node":              {params: map[string]string{"name": "node-a"}},
		"DeleteNode":        {params: map[string]string{"name": "node-c"}},
		"NodeView":          {params: map[string]string{"name": "node-a"}},
		"NodeGrants":        {params: map[string]string{"name": "node-a"}},
		"GrantNode":         {params: map[string]string{"name": "node-a"}, body: `{"workloads":["namespace=prod,labels=app=extra"],"workloadIDs":[]}`},
		"RevokeNodeGrants":  {params: map[string]string{"name": "node-a"}, body: `{"workloads":[{"namespace":"prod","labels":{"app":"extra"}}]}`},
		"Namespaces":        {},
		"PutNamespace":      {params: map[string]string{"name": "dev2"}, body: `{"labels":{"team":"x"},"mode":"monitor"}`},
		"Suggest":           {params: map[string]string{"name": "prod"}, query: "since=1h"},
		"Workloads":         {},
		"Policies":          {},
		"ApplyPolicies":     {query: "filename=p.yaml", body: policies},
		"DeletePolicy":      {params: map[string]string{"namespace": "prod", "name": "allow-web-api"}},
		"ValidatePolicies":  {body: policies},
		"JoinTokens":        {},
		"CreateJoinToken":   {body: `{"namespace":"prod","labels":{"a":"b"},"workloads":["namespace=prod,name=x-*"],"uses":2,"ttl":"10m"}`},
		"RevokeJoinToken":   {params: map[string]string{"id": jt.ID}},
		"Audit":             {},
		"Flows":             {query: "namespace=prod"},
		"WhoAmI":            {},
		"Users":             {},
		"CreateUser":        {body: `{"name":"bob","role":"viewer"}`},
		"DeleteUser":        {params: map[string]string{"name": "carol"}},
		"APITokens":         {},
		"CreateAPIToken":    {body: `{"name":"ops","role":"admin","ttl":"1h"}`},
		"RevokeAPIToken":    {params: map[string]string{"id": at.ID}},
		"Status":            {},
		"WhatIf":            {query: "from=prod/web&to=prod/api&port=80"},
		"Graph":             {},
		"Events":            {},
		"SpiffeNodes":       {},
		"ApproveSpiffeNode": {body: `{"node":"laptop","namespace":"dev","labels":{"role":"client"},"workloads":["namespace=dev,name=tool"]}`},
		"RejectSpiffeNode":  {body: `{"node":"laptop"}`},
		"SubnetRoutes":      {},
		"ApproveRoute":      {body: `{"node":"gw-1","prefix":"198.19.2.0/24"}`},
		"RejectRoute":       {body: `{"node":"gw-1","prefix":"198.19.1.0/24"}`},
		"Sites":             {},
		"PutSite":           {params: map[string]string{"namespace": "site-eu", "name": "db"}, body: `{"labels":{"role":"db","tier":"data"},"cidrs":["198.19.1.0/24","198.19.5.0/25"],"ports":[{"name":"postgres","port":5432}]}`},
		"DeleteSite":        {params: map[string]string{"namespace": "site-eu", "name": "office"}},
	}
	// Reads and changes first, deletions last (they take away the data).
	routes := slices.Clone(adminapi.Routes)
	slices.SortStableFunc(routes, func(x, y adminapi.Route) int {
		return boolInt(x.Method == http.MethodDelete) - boolInt(y.Method == http.MethodDelete)
	})
	for _, r := range routes {
		if consoleRoutes[r.Name] {
			continue
		}
		call, ok := calls[r.Name]
		if !ok {
			t.Errorf("%s %s: no contract call for route %s: add one", r.Method, r.Path, r.Name)
			continue
		}
		t.Run(r.Name, func(t *testing.T) {
			op := doc.Paths.Find(r.Path).GetOperation(r.Method)
			path := r.Path
			for k, v := range call.params {
				path = strings.Replace(path, "{"+k+"}", v, 1)
			}
			if r.ResponseMedia == adminapi.MediaSSE {
				checkEvents(t, h, path, op)
				return
			}
			ctype := "application/json"
			if r.RequestMedia != "" {
				ctype = r.RequestMedia
			}
			resp, body := h.rawAdmin(r.Method, path+"?"+call.query, ctype, call.body)
			switch {
			case r.Response == nil:
				if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
					t.Fatalf("%d %s, want 204 and no body", resp.StatusCode, body)
				}
			case r.ResponseMedia != "":
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), r.ResponseMedia) || len(body) == 0 {
					t.Fatalf("%d %s %q, want 200 and %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, r.ResponseMedia)
				}
			default:
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				checkAnswer(t, body, reflect.TypeOf(r.Response), op.Responses.Status(200).Value.Content.Get("application/json").Schema)
			}
			if r.Stream != "" {
				checkStream(t, h, path+"?follow=true&"+call.query, reflect.TypeOf(r.Response).Elem(), op.Responses.Status(200).Value.Content.Get(r.Stream).Schema)
			}
		})
	}

	// The what-if answer for a site address holds the address pairs and
	// the sides; for a whole site, the pairs.
	whatIf := doc.Paths.Find("/whatif").Get.Responses.Status(200).Value.Content.Get("application/json").Schema
	for _, q := range []string{"from=prod/api&to=site-eu/db@198.19.1.5&port=5432", "from=prod/api&to=site-eu/db&port=5432"} {
		resp, body := h.rawAdmin(http.MethodGet, "/whatif?"+q, "", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("whatif %s: %d %s", q, resp.StatusCode, body)
		}
		checkAnswer(t, body, reflect.TypeFor[adminapi.WhatIf](), whatIf)
	}

	// The error body, on a route of each kind.
	for _, path := range []string{"/nodes/nope", "/whatif?port=0", "/namespaces/nope/suggest"} {
		resp, body := h.rawAdmin(http.MethodGet, path, "", "")
		if resp.StatusCode < 400 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		checkAnswer(t, body, reflect.TypeFor[adminapi.Error](), doc.Paths.Find("/nodes/{name}").Get.Responses.Default().Value.Content.Get("application/json").Schema)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rawAdmin makes an admin request with the admin token and returns the
// answer with its body.
func (h *harness) rawAdmin(method, path, ctype, body string) (*http.Response, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.URL+adminapi.Prefix+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	if body != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return h.Do(req)
}

// checkAnswer decodes body strictly into a new value of typ and validates
// it against schema.
func checkAnswer(t *testing.T, body []byte, typ reflect.Type, schema *openapi3.SchemaRef) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(reflect.New(typ).Interface()); err != nil {
		t.Fatalf("decoding %s strictly into %s: %v", body, typ, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", body)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if err := schema.Value.VisitJSON(v); err != nil {
		t.Fatalf("%s does not match its schema: %v", body, err)
	}
	if isEmpty(v) {
		t.Fatalf("%s: an empty answer checks nothing; give the route data", body)
	}
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// checkStream reads the first line of a JSON-lines answer.
func checkStream(t *testing.T, h *harness, path string, typ reflect.Type, schema *openapi3.SchemaRef) {
	t.Helper()
	sc := h.adminStream(adminapi.Prefix+path, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+h.AdminToken) })
	if !sc.Scan() {
		t.Fatalf("%s: no line: %v", path, sc.Err())
	}
	checkAnswer(t, sc.Bytes(), typ, schema)
}

// checkEvents opens the event stream, makes a change and checks the data
// of its "change" event.
func checkEvents(t *testing.T, h *harness, path string, op *openapi3.Operation) {
	t.Helper()
	sc := h.adminStream(adminapi.Prefix+path, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+h.AdminToken) })
	if !sc.Scan() || sc.Text() != ": latch events" {
		t.Fatalf("event stream starts with %q: %v", sc.Text(), sc.Err())
	}
	if _, err := h.Admin().PutNamespace(context.Background(), "events", adminapi.Namespace{Mode: adminapi.ModeEnforce}); err != nil {
		t.Fatal(err)
	}
	schema := op.Responses.Status(200).Value.Content.Get(adminapi.MediaSSE).Schema
	if data, ok := nextEvent(sc, "change"); ok {
		checkAnswer(t, []byte(data), reflect.TypeFor[adminapi.Event](), schema)
		return
	}
	t.Fatalf("no change event: %v", sc.Err())
}

// nextEvent returns the data of the next server-sent event named name.
func nextEvent(sc *bufio.Scanner, name string) (string, bool) {
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
		} else if d, ok := strings.CutPrefix(line, "data: "); ok && event == name {
			return d, true
		}
	}
	return "", false
}

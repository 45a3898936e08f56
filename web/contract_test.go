package web

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/wire"
)

// TestAdminRoutesAreDescribed: on the coordinator as it runs, with the
// console mounted, the admin routes are exactly the operations of the
// OpenAPI description (method and path), and the route the console adds
// (flows/denied) answers its declared type: decoded strictly and valid
// against its schema.
func TestAdminRoutesAreDescribed(t *testing.T) {
	h := newHarness(t)
	param := regexp.MustCompile(`:([a-z]+)`)
	registered := map[string]bool{}
	for _, r := range h.API.Routes() {
		if r.Method == echoRouteNotFound || !strings.HasPrefix(r.Path, adminapi.Prefix+"/") || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	doc, err := openapi3.NewLoader().LoadFromData(adminapi.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+adminapi.Prefix+path] = true
		}
	}
	for k := range registered {
		if !described[k] {
			t.Errorf("%s is registered but not in the OpenAPI description", k)
		}
	}
	for k := range described {
		if !registered[k] {
			t.Errorf("%s is in the OpenAPI description but not registered", k)
		}
	}

	a, b := h.flowNodes()
	now := h.Clock.Now()
	if _, err := h.PostFlows(h.flowNode, wire.FlowRecord{Start: now, End: now.Add(time.Second), Direction: wire.DirEgress, Src: a, Dst: b,
		Protocol: "TCP", Port: 22, Verdict: wire.VerdictDenied, Reason: "policy", Packets: 1, Bytes: 60}); err != nil {
		t.Fatal(err)
	}
	r := h.admin().call("GET", adminapi.Prefix+"/flows/denied", nil, nil)
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	var got adminapi.DeniedFlows
	if err := dec.Decode(&got); err != nil || len(got.Flows) != 1 {
		t.Fatalf("flows/denied %d %s: %v", r.code, r.body, err)
	}
	var v any
	json.NewDecoder(bytes.NewReader([]byte(r.body))).Decode(&v)
	schema := doc.Paths.Find("/flows/denied").Get.Responses.Status(200).Value.Content.Get("application/json").Schema
	if err := schema.Value.VisitJSON(v); err != nil {
		t.Fatalf("%s does not match its schema: %v", r.body, err)
	}
}

package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/coordtest"
)

// fuzzRoutes are the admin routes that read a request body, by the
// fuzzer's route number (modulo their count). POST /v1/admin/users is
// left out: a valid body costs an argon2id hash, which would make the
// fuzzer crawl; its body is UserRequest, decoded by the same bind.
var fuzzRoutes = []struct{ method, path, contentType string }{
	{"POST", "/v1/admin/tokens", "application/json"},
	{"PUT", "/v1/admin/namespaces/fuzz", "application/json"},
	{"POST", "/v1/admin/apitokens", "application/json"},
	{"POST", "/v1/admin/spiffe/nodes/approve", "application/json"},
	{"POST", "/v1/admin/spiffe/nodes/reject", "application/json"},
	{"POST", "/v1/admin/policies", "application/yaml"},
	{"POST", "/v1/admin/policies/validate", "application/yaml"},
}

// FuzzAdminBodies sends arbitrary bodies to the admin routes that read
// one, through the real server (admin token, in process). No body makes
// the server panic or answer 5xx; a refusal is a JSON error that says
// what was wrong; a join token the server hands out parses.
// Seeds: testdata/fuzz/FuzzAdminBodies.
func FuzzAdminBodies(f *testing.F) {
	c := coordtest.New(f, coordtest.Options{})
	srv, admin := c.API, c.AdminToken
	f.Add(uint8(0), []byte(`{"namespace":"prod","labels":{"app":"web"},"uses":2,"ttl":"10m"}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", r.contentType)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e adminapi.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: %d with body %q: want a JSON error with a message", r.method, r.path, rec.Code, rec.Body)
			}
			return
		}
		if r.path == "/v1/admin/tokens" && rec.Code == http.StatusOK {
			var tr adminapi.JoinTokenCreated
			if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil {
				t.Fatalf("token answer %q: %v", rec.Body, err)
			}
			if _, err := ca.ParseToken(tr.Token); err != nil {
				t.Fatalf("the server handed out a token that does not parse: %v", err)
			}
		}
	})
}

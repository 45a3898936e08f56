package api_test

import (
	"strings"
	"testing"
)

// TestErrorsSayItOnce runs admin calls that fail (things that do not
// exist, bad input) and checks that each error names what is wrong once:
// a handler that wraps a store error which already names the thing
// ("namespace \"x\": namespace \"x\": not found") repeats itself.
func TestErrorsSayItOnce(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/admin/namespaces/default/suggest", ""},
		{"GET", "/v1/admin/namespaces/ghost/suggest?since=1h", ""},
		{"PUT", "/v1/admin/namespaces/ghost", `{"mode":"bogus"}`},
		{"GET", "/v1/admin/nodes/ghost", ""},
		{"DELETE", "/v1/admin/nodes/ghost", ""},
		{"GET", "/v1/admin/nodes/ghost/view", ""},
		{"GET", "/v1/admin/nodes/ghost/grants", ""},
		{"POST", "/v1/admin/nodes/ghost/grants", `{"workloads":["namespace=prod,labels=app=x"]}`},
		{"POST", "/v1/admin/nodes/ghost/grants/revoke", `{"workloads":["namespace=prod,labels=app=x"]}`},
		{"DELETE", "/v1/admin/policies/ghost/nope", ""},
		{"DELETE", "/v1/admin/tokens/ghost", ""},
		{"DELETE", "/v1/admin/users/ghost", ""},
		{"DELETE", "/v1/admin/apitokens/ghost", ""},
		{"POST", "/v1/admin/tokens", `{"namespace":"prod","ttl":"10000h"}`},
		{"POST", "/v1/admin/spiffe/nodes/approve", `{"node":"ghost","namespace":"prod"}`},
		{"POST", "/v1/admin/spiffe/nodes/reject", `{"node":"ghost"}`},
		{"GET", "/v1/admin/whatif?from=prod/a&to=prod/b&port=80", ""},
	} {
		var e struct{ Error string }
		code, body := h.AdminCall(c.method, c.path, c.body, &e)
		if code < 400 {
			t.Errorf("%s %s: %d, want an error", c.method, c.path, code)
			continue
		}
		if e.Error == "" {
			t.Errorf("%s %s: %d with no error message: %s", c.method, c.path, code, body)
			continue
		}
		t.Logf("%s %s: %d %s", c.method, c.path, code, e.Error)
		if p := repeatedPhrase(e.Error); p != "" {
			t.Errorf("%s %s: %q says %q twice", c.method, c.path, e.Error, p)
		}
	}
}

// repeatedPhrase returns a part of msg between ": " separators that
// occurs twice, or "".
func repeatedPhrase(msg string) string {
	seen := map[string]bool{}
	for _, p := range strings.Split(msg, ": ") {
		p = strings.TrimSpace(p)
		if seen[p] {
			return p
		}
		seen[p] = true
	}
	return ""
}

func TestRepeatedPhrase(t *testing.T) {
	for msg, want := range map[string]string{
		`namespace "default": namespace "default": not found`: `namespace "default"`,
		`namespace "default": not found`:                      "",
	} {
		if got := repeatedPhrase(msg); got != want {
			t.Errorf("repeatedPhrase(%q) = %q, want %q", msg, got, want)
		}
	}
}

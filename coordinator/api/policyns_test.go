package api

import (
	"strings"
	"testing"
)

// The policy endpoints take kubectl's -n as the "namespace" query
// parameter: the namespace of policies that name none. Without it every
// policy must name its namespace, as before.
func TestPolicyNamespaceParameter(t *testing.T) {
	h := newHarness(t)
	const doc = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec: {podSelector: {}}\n"
	var v Validation
	if code, body := h.adminCall("POST", "/v1/admin/policies/validate", doc, &v); code != 200 || v.Valid || len(v.Problems) != 1 || v.Problems[0].Field != "metadata.namespace" {
		t.Fatalf("validate without a namespace: %d %s; want the namespace required", code, body)
	}
	if code, body := h.adminCall("POST", "/v1/admin/policies", doc, nil); code != 400 || !strings.Contains(body, "metadata.namespace") {
		t.Fatalf("apply without a namespace: %d %s; want the namespace required", code, body)
	}
	v = Validation{}
	if code, body := h.adminCall("POST", "/v1/admin/policies/validate?namespace=shop", doc, &v); code != 200 || !v.Valid || len(v.Changes) != 1 || v.Changes[0].Key != "shop/web" || v.Changes[0].Before != "" {
		t.Fatalf("validate ?namespace=shop: %d %s; want a new policy shop/web", code, body)
	}
	after := v.Changes[0].After
	if code, body := h.adminCall("POST", "/v1/admin/policies?namespace=shop", doc, nil); code != 200 || !strings.Contains(body, "shop/web") {
		t.Fatalf("apply ?namespace=shop: %d %s", code, body)
	}
	v = Validation{}
	if code, body := h.adminCall("POST", "/v1/admin/policies/validate?namespace=shop", doc, &v); code != 200 || len(v.Changes) != 1 || v.Changes[0].Before != after || v.Changes[0].After != after {
		t.Fatalf("validate after apply: %d %s; want no change", code, body)
	}
	// A namespace in the document wins over the parameter.
	v = Validation{}
	inProd := strings.Replace(doc, "{name: web}", "{name: web, namespace: prod}", 1)
	if code, body := h.adminCall("POST", "/v1/admin/policies/validate?namespace=shop", inProd, &v); code != 200 || len(v.Changes) != 1 || v.Changes[0].Key != "prod/web" {
		t.Fatalf("validate a policy in prod with ?namespace=shop: %d %s; want prod/web", code, body)
	}
}

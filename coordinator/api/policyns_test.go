package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/latchnet/latch/adminapi/client"
)

// The policy endpoints take kubectl's -n as the "namespace" query
// parameter: the namespace of policies that name none. Without it every
// policy must name its namespace, as before.
func TestPolicyNamespaceParameter(t *testing.T) {
	h := newHarness(t)
	c, ctx := h.Admin(), context.Background()
	const doc = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec: {podSelector: {}}\n"
	if v, err := c.ValidatePolicies(ctx, "", []byte(doc)); err != nil || v.Valid || len(v.Problems) != 1 || v.Problems[0].Field != "metadata.namespace" {
		t.Fatalf("validate without a namespace: %v %+v; want the namespace required", err, v)
	}
	if _, err := c.ApplyPolicies(ctx, "", "", []byte(doc)); !client.IsCode(err, "invalid") || !strings.Contains(err.Error(), "metadata.namespace") {
		t.Fatalf("apply without a namespace: %v; want the namespace required", err)
	}
	v, err := c.ValidatePolicies(ctx, "shop", []byte(doc))
	if err != nil || !v.Valid || len(v.Changes) != 1 || v.Changes[0].Key != "shop/web" || v.Changes[0].Before != "" {
		t.Fatalf("validate ?namespace=shop: %v %+v; want a new policy shop/web", err, v)
	}
	after := v.Changes[0].After
	if r, err := c.ApplyPolicies(ctx, "", "shop", []byte(doc)); err != nil || len(r.Applied) != 1 || r.Applied[0] != "shop/web" {
		t.Fatalf("apply ?namespace=shop: %v %+v", err, r)
	}
	if v, err := c.ValidatePolicies(ctx, "shop", []byte(doc)); err != nil || len(v.Changes) != 1 || v.Changes[0].Before != after || v.Changes[0].After != after {
		t.Fatalf("validate after apply: %v %+v; want no change", err, v)
	}
	// A namespace in the document wins over the parameter.
	inProd := strings.Replace(doc, "{name: web}", "{name: web, namespace: prod}", 1)
	if v, err := c.ValidatePolicies(ctx, "shop", []byte(inProd)); err != nil || len(v.Changes) != 1 || v.Changes[0].Key != "prod/web" {
		t.Fatalf("validate a policy in prod with ?namespace=shop: %v %+v; want prod/web", err, v)
	}
}

package spiffemap

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sample = `
- id: spiffe://latch.test/prod/db-*
  namespace: data
  labels: {role: db}
- id: spiffe://latch.test/prod/*
  namespace: prod
  labels: {role: server}
- id: spiffe://other.test/*
  namespace: other
`

func TestMatchFirstWins(t *testing.T) {
	m, err := Parse("map.yaml", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id     string
		ok     bool
		ns     string
		labels map[string]string
	}{
		{"spiffe://latch.test/prod/db-1", true, "data", map[string]string{"role": "db"}},
		{"spiffe://latch.test/prod/web", true, "prod", map[string]string{"role": "server"}},
		{"spiffe://latch.test/prod/a/b", false, "", nil}, // '*' stays in one segment
		{"spiffe://latch.test/dev/web", false, "", nil},
		{"spiffe://evil.test/prod/web", false, "", nil}, // the trust domain is literal
		{"spiffe://other.test/x", true, "other", nil},
		{"not-an-id", false, "", nil},
	}
	for _, c := range cases {
		e, ok := m.Match(c.id)
		if ok != c.ok || e.Namespace != c.ns || !cmp.Equal(e.Labels, c.labels) {
			t.Errorf("Match(%s) = %+v, %v; want %s %v, %v", c.id, e, ok, c.ns, c.labels, c.ok)
		}
	}
	if got := m.TrustDomains(); !cmp.Equal(got, []string{"latch.test", "other.test"}) {
		t.Errorf("TrustDomains = %v", got)
	}
	var none *Map
	if _, ok := none.Match("spiffe://latch.test/prod/web"); ok {
		t.Error("a nil map matched")
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"not a list":      "id: spiffe://a/b\n",
		"unknown field":   "- id: spiffe://a/b\n  namespace: x\n  lables: {}\n",
		"not spiffe":      "- id: https://a/b\n  namespace: x\n",
		"no path":         "- id: spiffe://a\n  namespace: x\n",
		"wildcard td":     "- id: spiffe://*/b\n  namespace: x\n",
		"bad pattern":     "- id: spiffe://a/[\n  namespace: x\n",
		"no namespace":    "- id: spiffe://a/b\n",
		"bad namespace":   "- id: spiffe://a/b\n  namespace: Prod\n",
		"bad label value": "- id: spiffe://a/b\n  namespace: x\n  labels: {role: 'a b'}\n",
		"bad label key":   "- id: spiffe://a/b\n  namespace: x\n  labels: {'a b': c}\n",
	}
	for name, in := range cases {
		if _, err := Parse("map.yaml", []byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "map.yaml: ") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

// An entry grants its nodes workloads and workload SPIFFE IDs; the
// reserved labels and malformed grants are refused.
func TestEntryGrants(t *testing.T) {
	m, err := Parse("map.yaml", []byte(`- id: spiffe://spire.test/prod/*
  namespace: prod
  workloads: [{namespace: prod, labels: {app: web}, name: web-*}]
  workloadIDs: [spiffe://spire.test/ns/prod/*]
`))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.Match("spiffe://spire.test/prod/n1")
	g := e.Grants()
	if !ok || len(g.Workloads) != 1 || g.Workloads[0].Name != "web-*" || !g.AllowsID("spiffe://spire.test/ns/prod/web") || g.AllowsID("spiffe://spire.test/ns/dev/web") {
		t.Fatalf("entry %+v", e)
	}
	for _, bad := range []string{
		"- {id: spiffe://t/x, namespace: a, labels: {spiffe.io/id: x}}",
		"- {id: spiffe://t/x, namespace: a, workloads: [{namespace: a, labels: {spiffe.io/id: x}}]}",
		"- {id: spiffe://t/x, namespace: a, workloads: [{namespace: a, label: {x: y}}]}",
		"- {id: spiffe://t/x, namespace: a, workloads: [{labels: {x: y}}]}",
		"- {id: spiffe://t/x, namespace: a, workloadIDs: [spiffe://*/x]}",
	} {
		if _, err := Parse("map.yaml", []byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

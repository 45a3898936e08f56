package grant

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec string
		want Workload
		err  bool
	}{
		{"namespace=prod,labels=app=web", Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}}, false},
		{"namespace=prod,labels=app=web;tier=front,name=web-*", Workload{Namespace: "prod", Labels: map[string]string{"app": "web", "tier": "front"}, Name: "web-*"}, false},
		{"namespace=prod", Workload{Namespace: "prod"}, false},
		{" namespace=prod , labels= , ", Workload{Namespace: "prod"}, false},
		{"labels=app=web", Workload{}, true},                          // no namespace
		{"namespace=Prod", Workload{}, true},                          // not DNS-1123
		{"namespace=prod,labels=spiffe.io/id=x", Workload{}, true},    // reserved
		{"namespace=prod,labels=spiffe.io/other=x", Workload{}, true}, // reserved prefix
		{"namespace=prod,labels=app=web;app=db", Workload{}, true},    // twice
		{"namespace=prod,namespace=dev", Workload{}, true},            // twice
		{"namespace=prod,name=[", Workload{}, true},                   // bad pattern
		{"namespace=prod,color=red", Workload{}, true},                // unknown field
		{"namespace=prod,labels=app=we b", Workload{}, true},          // bad value
		{"namespace=prod,labels=app", Workload{}, true},               // not k=v
	}
	for _, tc := range tests {
		got, err := Parse(tc.spec)
		if (err != nil) != tc.err {
			t.Errorf("Parse(%q): error %v, want error %v", tc.spec, err, tc.err)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q): %v does not wrap ErrInvalid", tc.spec, err)
		}
		if diff := cmp.Diff(tc.want, got); err == nil && diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.spec, diff)
		}
		if err == nil {
			back, err := Parse(got.String())
			if err != nil || !back.Equal(got) {
				t.Errorf("Parse(%q).String() = %q does not parse back: %v", tc.spec, got.String(), err)
			}
		}
	}
}

// Matching is on the exact label set: a workload with more labels than
// the grant (which could step out of a NotIn or DoesNotExist selector) or
// fewer is not granted.
func TestMatchesExactLabels(t *testing.T) {
	g := Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}, Name: "web-*"}
	tests := []struct {
		w    inventory.Workload
		want bool
	}{
		{inventory.Workload{Namespace: "prod", Name: "web-1", Labels: map[string]string{"app": "web"}}, true},
		{inventory.Workload{Namespace: "prod", Name: "web-1", Labels: map[string]string{"app": "web", "env": "canary"}}, false},
		{inventory.Workload{Namespace: "prod", Name: "web-1"}, false},
		{inventory.Workload{Namespace: "prod", Name: "web-1", Labels: map[string]string{"app": "db"}}, false},
		{inventory.Workload{Namespace: "dev", Name: "web-1", Labels: map[string]string{"app": "web"}}, false},
		{inventory.Workload{Namespace: "prod", Name: "fake-web", Labels: map[string]string{"app": "web"}}, false},
	}
	for _, tc := range tests {
		if got := g.Matches(tc.w); got != tc.want {
			t.Errorf("%s matches %s %v: %v, want %v", g, tc.w.Key(), tc.w.Labels, got, tc.want)
		}
	}
	if !(Workload{Namespace: "prod"}).Matches(inventory.Workload{Namespace: "prod", Name: "x"}) {
		t.Error("a grant without labels and name does not match an unlabelled workload")
	}
	if (Workload{Namespace: "prod"}).Matches(inventory.Workload{Namespace: "prod", Name: "x", Labels: map[string]string{"a": "b"}}) {
		t.Error("a grant without labels matches a labelled workload")
	}
}

func TestIDPatterns(t *testing.T) {
	s := Set{WorkloadIDs: []string{"spiffe://example.org/ns/prod/sa/*"}}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{
		"spiffe://example.org/ns/prod/sa/web":      true,
		"spiffe://example.org/ns/dev/sa/web":       false,
		"spiffe://example.org/ns/prod/sa/web/x":    false,
		"spiffe://evil.org/ns/prod/sa/web":         false,
		"spiffe://example.org.evil/ns/prod/sa/web": false,
	} {
		if got := s.AllowsID(id); got != want {
			t.Errorf("AllowsID(%s) = %v, want %v", id, got, want)
		}
	}
	if (Set{}).AllowsID("spiffe://example.org/ns/prod/sa/web") {
		t.Error("an empty set allows a workload ID")
	}
	for _, bad := range []string{"example.org/x", "spiffe://*/x", "spiffe://example.org", "spiffe://example.org/["} {
		if CheckIDPattern(bad) == nil {
			t.Errorf("CheckIDPattern(%q) accepted it", bad)
		}
	}
}

func TestUnionWithout(t *testing.T) {
	a := Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}}
	b := Workload{Namespace: "dev"}
	s := Set{Workloads: []Workload{a}}.Union(Set{Workloads: []Workload{a, b}, WorkloadIDs: []string{"spiffe://t/x"}})
	if len(s.Workloads) != 2 || len(s.WorkloadIDs) != 1 {
		t.Fatalf("union: %+v", s)
	}
	r, err := s.Without(Set{Workloads: []Workload{a}})
	if err != nil || len(r.Workloads) != 1 || !r.Workloads[0].Equal(b) {
		t.Fatalf("without: %+v, %v", r, err)
	}
	if _, err := r.Without(Set{Workloads: []Workload{a}}); err == nil {
		t.Error("revoking a grant the set does not hold is not an error")
	}
}

func TestUnmarshalSpecOrObject(t *testing.T) {
	var s Set
	in := `{"workloads": ["namespace=prod,labels=app=web", {"namespace": "dev", "labels": {"app": "db"}}]}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	want := []Workload{{Namespace: "prod", Labels: map[string]string{"app": "web"}}, {Namespace: "dev", Labels: map[string]string{"app": "db"}}}
	if diff := cmp.Diff(want, s.Workloads); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"workloads": ["labels=app=web"]}`), &s); err == nil {
		t.Error("a spec without namespace was accepted")
	}
}

func TestUnmarshalRefusesUnknownFields(t *testing.T) {
	var g Workload
	if err := json.Unmarshal([]byte(`{"namespace": "prod", "label": {"app": "web"}}`), &g); err == nil {
		t.Error("a grant with the misspelt field label was accepted")
	}
}

// FuzzParse: Parse never panics; what it accepts is valid and reads back
// the same from its String form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"namespace=prod,labels=app=web;tier=front,name=web-*", "namespace=prod", "namespace=a,labels=,name=[", "labels=x=y", ",,,=", "namespace=p,labels=spiffe.io/id=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		g, err := Parse(spec)
		if err != nil {
			return
		}
		if err := g.Check(); err != nil {
			t.Fatalf("Parse(%q) accepted %+v, which Check refuses: %v", spec, g, err)
		}
		back, err := Parse(g.String())
		if err != nil || !back.Equal(g) {
			t.Fatalf("Parse(%q).String() = %q reads back as %+v, %v", spec, g.String(), back, err)
		}
	})
}

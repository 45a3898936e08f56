package state

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
)

func TestPolicyChanges(t *testing.T) {
	parse := func(doc string) []*policy.Policy {
		t.Helper()
		ps, err := policy.ParseFilesWith(policy.ParseOptions{DefaultNamespace: "default"}, policy.File{Name: "f", Data: []byte(doc)})
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	const (
		web = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec: {podSelector: {matchLabels: {app: web}}}\n"
		// webEgress is web with another spec.
		webEgress = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}\n"
		db        = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: prod}\nspec: {podSelector: {}}\n"
	)
	yamlOf := func(doc string) string {
		t.Helper()
		y, err := PolicyYAML(parse(doc)[0])
		if err != nil {
			t.Fatal(err)
		}
		return y
	}
	stored := func(ns, name, doc string) store.Policy {
		return store.Policy{Namespace: ns, Name: name, YAML: yamlOf(doc)}
	}
	for _, tc := range []struct {
		name    string
		stored  []store.Policy
		apply   string
		want    []PolicyChange
		changed []bool
	}{{
		name:    "new policy",
		apply:   web,
		want:    []PolicyChange{{Key: "default/web", After: yamlOf(web)}},
		changed: []bool{true},
	}, {
		name:    "unchanged policy",
		stored:  []store.Policy{stored("default", "web", web)},
		apply:   web,
		want:    []PolicyChange{{Key: "default/web", Before: yamlOf(web), After: yamlOf(web)}},
		changed: []bool{false},
	}, {
		name:    "changed policy",
		stored:  []store.Policy{stored("default", "web", web)},
		apply:   webEgress,
		want:    []PolicyChange{{Key: "default/web", Before: yamlOf(web), After: yamlOf(webEgress)}},
		changed: []bool{true},
	}, {
		name: "same name in another namespace is another policy; other stored policies are left out",
		stored: []store.Policy{
			{Namespace: "prod", Name: "web", YAML: "other"},
			stored("prod", "db", db),
		},
		apply: web + "---\n" + db,
		want: []PolicyChange{
			{Key: "default/web", After: yamlOf(web)},
			{Key: "prod/db", Before: yamlOf(db), After: yamlOf(db)},
		},
		changed: []bool{true, false},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PolicyChanges(tc.stored, parse(tc.apply))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			for i, c := range got {
				if c.Changed() != tc.changed[i] {
					t.Errorf("%s: Changed() = %v, want %v", c.Key, c.Changed(), tc.changed[i])
				}
			}
		})
	}
}

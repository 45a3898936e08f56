package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/internal/strictyaml"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"sigs.k8s.io/yaml"
)

// semanticsCase is one file of testdata/semantics: an inventory, policies,
// a baseline and the hand-derived list of allowed (from, to, port) triples
// of the truth table. Everything not listed must be denied.
type semanticsCase struct {
	Description string              `json:"description"`
	Baseline    policy.Baseline     `json:"baseline"`
	Inventory   inventory.Inventory `json:"inventory"`
	Policies    string              `json:"policies"`
	Expect      struct {
		Allowed []string `json:"allowed"`
	} `json:"expect"`
}

func TestSemantics(t *testing.T) {
	files, err := filepath.Glob("testdata/semantics/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata/semantics: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c semanticsCase
			if err := strictyaml.UnmarshalStrict(data, &c); err != nil {
				t.Fatalf("reading case: %v", err)
			}
			invData, _ := yaml.Marshal(c.Inventory)
			inv, err := inventory.Parse(f+" inventory", invData)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := policy.Parse(f+" policies", []byte(c.Policies))
			if err != nil {
				t.Fatal(err)
			}
			ev := policy.NewEvaluator(inv.Namespaces, ps, c.Baseline)
			got := []string{}
			for _, r := range ev.TruthTable(inv.AllWorkloads()) {
				if r.Allowed {
					got = append(got, fmt.Sprintf("%s -> %s %d/%s", r.From, r.To, r.Port, r.Protocol))
				}
			}
			want := append([]string{}, c.Expect.Allowed...)
			sort.Strings(got)
			sort.Strings(want)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s\nallowed flows (-want +got):\n%s", c.Description, d)
			}
		})
	}
}

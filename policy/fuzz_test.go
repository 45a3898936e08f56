package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchnet/latch/policy"
	"sigs.k8s.io/yaml"
)

// FuzzParse feeds arbitrary bytes to the reader. It must never panic; it
// either refuses the input with ErrInvalid and no policies, or accepts
// policies that survive a round trip through YAML unchanged in meaning
// (the re-read policies have the same keys and specs).
// Seeds: testdata/fuzz/FuzzParse (committed) and every testdata file.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*.yaml", "testdata/invalid/*.yaml", "testdata/recipes/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := policy.Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, policy.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if ps != nil {
				t.Fatalf("policies returned with an error")
			}
			return
		}
		for _, p := range ps {
			out, err := yaml.Marshal(&p.NetworkPolicy)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			again, err := policy.Parse("again.yaml", out)
			if err != nil {
				t.Fatalf("accepted policy %s does not re-read: %v\n%s", p.Key(), err, out)
			}
			if len(again) != 1 || again[0].Key() != p.Key() {
				t.Fatalf("round trip changed the policy %s", p.Key())
			}
			// Evaluating must not panic either.
			policy.Isolation(&again[0].NetworkPolicy)
		}
	})
}

package spiffemap

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParse feeds arbitrary bytes to the mapping file reader. It never
// panics; an accepted map re-checks (New on its own entries), its entries
// hold valid namespaces and labels, and matching an ID against it never
// panics and returns a copy of an entry's labels.
// Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte("- id: spiffe://example.org/prod/*\n  namespace: prod\n  labels: {role: server}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.yaml", data)
		if err != nil {
			if m != nil {
				t.Fatal("a map returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if _, err := New(m.entries); err != nil {
			t.Fatalf("accepted entries do not re-check: %v", err)
		}
		for _, e := range m.entries {
			if len(validation.IsDNS1123Label(e.Namespace)) > 0 || !strings.HasPrefix(e.ID, "spiffe://") {
				t.Fatalf("accepted entry %+v", e)
			}
			id := e.ID + "x"
			if got, ok := m.Match(id); ok {
				if got.Labels != nil {
					got.Labels["fuzz"] = "changed"
					if again, _ := m.Match(id); again.Labels["fuzz"] == "changed" {
						t.Fatal("Match returned the map's own labels")
					}
				}
			}
		}
		m.TrustDomains()
	})
}

package strictyaml

import (
	"bytes"
	"encoding/json"
	"testing"
)

type fuzzDoc struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Ports  []struct {
		Port     int    `json:"port"`
		Protocol string `json:"protocol,omitempty"`
	} `json:"ports,omitempty"`
	Nested *fuzzDoc `json:"nested,omitempty"`
}

// FuzzUnmarshal feeds arbitrary YAML to the strict decoder that reads
// policies, inventories, the SPIFFE mapping file and the node's config
// file. It never panics; a document it accepts strictly, re-encoded as
// JSON (which is YAML), decodes strictly to a value with the same JSON.
// Seeds: testdata/fuzz/FuzzUnmarshal.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte("name: web\nlabels: {app: web}\nports: [{port: 80}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fuzzDoc
		unknown, err := Unmarshal(data, &v)
		if err != nil {
			return
		}
		for _, u := range unknown {
			if u.Path == "" {
				t.Fatalf("an unknown field without a path in %q", data)
			}
		}
		if len(unknown) > 0 {
			return
		}
		js, err := json.Marshal(&v)
		if err != nil {
			t.Fatal(err)
		}
		var again fuzzDoc
		if err := UnmarshalStrict(js, &again); err != nil {
			t.Fatalf("accepted %q, re-encoded as %s, does not decode: %v", data, js, err)
		}
		// Compared as JSON: an empty list and no list are the same.
		if js2, _ := json.Marshal(&again); !bytes.Equal(js, js2) {
			t.Fatalf("round trip of %q changed %s into %s", data, js, js2)
		}
	})
}

// An empty key at the top level (found by FuzzUnmarshal: `!0 :`) is
// reported as a field named "", not as a field without a path.
func TestUnknownEmptyKey(t *testing.T) {
	for _, doc := range []string{"!0 :\n", "\"\": x\n"} {
		var v fuzzDoc
		unknown, err := Unmarshal([]byte(doc), &v)
		if err != nil || len(unknown) != 1 || unknown[0].Path != `""` {
			t.Errorf("%q: unknown %v, err %v; want one unknown field \"\"", doc, unknown, err)
		}
	}
}

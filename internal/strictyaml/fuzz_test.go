package strictyaml

import (
	"encoding/json"
	"reflect"
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
// JSON (which is YAML), decodes strictly to an equal value.
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
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip of %q changed %+v into %+v", data, v, again)
		}
	})
}

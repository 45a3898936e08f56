// Package strictyaml decodes YAML 1.2 into Go structs strictly: unknown
// and duplicate fields are errors, and unknown fields are reported with
// their full path (spec.ingress[0].fromm). Scalars follow YAML 1.2, so
// `namespace: y` is the string "y", not a boolean.
//
// It is pure; the policy, inventory and SPIFFE mapping readers use it.
// Anything may import it.
package strictyaml

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	sjson "sigs.k8s.io/json"
)

// UnknownFieldError names a field the target type does not have.
type UnknownFieldError struct{ Path string }

func (e *UnknownFieldError) Error() string {
	return fmt.Sprintf("%s: unknown field: remove it or check its spelling", e.Path)
}

var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

// Unmarshal decodes one YAML document into v. It returns a syntax or type
// error, or else the list of unknown fields (nil when there are none). v
// is filled even when unknown fields are reported.
func Unmarshal(data []byte, v any) ([]*UnknownFieldError, error) {
	var doc any
	if err := yaml3.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	js, err := json.Marshal(jsonable(doc))
	if err != nil {
		return nil, fmt.Errorf("YAML: %v", err)
	}
	strict, err := sjson.UnmarshalStrict(js, v, sjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	var out []*UnknownFieldError
	for _, e := range strict {
		if m := unknownField.FindStringSubmatch(e.Error()); m != nil {
			path := m[1]
			if path == "" {
				// A key that is empty ("" or a tagged empty scalar such
				// as `!0 :`) at the top level: say so rather than
				// report a field without a name.
				path = `""`
			}
			out = append(out, &UnknownFieldError{Path: path})
			continue
		}
		return nil, e
	}
	return out, nil
}

// UnmarshalStrict is Unmarshal that treats unknown fields as an error.
func UnmarshalStrict(data []byte, v any) error {
	unknown, err := Unmarshal(data, v)
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		msgs := make([]string, len(unknown))
		for i, u := range unknown {
			msgs[i] = u.Error()
		}
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// jsonable converts YAML-decoded values (maps with non-string keys) to
// values encoding/json accepts.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = jsonable(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = jsonable(x)
		}
		return t
	default:
		return v
	}
}

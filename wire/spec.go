package wire

import (
	"fmt"
	"strings"
)

// SpecField is one key=value field of a spec such as a --workload
// declaration or a workload grant.
type SpecField struct{ Key, Value string }

// SplitSpec splits a spec of key=value fields separated by ',' (blank
// fields are skipped), refusing a field without '=' and a key given twice.
// Values are not interpreted: a value may hold '=' and ';' (labels=k=v;k=v).
func SplitSpec(spec string) ([]SpecField, error) {
	var out []SpecField
	seen := map[string]bool{}
	for _, field := range strings.Split(spec, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("field %q is not key=value", field)
		}
		if seen[k] {
			return nil, fmt.Errorf("field %q given twice", k)
		}
		seen[k] = true
		out = append(out, SpecField{Key: k, Value: v})
	}
	return out, nil
}

// ParseLabelList parses the labels field of a spec, "k=v;k=v", refusing an
// entry without '=' or key and a key given twice; nil when there are none.
func ParseLabelList(s string) (map[string]string, error) {
	var out map[string]string
	for _, kv := range strings.Split(s, ";") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value (several labels are separated by ';')", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out, nil
}

// Package grant says which workloads a node may host. An administrator
// grants them, much like SPIRE registration entries: a grant is a
// namespace, the exact set of labels a workload may carry, and optionally
// a pattern its name must match. A workload is granted iff some grant has
// its namespace, exactly its labels (no more, no fewer) and a name pattern
// that matches. The match is exact rather than a subset because policy
// selectors can select on a label's absence (NotIn, DoesNotExist): a
// subset rule would let a node add labels that move its workload out of a
// deny rule or into an allow rule written against their absence.
//
// A Set also lists the workload SPIFFE ID patterns a SPIRE node may
// declare (like a SPIRE registration entry's parent: none listed, none
// allowed).
//
// Grants come from a join token (copied to the node at enrollment), from
// the coordinator's SPIFFE mapping, or from an administrator editing a
// node. The spec syntax (Parse) is the one `latch admin token create
// --workload` and `latch admin node grant` take:
//
//	namespace=NS[,labels=k=v;k=v][,name=PATTERN]
//
// It is pure. Only packages cli, coordinator/api, coordinator/spiffemap,
// coordinator/state and coordinator/store import it.
package grant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits on one Set, so that a token or a node record stays small.
const (
	MaxWorkloads = 256
	MaxIDs       = 256
	maxSpec      = 4096
)

// SpecHelp describes the syntax Parse accepts.
const SpecHelp = "namespace=NS[,labels=k=v;k=v][,name=PATTERN]"

// Workload grants one kind of workload.
type Workload struct {
	// Namespace the workload must be in.
	Namespace string `json:"namespace"`
	// Labels the workload must carry: exactly these, no more, no fewer.
	Labels map[string]string `json:"labels,omitempty"`
	// Name is a path.Match pattern the workload's name must match
	// ("web-*"); empty matches any name.
	Name string `json:"name,omitempty"`
}

// Set is what a node may host.
type Set struct {
	Workloads []Workload `json:"workloads,omitempty"`
	// WorkloadIDs are SPIFFE ID patterns (spiffe://TD/PATH, path.Match
	// wildcards in the path) of the workload IDs a SPIRE node may declare.
	WorkloadIDs []string `json:"workloadIDs,omitempty"`
}

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid grant")

// Parse reads a grant spec, SpecHelp: fields separated by ',', labels by
// ';'.
func Parse(spec string) (Workload, error) {
	var g Workload
	bad := func(format string, a ...any) (Workload, error) {
		return Workload{}, fmt.Errorf("%w: %q: %s (want %s, e.g. namespace=prod,labels=app=web,name=web-*)", ErrInvalid, trunc(spec), fmt.Sprintf(format, a...), SpecHelp)
	}
	if len(spec) > maxSpec {
		return bad("longer than %d bytes", maxSpec)
	}
	fields, err := wire.SplitSpec(spec)
	if err != nil {
		return bad("%v", err)
	}
	for _, f := range fields {
		switch k, v := f.Key, f.Value; k {
		case "namespace":
			g.Namespace = v
		case "name":
			g.Name = v
		case "labels":
			if g.Labels, err = wire.ParseLabelList(v); err != nil {
				return bad("labels: %v", err)
			}
		default:
			return bad("unknown field %q: the fields are namespace, labels and name", f.Key)
		}
	}
	if err := g.Check(); err != nil {
		return Workload{}, err
	}
	return g, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// UnmarshalJSON takes an object {namespace, labels, name} (no other
// field) or a string in the spec syntax of Parse (what the console's token
// form sends).
func (g *Workload) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p, err := Parse(s)
		if err != nil {
			return err
		}
		*g = p
		return nil
	}
	type plain Workload
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("%w: %v (a grant has the fields namespace, labels and name)", ErrInvalid, err)
	}
	*g = Workload(p)
	return nil
}

// CheckLabels checks labels a token, an approval, a mapping or a grant
// gives: valid Kubernetes labels, and no reserved key
// (policy.IsReservedLabel). where names them in messages.
func CheckLabels(where string, labels map[string]string) error {
	keys := slices.Sorted(maps.Keys(labels))
	for _, k := range keys {
		v := labels[k]
		if policy.IsReservedLabel(k) {
			return fmt.Errorf("%w: %s: the label %s is reserved: the coordinator sets it (from a workload's SPIFFE ID), nobody grants or claims it", ErrInvalid, where, k)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("%w: %s: label key %q: %s", ErrInvalid, where, k, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("%w: %s: label %s=%q: %s", ErrInvalid, where, k, v, errs[0])
		}
	}
	return nil
}

// Check validates a grant: a DNS-1123 namespace, valid unreserved labels,
// a name pattern path.Match accepts.
func (g Workload) Check() error {
	if g.Namespace == "" {
		return fmt.Errorf("%w: %s: namespace is missing", ErrInvalid, g)
	}
	if errs := validation.IsDNS1123Label(g.Namespace); len(errs) > 0 {
		return fmt.Errorf("%w: %s: namespace %q: %s", ErrInvalid, g, g.Namespace, errs[0])
	}
	if err := CheckLabels("grant "+g.String(), g.Labels); err != nil {
		return err
	}
	if len(g.Name) > 253 {
		return fmt.Errorf("%w: name pattern longer than 253 characters", ErrInvalid)
	}
	if _, err := path.Match(g.Name, ""); err != nil {
		return fmt.Errorf("%w: %s: name pattern %q: %v", ErrInvalid, g, g.Name, err)
	}
	return nil
}

// String is the grant in the spec syntax of Parse, labels sorted.
func (g Workload) String() string {
	s := "namespace=" + g.Namespace
	if len(g.Labels) > 0 {
		s += ",labels=" + labelList(g.Labels)
	}
	if g.Name != "" {
		s += ",name=" + g.Name
	}
	return s
}

func labelList(l map[string]string) string {
	kv := make([]string, 0, len(l))
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ";")
}

// Equal reports whether two grants are the same.
func (g Workload) Equal(o Workload) bool {
	return g.Namespace == o.Namespace && g.Name == o.Name && maps.Equal(g.Labels, o.Labels)
}

// Matches reports whether w (as declared: without the labels the
// coordinator derives) is granted by g: same namespace, exactly the same
// labels, a name the pattern matches.
func (g Workload) Matches(w inventory.Workload) bool {
	if g.Namespace != w.Namespace || len(g.Labels) != len(w.Labels) || !maps.Equal(g.Labels, w.Labels) {
		return false
	}
	if g.Name == "" {
		return true
	}
	ok, _ := path.Match(g.Name, w.Name)
	return ok
}

// CheckIDPattern checks a workload SPIFFE ID pattern: spiffe://TD/PATH
// with a literal trust domain and a path pattern path.Match accepts.
func CheckIDPattern(p string) error {
	rest, ok := strings.CutPrefix(p, "spiffe://")
	if !ok {
		return fmt.Errorf("%w: workload ID pattern %q: want spiffe://TD/PATH-PATTERN, e.g. spiffe://example.org/ns/prod/sa/*", ErrInvalid, trunc(p))
	}
	td, pp, ok := strings.Cut(rest, "/")
	if !ok || pp == "" {
		return fmt.Errorf("%w: workload ID pattern %q needs a path after the trust domain, e.g. spiffe://example.org/ns/prod/sa/*", ErrInvalid, trunc(p))
	}
	if td == "" || strings.ContainsAny(td, "*?[]\\") {
		return fmt.Errorf("%w: workload ID pattern %q: write the trust domain out (wildcards only in the path)", ErrInvalid, trunc(p))
	}
	if len(p) > 2048 {
		return fmt.Errorf("%w: workload ID pattern longer than 2048 bytes", ErrInvalid)
	}
	if _, err := path.Match(pp, ""); err != nil {
		return fmt.Errorf("%w: workload ID pattern %q: %v", ErrInvalid, trunc(p), err)
	}
	return nil
}

// MatchID reports whether the SPIFFE ID id matches pattern p ('*' within
// one path segment; the trust domain literal).
func MatchID(p, id string) bool {
	ptd, pp, _ := strings.Cut(strings.TrimPrefix(p, "spiffe://"), "/")
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return false
	}
	td, ip, _ := strings.Cut(rest, "/")
	if td != ptd {
		return false
	}
	m, _ := path.Match(pp, ip)
	return m
}

// Check validates every grant and pattern and the limits.
func (s Set) Check() error {
	if len(s.Workloads) > MaxWorkloads {
		return fmt.Errorf("%w: %d workload grants, at most %d are allowed", ErrInvalid, len(s.Workloads), MaxWorkloads)
	}
	if len(s.WorkloadIDs) > MaxIDs {
		return fmt.Errorf("%w: %d workload ID patterns, at most %d are allowed", ErrInvalid, len(s.WorkloadIDs), MaxIDs)
	}
	for _, g := range s.Workloads {
		if err := g.Check(); err != nil {
			return err
		}
	}
	for _, p := range s.WorkloadIDs {
		if err := CheckIDPattern(p); err != nil {
			return err
		}
	}
	return nil
}

// Empty reports whether s grants nothing.
func (s Set) Empty() bool { return len(s.Workloads) == 0 && len(s.WorkloadIDs) == 0 }

// Find returns the first grant of s that matches w.
func (s Set) Find(w inventory.Workload) (Workload, bool) {
	for _, g := range s.Workloads {
		if g.Matches(w) {
			return g, true
		}
	}
	return Workload{}, false
}

// AllowsID reports whether some pattern of s matches the SPIFFE ID id.
func (s Set) AllowsID(id string) bool {
	for _, p := range s.WorkloadIDs {
		if MatchID(p, id) {
			return true
		}
	}
	return false
}

// Union is s with what o has and s lacks, s's order first.
func (s Set) Union(o Set) Set {
	out := Set{Workloads: slices.Clone(s.Workloads), WorkloadIDs: slices.Clone(s.WorkloadIDs)}
	for _, g := range o.Workloads {
		if !slices.ContainsFunc(out.Workloads, g.Equal) {
			out.Workloads = append(out.Workloads, g)
		}
	}
	for _, p := range o.WorkloadIDs {
		if !slices.Contains(out.WorkloadIDs, p) {
			out.WorkloadIDs = append(out.WorkloadIDs, p)
		}
	}
	return out
}

// Without is s without the grants and patterns of o; removing one s does
// not hold is an error naming it, so a mistyped revoke is not silently a
// no-op.
func (s Set) Without(o Set) (Set, error) {
	out := Set{Workloads: slices.Clone(s.Workloads), WorkloadIDs: slices.Clone(s.WorkloadIDs)}
	for _, g := range o.Workloads {
		i := slices.IndexFunc(out.Workloads, g.Equal)
		if i < 0 {
			return Set{}, fmt.Errorf("%w: there is no grant %s to revoke", ErrInvalid, g)
		}
		out.Workloads = slices.Delete(out.Workloads, i, i+1)
	}
	for _, p := range o.WorkloadIDs {
		i := slices.Index(out.WorkloadIDs, p)
		if i < 0 {
			return Set{}, fmt.Errorf("%w: there is no workload ID pattern %s to revoke", ErrInvalid, p)
		}
		out.WorkloadIDs = slices.Delete(out.WorkloadIDs, i, i+1)
	}
	return out, nil
}

// Suggest is the grant that would admit w exactly (its namespace, labels
// and name), for messages telling an admin what to grant.
func Suggest(w inventory.Workload) Workload {
	return Workload{Namespace: w.Namespace, Labels: maps.Clone(w.Labels), Name: w.Name}
}

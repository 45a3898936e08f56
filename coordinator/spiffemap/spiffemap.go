// Package spiffemap maps the SPIFFE IDs of nodes that a trusted SPIRE
// deployment vouches for to a namespace and labels. A mapping file is a
// YAML list of entries
//
//   - id: spiffe://example.org/prod/*
//     namespace: prod
//     labels: {role: server}
//     workloads:                  # what the node may host (package grant)
//   - {namespace: prod, labels: {app: web}, name: web-*}
//     workloadIDs:                # workload SPIFFE IDs it may declare
//   - spiffe://example.org/ns/prod/sa/*
//
// matched in order: the first entry whose pattern matches the ID wins. A
// pattern is a SPIFFE ID whose path may hold the wildcards of path.Match
// ('*' matches within one path segment, '?' one character, [a-z] a class);
// the trust domain is literal. An ID that no entry matches waits for an
// admin's approval. Like a SPIRE registration entry's parent, an entry
// lists the workload SPIFFE IDs its nodes may declare: none listed, none
// allowed. Labels under spiffe.io/ are reserved for the coordinator.
//
// It is pure. Only packages coordinator (which reads the mapping file) and
// coordinator/state, and tests, import it.
package spiffemap

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/latchnet/latch/grant"

	"github.com/latchnet/latch/internal/strictyaml"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Entry maps the IDs matching ID to Namespace and Labels, and grants
// their nodes Workloads and WorkloadIDs.
type Entry struct {
	ID          string            `json:"id"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels,omitempty"`
	Workloads   []grant.Workload  `json:"workloads,omitempty"`
	WorkloadIDs []string          `json:"workloadIDs,omitempty"`
}

// Grants is what the entry's nodes may host.
func (e Entry) Grants() grant.Set {
	return grant.Set{Workloads: slices.Clone(e.Workloads), WorkloadIDs: slices.Clone(e.WorkloadIDs)}
}

// Map is a checked list of entries.
type Map struct {
	entries []Entry
}

// Parse reads a mapping file's contents; name is for messages.
func Parse(name string, data []byte) (*Map, error) {
	var es []Entry
	if err := strictyaml.UnmarshalStrict(data, &es); err != nil {
		return nil, fmt.Errorf("%s: %w (want a list of {id: spiffe://TD/PATH-PATTERN, namespace: NS, labels: {k: v}, workloads: [{namespace: NS, labels: {k: v}, name: PATTERN}], workloadIDs: [spiffe://TD/PATH-PATTERN]})", name, err)
	}
	m, err := New(es)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// New checks entries: every pattern is spiffe://TD/PATH with a literal
// trust domain and a path pattern path.Match accepts, every namespace a
// DNS-1123 label, every label a Kubernetes label.
func New(entries []Entry) (*Map, error) {
	for i, e := range entries {
		if err := check(e); err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", i+1, e.ID, err)
		}
	}
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = Entry{ID: e.ID, Namespace: e.Namespace, Labels: maps.Clone(e.Labels), Workloads: slices.Clone(e.Workloads), WorkloadIDs: slices.Clone(e.WorkloadIDs)}
	}
	return &Map{entries: out}, nil
}

func check(e Entry) error {
	rest, ok := strings.CutPrefix(e.ID, "spiffe://")
	if !ok {
		return errors.New("id must be a SPIFFE ID pattern spiffe://TD/PATH, e.g. spiffe://example.org/prod/*")
	}
	td, p, ok := strings.Cut(rest, "/")
	if !ok || p == "" {
		return errors.New("id needs a path after the trust domain, e.g. spiffe://example.org/prod/*")
	}
	if td == "" || strings.ContainsAny(td, "*?[]\\") {
		return errors.New("the trust domain of an id must be written out (wildcards only in the path)")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("bad path pattern %q: %v", p, err)
	}
	if e.Namespace == "" {
		return errors.New("namespace is missing")
	}
	if errs := validation.IsDNS1123Label(e.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", e.Namespace, errs[0])
	}
	if err := grant.CheckLabels("labels", e.Labels); err != nil {
		return err
	}
	return e.Grants().Check()
}

// Match returns the first entry whose pattern matches id (a SPIFFE ID
// string), and whether there is one. The entry's labels are a copy.
func (m *Map) Match(id string) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return Entry{}, false
	}
	td, p, _ := strings.Cut(rest, "/")
	for _, e := range m.entries {
		etd, ep, _ := strings.Cut(strings.TrimPrefix(e.ID, "spiffe://"), "/")
		if etd != td {
			continue
		}
		if ok, _ := path.Match(ep, p); ok {
			e.Labels = maps.Clone(e.Labels)
			e.Workloads, e.WorkloadIDs = slices.Clone(e.Workloads), slices.Clone(e.WorkloadIDs)
			return e, true
		}
	}
	return Entry{}, false
}

// TrustDomains returns the trust domains the entries name, in order,
// without repeats.
func (m *Map) TrustDomains() []string {
	var out []string
	for _, e := range m.entries {
		td, _, _ := strings.Cut(strings.TrimPrefix(e.ID, "spiffe://"), "/")
		found := false
		for _, o := range out {
			found = found || o == td
		}
		if !found {
			out = append(out, td)
		}
	}
	return out
}

// Len is the number of entries.
func (m *Map) Len() int {
	if m == nil {
		return 0
	}
	return len(m.entries)
}

package view

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Delta turns a view of version Base into a view of version Version. The
// coordinator streams a full view first and deltas after it; a node that
// reconnects says which version it holds and gets a delta from it when the
// coordinator still knows that version, else a full view.
type Delta struct {
	Node    string `json:"node"`
	Base    uint64 `json:"base"`
	Version uint64 `json:"version"`

	UpsertPeers      []Peer          `json:"upsertPeers,omitempty"`
	RemovePeers      []string        `json:"removePeers,omitempty"`
	UpsertIdentities []IdentityEntry `json:"upsertIdentities,omitempty"`
	RemoveIdentities []Addr          `json:"removeIdentities,omitempty"`
	UpsertWorkloads  []WorkloadRules `json:"upsertWorkloads,omitempty"`
	RemoveWorkloads  []string        `json:"removeWorkloads,omitempty"`
	UpsertSites      []SiteRules     `json:"upsertSites,omitempty"`
	RemoveSites      []string        `json:"removeSites,omitempty"`
	// Routes, when not nil, replaces the view's routes (an empty list
	// removes them all).
	Routes *[]Route `json:"routes,omitempty"`
}

// Empty reports whether the delta changes nothing but the version.
func (d *Delta) Empty() bool {
	return len(d.UpsertPeers)+len(d.RemovePeers)+len(d.UpsertIdentities)+len(d.RemoveIdentities)+
		len(d.UpsertWorkloads)+len(d.RemoveWorkloads)+len(d.UpsertSites)+len(d.RemoveSites) == 0 && d.Routes == nil
}

// Diff computes the delta from old to cur. Both must be sorted as views
// are (peers by node, identities by address, workloads by key).
func Diff(old, cur *View) Delta {
	d := Delta{Node: cur.Node, Base: old.Version, Version: cur.Version}
	diffSorted(old.Peers, cur.Peers, func(p Peer) string { return p.Node },
		func(p Peer) { d.UpsertPeers = append(d.UpsertPeers, p) },
		func(p Peer) { d.RemovePeers = append(d.RemovePeers, p.Node) })
	diffSortedAddr(old.Identities, cur.Identities,
		func(e IdentityEntry) { d.UpsertIdentities = append(d.UpsertIdentities, e) },
		func(e IdentityEntry) { d.RemoveIdentities = append(d.RemoveIdentities, e.IP) })
	diffSorted(old.Workloads, cur.Workloads, func(w WorkloadRules) string { return w.Workload },
		func(w WorkloadRules) { d.UpsertWorkloads = append(d.UpsertWorkloads, w) },
		func(w WorkloadRules) { d.RemoveWorkloads = append(d.RemoveWorkloads, w.Workload) })
	diffSorted(old.Sites, cur.Sites, func(s SiteRules) string { return s.Site },
		func(s SiteRules) { d.UpsertSites = append(d.UpsertSites, s) },
		func(s SiteRules) { d.RemoveSites = append(d.RemoveSites, s.Site) })
	if !slices.Equal(old.Routes, cur.Routes) {
		rs := slices.Clone(cur.Routes)
		if rs == nil {
			rs = []Route{}
		}
		d.Routes = &rs
	}
	return d
}

// diffSorted walks two lists sorted by key and reports entries to upsert
// (new or changed) and to remove.
func diffSorted[T any](old, cur []T, key func(T) string, upsert, remove func(T)) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && key(old[i]) < key(cur[j])):
			remove(old[i])
			i++
		case i == len(old) || key(cur[j]) < key(old[i]):
			upsert(cur[j])
			j++
		default:
			if !reflect.DeepEqual(old[i], cur[j]) {
				upsert(cur[j])
			}
			i++
			j++
		}
	}
}

func diffSortedAddr(old, cur []IdentityEntry, upsert, remove func(IdentityEntry)) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i].IP.Compare(cur[j].IP) < 0):
			remove(old[i])
			i++
		case i == len(old) || cur[j].IP.Compare(old[i].IP) < 0:
			upsert(cur[j])
			j++
		default:
			if old[i] != cur[j] {
				upsert(cur[j])
			}
			i++
			j++
		}
	}
}

// ErrBase is returned by Apply when the delta does not start from the
// view's version; the receiver must ask for a full view.
var ErrBase = fmt.Errorf("view delta does not apply: base version differs")

// Apply returns the view that d makes of v; v is not modified.
func (d *Delta) Apply(v *View) (*View, error) {
	if v.Version != d.Base || v.Node != d.Node {
		return nil, fmt.Errorf("%w (have %s@%d, delta %s@%d→%d)", ErrBase, v.Node, v.Version, d.Node, d.Base, d.Version)
	}
	out := &View{Node: v.Node, Version: d.Version}
	out.Peers = mergeSorted(v.Peers, d.UpsertPeers, d.RemovePeers,
		func(p Peer) string { return p.Node })
	out.Workloads = mergeSorted(v.Workloads, d.UpsertWorkloads, d.RemoveWorkloads,
		func(w WorkloadRules) string { return w.Workload })
	out.Sites = mergeSorted(v.Sites, d.UpsertSites, d.RemoveSites,
		func(s SiteRules) string { return s.Site })
	out.Routes = v.Routes
	if d.Routes != nil {
		out.Routes = slices.Clone(*d.Routes)
		if len(out.Routes) == 0 {
			out.Routes = nil
		}
	}
	gone := make(map[Addr]bool, len(d.RemoveIdentities))
	for _, a := range d.RemoveIdentities {
		gone[a] = true
	}
	byAddr := make(map[Addr]IdentityEntry, len(d.UpsertIdentities))
	for _, e := range d.UpsertIdentities {
		byAddr[e.IP] = e
	}
	for _, e := range v.Identities {
		if gone[e.IP] {
			continue
		}
		if u, ok := byAddr[e.IP]; ok {
			e = u
			delete(byAddr, e.IP)
		}
		out.Identities = append(out.Identities, e)
	}
	for _, e := range byAddr {
		out.Identities = append(out.Identities, e)
	}
	slices.SortFunc(out.Identities, func(a, b IdentityEntry) int { return a.IP.Compare(b.IP) })
	return out, nil
}

func mergeSorted[T any](base, upsert []T, remove []string, key func(T) string) []T {
	gone := make(map[string]bool, len(remove))
	for _, r := range remove {
		gone[r] = true
	}
	up := make(map[string]T, len(upsert))
	for _, u := range upsert {
		up[key(u)] = u
	}
	var out []T
	for _, b := range base {
		k := key(b)
		if gone[k] {
			continue
		}
		if u, ok := up[k]; ok {
			b = u
			delete(up, k)
		}
		out = append(out, b)
	}
	for _, u := range up {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	return out
}

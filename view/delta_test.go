package view

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestDeltaRoundTrip(t *testing.T) {
	old := &View{Node: "a", Version: 3,
		Peers: []Peer{{Node: "b", AllowedIPs: []Prefix{MustPrefix("100.64.0.2/32")}}, {Node: "c"}},
		Identities: []IdentityEntry{
			{MustAddr("100.64.0.1"), 256}, {MustAddr("100.64.0.2"), 257}, {MustAddr("100.64.0.3"), 258}},
		Workloads: []WorkloadRules{{Workload: "x/a", IP: MustAddr("100.64.0.1"), Identity: 256}},
	}
	cur := &View{Node: "a", Version: 5,
		Peers: []Peer{{Node: "b", AllowedIPs: []Prefix{MustPrefix("100.64.0.2/32"), MustPrefix("100.64.0.9/32")}}, {Node: "d"}},
		Identities: []IdentityEntry{
			{MustAddr("100.64.0.1"), 256}, {MustAddr("100.64.0.2"), 300}, {MustAddr("100.64.0.9"), 259}},
		Workloads: []WorkloadRules{{Workload: "x/a", IP: MustAddr("100.64.0.1"), Identity: 256, Ingress: Rules{Isolated: true}}},
	}
	d := Diff(old, cur)
	if d.Base != 3 || d.Version != 5 {
		t.Fatalf("versions %d→%d", d.Base, d.Version)
	}
	if got, want := len(d.UpsertPeers), 2; got != want { // b changed, d new
		t.Errorf("upsert peers = %d, want %d", got, want)
	}
	if !reflect.DeepEqual(d.RemovePeers, []string{"c"}) || !reflect.DeepEqual(d.RemoveIdentities, []Addr{MustAddr("100.64.0.3")}) {
		t.Errorf("removals: %v %v", d.RemovePeers, d.RemoveIdentities)
	}
	got, err := d.Apply(old)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cur) {
		t.Errorf("Apply(Diff) = %+v\nwant %+v", got, cur)
	}
	if same := Diff(cur, cur); !same.Empty() {
		t.Errorf("diff of a view with itself is not empty: %+v", same)
	}
	stale := *old
	stale.Version = 2
	if _, err := d.Apply(&stale); !errors.Is(err, ErrBase) {
		t.Errorf("Apply on another base: %v, want ErrBase", err)
	}
}

func TestDeltaSites(t *testing.T) {
	old := &View{Node: "gw", Version: 1, Sites: []SiteRules{
		{Site: "eu/db", CIDRs: []Prefix{MustPrefix("198.19.1.0/24")}},
		{Site: "eu/old", CIDRs: []Prefix{MustPrefix("198.19.9.0/24")}}}}
	cur := &View{Node: "gw", Version: 2, Sites: []SiteRules{
		{Site: "eu/db", CIDRs: []Prefix{MustPrefix("198.19.1.0/25")}, Ingress: Rules{Isolated: true}},
		{Site: "eu/new", CIDRs: []Prefix{MustPrefix("198.19.2.0/24")}}}}
	d := Diff(old, cur)
	if len(d.UpsertSites) != 2 || !reflect.DeepEqual(d.RemoveSites, []string{"eu/old"}) || d.Empty() {
		t.Fatalf("delta: %+v", d)
	}
	got, err := d.Apply(old)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cur) {
		t.Errorf("Apply(Diff) = %+v\nwant %+v", got, cur)
	}
}

func TestDeltaRoutes(t *testing.T) {
	r1 := Route{Prefix: MustPrefix("198.19.1.0/24"), Primary: true}
	r2 := Route{Prefix: MustPrefix("198.19.2.0/24")}
	steps := [][]Route{nil, {r1}, {r1, r2}, {r2}, nil}
	for i := 1; i < len(steps); i++ {
		old := &View{Node: "gw", Version: uint64(i), Routes: steps[i-1]}
		cur := &View{Node: "gw", Version: uint64(i + 1), Routes: steps[i]}
		d := Diff(old, cur)
		if d.Empty() {
			t.Fatalf("step %d: routes %v → %v gave an empty delta", i, steps[i-1], steps[i])
		}
		got, err := d.Apply(old)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, cur) {
			t.Errorf("step %d: Apply(Diff) = %+v, want %+v", i, got, cur)
		}
		// The delta survives the wire.
		b, _ := json.Marshal(d)
		var back Delta
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got, _ := back.Apply(old); !reflect.DeepEqual(got, cur) {
			t.Errorf("step %d: delta through JSON %s applies to %+v", i, b, got)
		}
	}
	same := &View{Node: "gw", Version: 2, Routes: []Route{r1}}
	if d := Diff(&View{Node: "gw", Version: 1, Routes: []Route{r1}}, same); !d.Empty() {
		t.Errorf("unchanged routes gave %+v", d)
	}
}

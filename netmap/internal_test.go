package netmap

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

func TestSubtract(t *testing.T) {
	p := netip.MustParsePrefix
	for _, c := range []struct {
		cidr   string
		except []string
		want   []string
	}{
		{"10.0.0.0/8", nil, []string{"10.0.0.0/8"}},
		{"10.0.0.0/30", []string{"10.0.0.1/32"}, []string{"10.0.0.0/32", "10.0.0.2/31"}},
		{"10.0.0.0/8", []string{"10.128.0.0/9"}, []string{"10.0.0.0/9"}},
		{"10.0.0.0/24", []string{"10.0.0.0/26", "10.0.0.192/26"}, []string{"10.0.0.64/26", "10.0.0.128/26"}},
		{"10.0.0.0/24", []string{"10.0.0.0/25", "10.0.0.128/25"}, nil},
	} {
		var ex []netip.Prefix
		for _, e := range c.except {
			ex = append(ex, p(e))
		}
		var got []string
		for _, q := range subtract(p(c.cidr), ex) {
			got = append(got, q.String())
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("%s minus %v (-want +got):\n%s", c.cidr, c.except, d)
		}
	}
}

func TestFlatten(t *testing.T) {
	tcp := func(lo, hi uint16) view.PortRange {
		return view.PortRange{Protocol: inventory.TCP, First: lo, Last: hi}
	}
	p := view.MustPrefix
	got := flatten(map[view.Prefix]portSet{
		p("10.0.0.0/8"):  {tcp(80, 80)},
		p("10.1.0.0/16"): {tcp(443, 443)},
		p("10.1.2.0/24"): {tcp(81, 81)},
		p("11.0.0.0/8"):  {tcp(22, 22)},
	})
	want := []view.CIDRRule{
		{Prefix: p("10.0.0.0/8"), Ports: []view.PortRange{tcp(80, 80)}},
		{Prefix: p("10.1.0.0/16"), Ports: []view.PortRange{tcp(80, 80), tcp(443, 443)}},
		{Prefix: p("10.1.2.0/24"), Ports: []view.PortRange{tcp(80, 81), tcp(443, 443)}},
		{Prefix: p("11.0.0.0/8"), Ports: []view.PortRange{tcp(22, 22)}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("flatten (-want +got):\n%s", d)
	}
}

func TestNormalize(t *testing.T) {
	r := func(p inventory.Protocol, lo, hi uint16) view.PortRange {
		return view.PortRange{Protocol: p, First: lo, Last: hi}
	}
	got := portSet{r(inventory.UDP, 53, 53), r(inventory.TCP, 90, 100), r(inventory.TCP, 80, 89), r(inventory.TCP, 95, 120), r(inventory.SCTP, 1, 2)}.normalize()
	want := portSet{r(inventory.SCTP, 1, 2), r(inventory.TCP, 80, 120), r(inventory.UDP, 53, 53)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("normalize (-want +got):\n%s", d)
	}
	if !intersects(portSet{r(inventory.TCP, 1, 10)}, portSet{r(inventory.TCP, 10, 20)}) || intersects(portSet{r(inventory.TCP, 1, 10)}, portSet{r(inventory.UDP, 1, 10)}) {
		t.Error("intersects is wrong")
	}
}

func TestErrors(t *testing.T) {
	e, err := New(Input{Baseline: "deny", Namespaces: []inventory.Namespace{{Name: "x"}},
		Nodes: []inventory.Node{{Name: "n1", Namespace: "x", IP: netip.MustParseAddr("100.64.0.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.UpsertWorkload(inventory.Workload{Name: "a", Namespace: "x", Node: "nope", IP: netip.MustParseAddr("100.64.0.2")}); err == nil {
		t.Error("workload on an unknown node accepted")
	}
	if _, err := e.UpsertWorkload(inventory.Workload{Name: "n1", Namespace: "x", Node: "n1", IP: netip.MustParseAddr("100.64.0.2")}); err == nil {
		t.Error("workload named like its node accepted")
	}
	if _, err := e.DeleteWorkload("x/n1"); err == nil {
		t.Error("deleting the node's own workload accepted")
	}
	if _, err := e.SetBaseline("maybe"); err == nil {
		t.Error("bad baseline accepted")
	}
	if _, err := New(Input{Baseline: "open"}); err == nil {
		t.Error("bad baseline accepted by New")
	}
}

package suggest

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type recording struct {
	Workloads []inventory.Workload `json:"workloads"`
	Recorded  []recordedFlow       `json:"flows"`
	Flows     []Flow               `json:"-"`
}

// recordedFlow is a flow of a recording; the workloads its ends belonged
// to when stored default to those of the recording's inventory.
type recordedFlow struct {
	Src, Dst                 netip.Addr
	Protocol                 inventory.Protocol
	Port                     uint16
	Reporter                 string
	SrcWorkload, DstWorkload *string
}

func load(t *testing.T, name string) recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var r recording
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	key := map[netip.Addr]string{}
	for _, w := range r.Workloads {
		key[w.IP] = w.Key()
	}
	for _, f := range r.Recorded {
		sw, dw := key[f.Src], key[f.Dst]
		if f.SrcWorkload != nil {
			sw = *f.SrcWorkload
		}
		if f.DstWorkload != nil {
			dw = *f.DstWorkload
		}
		r.Flows = append(r.Flows, Flow{Src: f.Src, Dst: f.Dst, Protocol: f.Protocol, Port: f.Port, Reporter: f.Reporter, SrcWorkload: sw, DstWorkload: dw})
	}
	return r
}

// TestGolden: the suggestion for each namespace of the recorded shop
// flows, compared with testdata/<recording>-<namespace>.golden.yaml (go
// test -update rewrites them), parses and validates as `latch policy
// apply` does.
func TestGolden(t *testing.T) {
	rec := load(t, "shop.json")
	for _, ns := range []string{"shop", "monitoring"} {
		t.Run(ns, func(t *testing.T) {
			res, err := Suggest(Input{Namespace: ns, Workloads: rec.Workloads, Flows: rec.Flows})
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(res, fmt.Sprintf("suggested for namespace %s from %d flows", ns, res.Flows))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "shop-"+ns+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("suggestion differs from %s (-want +got):\n%s", golden, d)
			}
			ps, err := policy.Parse(golden, got)
			if err != nil {
				t.Fatalf("the suggestion does not validate: %v", err)
			}
			if len(ps) != len(res.Policies) {
				t.Fatalf("parsed %d policies, suggested %d", len(ps), len(res.Policies))
			}
		})
	}
}

// TestSuggestedPoliciesAllowObservedFlows generates random inventories
// on three nodes and flows, each reported by the nodes of both ends; the
// suggestions of every namespace together, evaluated by the reference
// policy.Evaluator with the deny baseline, allow every observed flow
// between workloads and deny every flow on a port never observed. Claims
// of one end's node alone (flows the other end's node never reported)
// are never allowed between workloads of different nodes.
func TestSuggestedPoliciesAllowObservedFlows(t *testing.T) {
	apps := []string{"web", "api", "db", "cache"}
	nss := []string{"a", "b", "c"}
	protos := []inventory.Protocol{inventory.TCP, inventory.UDP, inventory.SCTP}
	for seed := uint64(0); seed < 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		var ws []inventory.Workload
		n := 2 + r.IntN(10)
		for i := range n {
			l := map[string]string{}
			switch r.IntN(3) {
			case 0:
				l["app"] = apps[r.IntN(len(apps))]
			case 1:
				l["role"] = apps[r.IntN(len(apps))]
				l["zone"] = fmt.Sprint(r.IntN(2))
			}
			ws = append(ws, inventory.Workload{Name: fmt.Sprintf("w%d", i), Namespace: nss[r.IntN(len(nss))], Labels: l,
				Node: fmt.Sprintf("n%d", r.IntN(3)), IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(10 + i)})})
		}
		var flows, observed, claims []Flow
		for i := range 1 + r.IntN(20) {
			s, d := ws[r.IntN(n)], ws[r.IntN(n)]
			f := Flow{Src: s.IP, Dst: d.IP, Protocol: protos[r.IntN(len(protos))], Port: uint16(1000 + r.IntN(5)), SrcWorkload: s.Key(), DstWorkload: d.Key()}
			observed = append(observed, f)
			for _, reporter := range []string{s.Node, d.Node} {
				f.Reporter = reporter
				flows = append(flows, f)
			}
			// A claim of one end's node only, or of a node hosting
			// neither end, on a port no other flow uses.
			c := f
			c.Port = uint16(2000 + i)
			c.Reporter = []string{s.Node, d.Node, "n9"}[r.IntN(3)]
			if s.Node != d.Node || c.Reporter == "n9" {
				claims = append(claims, c)
			}
			flows = append(flows, c)
		}
		var ps []*policy.Policy
		for _, ns := range nss {
			res, err := Suggest(Input{Namespace: ns, Workloads: ws, Flows: flows})
			if err != nil {
				t.Fatal(err)
			}
			out, err := YAML(res, "")
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := policy.Parse("suggestion", out)
			if err != nil {
				t.Fatalf("seed %d: suggestion for %s does not validate: %v\n%s", seed, ns, err, out)
			}
			ps = append(ps, parsed...)
		}
		var namespaces []inventory.Namespace
		for _, ns := range nss {
			namespaces = append(namespaces, inventory.Namespace{Name: ns})
		}
		ev := policy.NewEvaluator(namespaces, ps, policy.BaselineDeny)
		byIP := map[netip.Addr]*inventory.Workload{}
		for i := range ws {
			byIP[ws[i].IP] = &ws[i]
		}
		for _, f := range observed {
			if v := ev.Decide(byIP[f.Src], byIP[f.Dst], f.Protocol, f.Port); !v.Allowed {
				t.Fatalf("seed %d: observed flow %+v is not allowed by the suggestion: %+v", seed, f, v)
			}
		}
		for _, f := range claims {
			if v := ev.Decide(byIP[f.Src], byIP[f.Dst], f.Protocol, f.Port); v.Allowed {
				t.Fatalf("seed %d: %+v, claimed by one end's node only, is allowed by the suggestion", seed, f)
			}
		}
		for _, s := range ws {
			for _, d := range ws {
				if v := ev.Decide(&s, &d, inventory.TCP, 999); v.Allowed {
					t.Fatalf("seed %d: %s -> %s tcp/999 was never observed but is allowed", seed, s.Key(), d.Key())
				}
			}
		}
	}
}

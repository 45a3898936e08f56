package netmap

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/view"
)

// TestModeSwitch switches one namespace's mode in random worlds: exactly
// the nodes hosting a workload of that namespace (the nodes themselves
// included) get a new view, and the new view differs from the old one
// only in the Monitor flag of those workloads.
func TestModeSwitch(t *testing.T) {
	for seed := uint64(0); seed < 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			w := newWorld(r)
			e, err := New(w.input())
			if err != nil {
				t.Fatal(err)
			}
			i := r.IntN(len(w.namespaces))
			ns := &w.namespaces[i]
			var want []string
			for _, wl := range w.all() {
				if wl.Namespace == ns.Name && !slices.Contains(want, wl.Node) {
					want = append(want, wl.Node)
				}
			}
			slices.Sort(want)
			before := map[string]*view.View{}
			for _, n := range e.Nodes() {
				before[n] = e.View(n)
			}
			ns.Monitor = !ns.Monitor
			changed, err := e.UpsertNamespace(*ns)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, changed); d != "" {
				t.Fatalf("switching %s to monitor=%v: changed nodes (-want +got):\n%s", ns.Name, ns.Monitor, d)
			}
			for _, n := range changed {
				old, cur := before[n], e.View(n)
				flipped := *cur
				flipped.Version = old.Version
				flipped.Workloads = slices.Clone(cur.Workloads)
				for j := range flipped.Workloads {
					wr := &flipped.Workloads[j]
					if ns2, _, _ := strings.Cut(wr.Workload, "/"); ns2 == ns.Name {
						if wr.Monitor != ns.Monitor {
							t.Fatalf("node %s workload %s: Monitor = %v, want %v", n, wr.Workload, wr.Monitor, ns.Monitor)
						}
						wr.Monitor = !ns.Monitor
					}
				}
				if !reflect.DeepEqual(old, &flipped) {
					t.Fatalf("node %s: the view changed beyond the Monitor flags:\nold %+v\nnew %+v", n, old, cur)
				}
			}
		})
	}
}

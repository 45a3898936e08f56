package netmap

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/latchnet/latch/view"
)

// TestModeSwitch switches one namespace's mode in random worlds and back:
// every node hosting a workload of that namespace (the nodes themselves
// included) gets a new view whose rule tables for those workloads carry
// the new mode; switching back restores every view as it was. Which other
// nodes change (monitor mode opens the namespace's workloads to every
// partner in peers and identities) is checked, with every other change,
// by TestIncrementalMatchesFull and TestViewsMatchEvaluator.
func TestModeSwitch(t *testing.T) {
	for seed := uint64(0); seed < 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			w := newWorld(r)
			e, err := New(w.input())
			if err != nil {
				t.Fatal(err)
			}
			ns := &w.namespaces[r.IntN(len(w.namespaces))]
			hosts := map[string]bool{}
			for _, wl := range w.all() {
				if wl.Namespace == ns.Name {
					hosts[wl.Node] = true
				}
			}
			before := map[string]*view.View{}
			for _, n := range e.Nodes() {
				before[n] = e.View(n)
			}
			ns.Monitor = !ns.Monitor
			changed, err := e.UpsertNamespace(*ns)
			if err != nil {
				t.Fatal(err)
			}
			for h := range hosts {
				if !slices.Contains(changed, h) {
					t.Fatalf("switching %s to monitor=%v: node %s hosts a workload of it but its view did not change (changed: %v)", ns.Name, ns.Monitor, h, changed)
				}
				for _, wr := range e.View(h).Workloads {
					if wns, _, _ := strings.Cut(wr.Workload, "/"); wns == ns.Name && wr.Monitor != ns.Monitor {
						t.Fatalf("node %s workload %s: Monitor = %v, want %v", h, wr.Workload, wr.Monitor, ns.Monitor)
					}
				}
			}
			checkViews(t, w, e)
			ns.Monitor = !ns.Monitor
			if _, err := e.UpsertNamespace(*ns); err != nil {
				t.Fatal(err)
			}
			for n, old := range before {
				cur := *e.View(n)
				cur.Version = old.Version
				if !reflect.DeepEqual(old, &cur) {
					t.Fatalf("node %s: switching the mode back did not restore the view:\nold %+v\nnew %+v", n, old, &cur)
				}
			}
		})
	}
}

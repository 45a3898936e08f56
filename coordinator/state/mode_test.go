package state

import (
	"context"
	"testing"

	"github.com/latchnet/latch/coordinator/store"
)

// TestModeSwitchReachesViews: switching prod to monitor publishes new
// views for both nodes of prod, with the mode in their rule tables and the
// nodes made peers (no policy allows anything, the baseline denies); it
// survives a restart from the store; switching back removes both.
func TestModeSwitchReachesViews(t *testing.T) {
	e := newEnv(t)
	e.token("t", 2)
	e.enroll("t", "a")
	e.enroll("t", "b")
	e.register("a")
	e.register("b")
	ctx := context.Background()
	check := func(monitor bool) {
		t.Helper()
		for _, n := range []string{"a", "b"} {
			v := e.s.View(n)
			if v == nil || len(v.Workloads) != 1 || v.Workloads[0].Monitor != monitor {
				t.Fatalf("node %s: view %+v, want its rule table with Monitor=%v", n, v, monitor)
			}
			other := map[string]string{"a": "b", "b": "a"}[n]
			if got := e.peers(n)[other]; got != monitor {
				t.Fatalf("node %s: peer %s = %v, want %v", n, other, got, monitor)
			}
		}
	}
	check(false)
	before := e.s.View("a").Version
	if err := e.s.PutNamespace(ctx, "admin", store.Namespace{Name: "prod", Mode: store.ModeMonitor}); err != nil {
		t.Fatal(err)
	}
	check(true)
	if e.s.View("a").Version <= before {
		t.Fatal("the mode switch did not publish a newer view")
	}
	e.open() // a restarted coordinator reads the mode from the store
	check(true)
	if err := e.s.PutNamespace(ctx, "admin", store.Namespace{Name: "prod", Mode: store.ModeEnforce}); err != nil {
		t.Fatal(err)
	}
	check(false)
}

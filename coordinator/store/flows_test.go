package store

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestFlows(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mk := func(i int, ns, verdict string) Flow {
		return Flow{Time: t0.Add(time.Duration(i) * time.Minute), End: t0.Add(time.Duration(i)*time.Minute + time.Second),
			Reporter: "n1", Direction: "ingress",
			Src:      FlowEnd{Namespace: "client", Workload: "c", Node: "n2", IP: netip.MustParseAddr("100.64.0.2")},
			Dst:      FlowEnd{Namespace: ns, Workload: "w", Node: "n1", IP: netip.MustParseAddr("100.64.0.1")},
			Protocol: "tcp", Port: 8080, Verdict: verdict, Reason: "policy", Packets: uint64(i + 1), Bytes: 60}
	}
	var in []Flow
	for i := range 10 {
		ns, v := "prod", "allowed"
		if i%2 == 1 {
			ns, v = "dev", "would-deny"
		}
		in = append(in, mk(i, ns, v))
	}
	if err := s.Update(ctx, func(tx Tx) error { return tx.InsertFlows(in) }); err != nil {
		t.Fatal(err)
	}
	list := func(q FlowQuery) []Flow {
		t.Helper()
		var out []Flow
		if err := s.View(ctx, func(tx Tx) error {
			var err error
			out, err = tx.ListFlows(q)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := list(FlowQuery{})
	if len(all) != 10 || all[0].Packets != 1 || all[9].Packets != 10 || all[3].ID <= all[2].ID {
		t.Fatalf("all flows, oldest first: %+v", all)
	}
	if got := all[1]; got.Src.IP != in[1].Src.IP || got.Dst != in[1].Dst || !got.Time.Equal(in[1].Time) || got.Verdict != "would-deny" || got.Port != 8080 {
		t.Fatalf("round trip: %+v, want %+v", got, in[1])
	}
	if got := list(FlowQuery{Namespace: "dev"}); len(got) != 5 || got[0].Dst.Namespace != "dev" {
		t.Fatalf("namespace dev: %d flows", len(got))
	}
	if got := list(FlowQuery{Namespace: "client"}); len(got) != 10 {
		t.Fatalf("namespace of the source: %d flows, want 10", len(got))
	}
	if got := list(FlowQuery{Verdict: "allowed", Since: t0.Add(4 * time.Minute)}); len(got) != 3 {
		t.Fatalf("allowed since +4m: %d flows, want 3", len(got))
	}
	if got := list(FlowQuery{AfterID: all[7].ID}); len(got) != 2 {
		t.Fatalf("after id: %d flows, want 2", len(got))
	}
	if got := list(FlowQuery{AfterID: all[1].ID, Limit: 2}); len(got) != 2 || got[0].ID != all[2].ID || got[1].ID != all[3].ID {
		t.Fatalf("a page after id keeps the oldest: %+v", got)
	}
	if got := list(FlowQuery{Limit: 3}); len(got) != 3 || got[2].ID != all[9].ID {
		t.Fatalf("limit keeps the newest: %+v", got)
	}
	var n int64
	if err := s.Update(ctx, func(tx Tx) error {
		var err error
		n, err = tx.PruneFlows(t0.Add(2*time.Minute), 5)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	left := list(FlowQuery{})
	if n != 5 || len(left) != 5 || left[0].ID != all[5].ID {
		t.Fatalf("prune by age (2) and size (5): deleted %d, left %d from id %d", n, len(left), left[0].ID)
	}
}

package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/suggest"
	"github.com/latchnet/latch/wire"
)

// suggest answers the NetworkPolicy YAML that allows exactly the traffic
// of namespace :name observed since ?since= (default 24h): the flows with
// the verdict allowed or would-deny (denied traffic is not learned). Each
// rule is learned only from reports of the node hosting the workload the
// rule belongs to, and names those nodes (suggest.Suggest).
func (s *Server) suggest(c echo.Context) error {
	ns := c.Param("name")
	sinceArg := c.QueryParam("since")
	if sinceArg == "" {
		sinceArg = "24h"
	}
	now := s.cfg.Now()
	since, err := parseSince(sinceArg, now)
	if err != nil {
		return fail(http.StatusBadRequest, "invalid", "since=%q: want a duration such as 10m or 24h, or an RFC 3339 time", sinceArg)
	}
	ctx := c.Request().Context()
	var in suggest.Input
	in.Namespace = ns
	err = s.cfg.State.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNamespace(ns); err != nil {
			return err // it names the namespace
		}
		ws, err := tx.ListWorkloads()
		if err != nil {
			return err
		}
		nodes, err := tx.ListNodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			in := inventory.Node{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, IP: n.IP}
			ws = append(ws, in.AsWorkload())
		}
		in.Workloads = ws
		return nil
	})
	if err != nil {
		return err
	}
	n := 0
	for _, verdict := range []string{wire.VerdictAllowed, wire.VerdictWouldDeny} {
		q := store.FlowQuery{Namespace: ns, Verdict: verdict, Since: since, Oldest: true}
		for {
			fs, err := s.cfg.State.Flows(ctx, q)
			if err != nil {
				return err
			}
			for _, f := range fs {
				in.Flows = append(in.Flows, suggest.Flow{Src: f.Src.IP, Dst: f.Dst.IP, Protocol: inventory.Protocol(f.Protocol), Port: f.Port,
					Reporter: f.Reporter, SrcWorkload: endKey(f.Src), DstWorkload: endKey(f.Dst)})
				q.AfterID = max(q.AfterID, f.ID)
			}
			n += len(fs)
			if len(fs) < store.MaxFlowQuery {
				break
			}
		}
	}
	res, err := suggest.Suggest(in)
	if err != nil {
		return fmt.Errorf("%w: %v", state.ErrInvalid, err)
	}
	header := fmt.Sprintf("Suggested by latch for namespace %s from %d flow records (%d distinct flows) since %s.\n"+
		"Review, then: latch policy apply -f FILE && latch admin namespace set %s --mode enforce",
		ns, n, res.Flows, since.UTC().Format(time.RFC3339), ns)
	if res.Unverified > 0 {
		header += fmt.Sprintf("\n%d flow reports are left out: their node hosts no end of the flow in %s, and a node is believed only about its own workloads.", res.Unverified, ns)
	}
	if res.Stale > 0 {
		header += fmt.Sprintf("\n%d flow reports are left out: an address of theirs now belongs to another workload than when they were stored.", res.Stale)
	}
	if res.Skipped > 0 {
		header += fmt.Sprintf("\n%d flows of protocols NetworkPolicy cannot name (ICMP) are left out.", res.Skipped)
	}
	if len(res.Policies) == 0 {
		header += "\nNo traffic observed: nothing to allow."
	}
	out, err := suggest.YAML(res, header)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml", out)
}

// endKey is the workload "namespace/name" the coordinator resolved a flow
// end to when it stored the flow, "" for none.
func endKey(e store.FlowEnd) string {
	if e.Workload == "" {
		return ""
	}
	return e.Namespace + "/" + e.Workload
}

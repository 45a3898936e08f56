package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// flows stores a node's flow records (node API, mTLS). The node's
// identity comes from its certificate; records whose local side is not
// one of its workloads are refused and counted.
func (s *Server) flows(c echo.Context) error {
	var b wire.FlowBatch
	if err := bindWire(c, &b); err != nil {
		return err
	}
	if len(b.Records) > wire.MaxFlowBatch {
		return fail(http.StatusRequestEntityTooLarge, "too_large", "%d flow records in one batch, at most %d: send smaller batches", len(b.Records), wire.MaxFlowBatch)
	}
	node := nodeOf(c).Name
	res, err := s.cfg.State.IngestFlows(c.Request().Context(), node, b.Records)
	if err != nil {
		return err
	}
	s.metrics.flowsIngested(res.Accepted, res.Rejected, b.Dropped)
	if res.Rejected > 0 {
		s.cfg.Log.Warn("refused flow records", "node", node, "rejected", res.Rejected, "first", res.FirstRejection)
	}
	return c.JSON(http.StatusOK, wire.FlowBatchResponse{Accepted: res.Accepted, Rejected: res.Rejected, Message: res.FirstRejection})
}

// flowQuery reads the filters of /v1/admin/flows: namespace, verdict
// (allowed, denied, would-deny), since (a Go duration back from now, or
// an RFC 3339 time), after (a flow id), limit.
func (s *Server) flowQuery(c echo.Context) (store.FlowQuery, error) {
	q := store.FlowQuery{Namespace: c.QueryParam("namespace"), Verdict: c.QueryParam("verdict")}
	switch q.Verdict {
	case "", wire.VerdictAllowed, wire.VerdictDenied, wire.VerdictWouldDeny:
	default:
		return q, fail(http.StatusBadRequest, "invalid", "verdict=%q: want allowed, denied or would-deny", q.Verdict)
	}
	if v := c.QueryParam("since"); v != "" {
		since, err := parseSince(v, s.cfg.Now())
		if err != nil {
			return q, fail(http.StatusBadRequest, "invalid", "since=%q: want a duration such as 10m or 24h, or an RFC 3339 time", v)
		}
		q.Since = since
	}
	for name, dst := range map[string]*int64{"after": &q.AfterID} {
		if v := c.QueryParam(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, fail(http.StatusBadRequest, "invalid", "%s=%q: want a flow id (a number)", name, v)
			}
			*dst = n
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return q, fail(http.StatusBadRequest, "invalid", "limit=%q: want a positive number", v)
		}
		q.Limit = n
	}
	return q, nil
}

// parseSince reads a duration back from now or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339, v)
}

// listFlows answers the stored flows matching the filters as a JSON array,
// oldest first; with format=jsonl as a JSON lines file to download (the
// console's export). With follow=true it streams them as JSON lines
// instead, then every new matching flow as it is stored, until the client
// goes away (the console's live tail and `latch flows --follow`). A
// following query authenticates again at least once per keepalive
// interval (Config.Keepalive); when its credential no longer holds, its
// last line is an adminapi.Error (a JSON object with "error" and "code") and
// it ends.
func (s *Server) listFlows(c echo.Context) error {
	q, err := s.flowQuery(c)
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	switch format {
	case "", "json", "jsonl":
	default:
		return fail(http.StatusBadRequest, "invalid", "format=%q: want json (an array) or jsonl (JSON lines)", format)
	}
	ctx := c.Request().Context()
	if c.QueryParam("follow") != "true" && format == "jsonl" {
		return s.exportFlows(c, q)
	}
	if c.QueryParam("follow") != "true" {
		fs, err := s.cfg.State.Flows(ctx, q)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, list(fs, toFlow))
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	enc := json.NewEncoder(w)
	tick := time.NewTicker(s.cfg.FlowPoll)
	defer tick.Stop()
	checked := time.Now()
	for {
		if time.Since(checked) >= s.cfg.Keepalive {
			checked = time.Now()
			if err := s.adminStillAuthorized(c); err != nil {
				_ = enc.Encode(classify(err).body())
				w.Flush()
				return nil
			}
		}
		fs, err := s.cfg.State.Flows(ctx, q)
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Log.Warn("following flows", "err", err)
			}
			return nil
		}
		for i := range fs {
			if err := enc.Encode(toFlow(fs[i])); err != nil {
				return nil
			}
			q.AfterID = fs[i].ID
		}
		w.Flush()
		q.Since = time.Time{} // only the first read looks back
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// exportFlows writes the matching flows as a JSON lines attachment, oldest
// first: all of them, a page of store.MaxFlowQuery at a time, unless
// limit= asks for the newest few.
func (s *Server) exportFlows(c echo.Context, q store.FlowQuery) error {
	ctx := c.Request().Context()
	all := q.Limit == 0
	if all {
		q.Oldest = true
	}
	fs, err := s.cfg.State.Flows(ctx, q)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.Header().Set(echo.HeaderContentDisposition, `attachment; filename="latch-flows.jsonl"`)
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for {
		for i := range fs {
			if err := enc.Encode(toFlow(fs[i])); err != nil {
				return nil
			}
			q.AfterID = fs[i].ID
		}
		if !all || len(fs) < store.MaxFlowQuery {
			return nil
		}
		if fs, err = s.cfg.State.Flows(ctx, q); err != nil {
			// The status is sent: end the body short, and say why in the log.
			s.cfg.Log.Warn("exporting flows", "err", err)
			return nil
		}
	}
}

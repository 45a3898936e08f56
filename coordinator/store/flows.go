package store

import (
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// FlowEnd is one end of a flow: the workload the coordinator resolved its
// address to (empty when the address is no known workload).
type FlowEnd struct {
	Namespace string     `json:"namespace,omitempty"`
	Workload  string     `json:"workload,omitempty"` // name within Namespace
	Node      string     `json:"node,omitempty"`     // hosting node
	IP        netip.Addr `json:"ip"`
}

// Flow is a stored flow record: one flow (source, destination, protocol,
// destination port, verdict) in one reporting interval of one node.
type Flow struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"` // interval start
	End       time.Time `json:"end"`
	Reporter  string    `json:"reporter"`  // the node that reported it
	Direction string    `json:"direction"` // ingress or egress at the reporter
	Src       FlowEnd   `json:"src"`
	Dst       FlowEnd   `json:"dst"`
	Protocol  string    `json:"protocol"`
	Port      uint16    `json:"port"`
	Verdict   string    `json:"verdict"`
	Reason    string    `json:"reason,omitempty"`
	Packets   uint64    `json:"packets"`
	Bytes     uint64    `json:"bytes"`
}

// FlowQuery filters ListFlows. Zero fields do not filter.
type FlowQuery struct {
	// Namespace keeps flows with either end in it.
	Namespace string
	Verdict   string
	Since     time.Time // Time >= Since
	AfterID   int64     // ID > AfterID (for following and paging)
	// Limit bounds the answer (default and maximum 10,000). The newest
	// matching flows are kept, returned oldest first; with Oldest or
	// AfterID > 0 the oldest are kept instead, so that pages follow each
	// other.
	Limit  int
	Oldest bool
}

// MaxFlowQuery is the most flows one ListFlows returns.
const MaxFlowQuery = 10000

const flowCols = `id, time, end_time, reporter, direction, src_ns, src_workload, src_node, src_ip,
	dst_ns, dst_workload, dst_node, dst_ip, proto, port, verdict, reason, packets, bytes`

// InsertFlows implements Tx.
func (t *sqlTx) InsertFlows(fs []Flow) error {
	for _, f := range fs {
		start, err := encTime("flow", f.Time)
		if err != nil {
			return err
		}
		end, err := encTime("flow", f.End)
		if err != nil {
			return err
		}
		if start == nil || end == nil {
			return fmt.Errorf("flow from %s: no time", f.Reporter)
		}
		_, err = t.exec(`INSERT INTO flows (time, end_time, reporter, direction, src_ns, src_workload, src_node, src_ip,
	dst_ns, dst_workload, dst_node, dst_ip, proto, port, verdict, reason, packets, bytes)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			start, end, f.Reporter, f.Direction, f.Src.Namespace, f.Src.Workload, f.Src.Node, addrText(f.Src.IP),
			f.Dst.Namespace, f.Dst.Workload, f.Dst.Node, addrText(f.Dst.IP), f.Protocol, int64(f.Port), f.Verdict, f.Reason,
			int64(f.Packets), int64(f.Bytes))
		if err != nil {
			return fmt.Errorf("storing flows: %w", err)
		}
	}
	return nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// ListFlows implements Tx.
func (t *sqlTx) ListFlows(q FlowQuery) ([]Flow, error) {
	var where []string
	var args []any
	if q.Namespace != "" {
		where = append(where, `(src_ns = ? OR dst_ns = ?)`)
		args = append(args, q.Namespace, q.Namespace)
	}
	if q.Verdict != "" {
		where = append(where, `verdict = ?`)
		args = append(args, q.Verdict)
	}
	if !q.Since.IsZero() {
		where = append(where, `time >= ?`)
		args = append(args, q.Since.UnixNano())
	}
	if q.AfterID > 0 {
		where = append(where, `id > ?`)
		args = append(args, q.AfterID)
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxFlowQuery {
		limit = MaxFlowQuery
	}
	sqlq := `SELECT ` + flowCols + ` FROM flows`
	if len(where) > 0 {
		sqlq += ` WHERE ` + strings.Join(where, ` AND `)
	}
	if q.Oldest || q.AfterID > 0 {
		sqlq += ` ORDER BY id LIMIT ?`
		return list(t, "listing flows", sqlq, scanFlow, append(args, limit)...)
	}
	sqlq += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	out, err := list(t, "listing flows", sqlq, scanFlow, args...)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func scanFlow(sc interface{ Scan(...any) error }) (Flow, error) {
	var f Flow
	var start, end sql.NullInt64
	var src, dst string
	var port, packets, bytes int64
	err := sc.Scan(&f.ID, &start, &end, &f.Reporter, &f.Direction, &f.Src.Namespace, &f.Src.Workload, &f.Src.Node, &src,
		&f.Dst.Namespace, &f.Dst.Workload, &f.Dst.Node, &dst, &f.Protocol, &port, &f.Verdict, &f.Reason, &packets, &bytes)
	if err != nil {
		return f, err
	}
	f.Time, f.End = decTime(start), decTime(end)
	f.Src.IP, _ = netip.ParseAddr(src)
	f.Dst.IP, _ = netip.ParseAddr(dst)
	f.Port, f.Packets, f.Bytes = uint16(port), uint64(packets), uint64(bytes)
	return f, nil
}

// PruneFlows implements Tx.
func (t *sqlTx) PruneFlows(before time.Time, maxRows int) (int64, error) {
	var n int64
	res, err := t.exec(`DELETE FROM flows WHERE time < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("pruning flows: %w", err)
	}
	if k, err := res.RowsAffected(); err == nil {
		n += k
	}
	if maxRows > 0 {
		res, err := t.exec(`DELETE FROM flows WHERE id <= (SELECT id FROM flows ORDER BY id DESC LIMIT 1 OFFSET ?)`, maxRows)
		if err != nil {
			return n, fmt.Errorf("pruning flows: %w", err)
		}
		if k, err := res.RowsAffected(); err == nil {
			n += k
		}
	}
	return n, nil
}

package state

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/latchnet/latch/grant"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

// FuzzIngestFlows feeds arbitrary flow batches (JSON, as POST
// /v1/node/flows decodes them) from node-a (workload prod/web at
// 100.64.0.4; node-b hosts prod/api at 100.64.0.5) to IngestFlows, with
// the coordinator's clock at 2026-11-25T12:00:00Z. It never fails or
// panics: every record is accepted or refused (counted, the first reason
// given, short); every stored record passes wire.FlowRecord.Check, names
// node-a as its reporter, and has node-a's workload on its local side.
// Seeds: testdata/fuzz/FuzzIngestFlows.
func FuzzIngestFlows(f *testing.F) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	db, err := store.OpenSQLite(filepath.Join(f.TempDir(), "latch.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	s, err := Open(ctx, db, fanout.New(), Options{Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.AddToken(ctx, "admin", store.Token{ID: "tok", SecretHash: []byte("h"), Namespace: "prod", UsesLeft: 2,
		Workloads: []grant.Workload{{Namespace: "prod", Labels: map[string]string{"app": "web"}}, {Namespace: "prod", Labels: map[string]string{"app": "api"}}},
		ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		f.Fatal(err)
	}
	sign := func(store.Node) (Cert, error) {
		return Cert{Serial: fmt.Sprintf("%x", now.UnixNano()), NotAfter: now.Add(time.Hour)}, nil
	}
	for _, n := range []string{"node-a", "node-b"} {
		if _, err := s.Enroll(ctx, Enrollment{TokenID: "tok", SecretHash: []byte("h"), Name: n}, sign); err != nil {
			f.Fatal(err)
		}
	}
	for _, n := range []struct{ node, workload, ip string }{{"node-a", "web", "100.64.0.4"}, {"node-b", "api", "100.64.0.5"}} {
		_, ws, err := s.Register(ctx, n.node, Registration{PublicKey: "key-" + n.node,
			Workloads: []inventory.Workload{{Name: n.workload, Namespace: "prod", Labels: map[string]string{"app": n.workload}}}})
		if err != nil {
			f.Fatal(err)
		}
		if ws[0].IP != netip.MustParseAddr(n.ip) {
			f.Fatalf("%s got %s, the seeds expect %s", n.workload, ws[0].IP, n.ip)
		}
	}
	var last int64
	f.Fuzz(func(t *testing.T, data []byte) {
		var b wire.FlowBatch
		if json.Unmarshal(data, &b) != nil || len(b.Records) > wire.MaxFlowBatch {
			return
		}
		res, err := s.IngestFlows(ctx, "node-a", b.Records)
		if err != nil {
			t.Fatalf("IngestFlows failed: %v; a bad record must be refused alone", err)
		}
		if res.Accepted+res.Rejected != len(b.Records) || (res.Rejected > 0) != (res.FirstRejection != "") || len(res.FirstRejection) > 400 {
			t.Fatalf("%d records: %+v", len(b.Records), res)
		}
		var fs []store.Flow
		if err := s.Read(ctx, func(tx store.Tx) error {
			var err error
			fs, err = tx.ListFlows(store.FlowQuery{AfterID: last})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(fs) != res.Accepted {
			t.Fatalf("%d records stored, %d accepted", len(fs), res.Accepted)
		}
		for _, fl := range fs {
			last = fl.ID
			r := wire.FlowRecord{Start: fl.Time, End: fl.End, Direction: fl.Direction, Src: fl.Src.IP, Dst: fl.Dst.IP,
				Protocol: fl.Protocol, Port: fl.Port, Verdict: fl.Verdict, Reason: fl.Reason}
			if err := r.Check(); err != nil {
				t.Fatalf("stored flow %+v does not pass Check: %v", fl, err)
			}
			local := fl.Src
			if fl.Direction == wire.DirIngress {
				local = fl.Dst
			}
			if fl.Reporter != "node-a" || local.Node != "node-a" || local.Workload != "web" {
				t.Fatalf("stored flow %+v: want node-a reporting for its own workload", fl)
			}
		}
	})
}

package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// FuzzMessages feeds arbitrary bytes to every message type of the node
// API, as the coordinator (enroll, renew, register, flow batches) and the
// node (SVID and register answers, the view stream) decode them. Decoding
// never panics; a message that decodes re-encodes to JSON that decodes to
// an equal message (a stable round trip); a flow record's Check gives the
// same answer after the round trip, and an accepted record respects the
// bounds; a view delta applies to a full view without panicking, giving
// identities in address order, and its rules answer queries.
// Seeds: testdata/fuzz/FuzzMessages.
func FuzzMessages(f *testing.F) {
	f.Add([]byte(`{"records":[{"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:01Z","direction":"egress","workload":"prod/web",` +
		`"src":"100.64.0.2","dst":"100.64.0.3","protocol":"TCP","port":443,"verdict":"allowed","packets":1,"bytes":60}],"dropped":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip[EnrollRequest](t, data)
		roundTrip[RenewRequest](t, data)
		roundTrip[RegisterRequest](t, data)
		roundTrip[SVIDResponse](t, data)
		roundTrip[RegisterResponse](t, data)
		roundTrip[FlowBatchResponse](t, data)
		roundTrip[Error](t, data)
		if b, ok := roundTrip[FlowBatch](t, data); ok {
			for _, r := range b.Records {
				checkRecord(t, r)
			}
		}
		if m, ok := roundTrip[StreamMessage](t, data); ok && m.Full != nil && m.Delta != nil {
			m.Delta.Base, m.Delta.Node = m.Full.Version, m.Full.Node
			out, err := m.Delta.Apply(m.Full)
			if err != nil {
				t.Fatalf("a delta from the view's own version does not apply: %v", err)
			}
			for i := 1; i < len(out.Identities); i++ {
				if out.Identities[i-1].IP.Compare(out.Identities[i].IP) > 0 {
					t.Fatalf("applied view's identities are not in address order: %v", out.Identities)
				}
			}
			for _, w := range out.Workloads {
				for _, e := range out.Identities {
					w.Ingress.Allows(e.Identity, e.IP, inventory.TCP, 443)
					w.Egress.Allows(e.Identity, e.IP, inventory.UDP, 53)
				}
			}
			out.IdentityOf(view.MustAddr("100.64.0.1"))
		}
	})
}

// roundTrip decodes data as a T; when it decodes, the re-encoded message
// must decode to an equal T and re-encode to the same bytes.
func roundTrip[T any](t *testing.T, data []byte) (T, bool) {
	t.Helper()
	var v T
	if json.Unmarshal(data, &v) != nil {
		return v, false
	}
	enc, err := json.Marshal(&v)
	if err != nil {
		t.Fatalf("%T decodes but does not encode: %v", v, err)
	}
	var again T
	if err := json.Unmarshal(enc, &again); err != nil {
		t.Fatalf("%T re-encoded as %s does not decode: %v", v, enc, err)
	}
	enc2, _ := json.Marshal(&again)
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("%T round trip is not stable:\n%s\n%s", v, enc, enc2)
	}
	return v, true
}

func checkRecord(t *testing.T, r FlowRecord) {
	t.Helper()
	err := r.Check()
	enc, _ := json.Marshal(r)
	var again FlowRecord
	if json.Unmarshal(enc, &again) != nil {
		t.Fatalf("record %s does not decode", enc)
	}
	if err2 := again.Check(); (err == nil) != (err2 == nil) {
		t.Fatalf("Check of %+v: %v; after a round trip: %v", r, err, err2)
	}
	if err != nil {
		if len(err.Error()) > 400 {
			t.Fatalf("Check error is %d bytes long: %.100s…", len(err.Error()), err)
		}
		return
	}
	if len(r.Reason) > MaxFlowReason || len(r.Workload) > MaxFlowWorkload || len(r.Protocol) > 4 ||
		!r.Src.Is4() || !r.Dst.Is4() || r.End.Before(r.Start) {
		t.Fatalf("Check accepted a record out of bounds: %+v", r)
	}
	if !reflect.DeepEqual(again.Reason, r.Reason) || again.Protocol != r.Protocol {
		t.Fatalf("round trip changed %+v into %+v", r, again)
	}
}

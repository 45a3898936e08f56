package state

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/store"
)

// TestPruneAudit: the audit log is bounded by age and by rows; a prune
// that deletes something is itself audited, as one entry, and the bound
// holds with it; a prune with nothing to delete writes nothing.
func TestPruneAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	start := e.now
	for i := range 10 {
		e.now = start.Add(time.Duration(i) * time.Hour)
		e.token(fmt.Sprintf("tok%d", i), 1)
	}
	audit := func() []store.AuditEntry {
		t.Helper()
		var out []store.AuditEntry
		if err := e.s.Read(ctx, func(tx store.Tx) error { var err error; out, err = tx.ListAudit(0); return err }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if n := len(audit()); n != 10 {
		t.Fatalf("%d audit entries, want 10", n)
	}
	// Age: entries older than 3.5 hours (tok0 .. tok5) go.
	n, err := e.s.PruneAudit(ctx, 3*time.Hour+30*time.Minute, 0)
	if err != nil || n != 6 {
		t.Fatalf("prune by age: deleted %d, %v; want 6", n, err)
	}
	got := audit()
	if len(got) != 5 || got[0].Action != "audit.prune" || got[0].Actor != AuditPruneActor || got[1].Object != "tok9" || got[4].Object != "tok6" {
		t.Fatalf("after pruning by age: %+v", got)
	}
	if want := `"deleted":6`; !strings.Contains(got[0].Detail, want) {
		t.Errorf("prune entry detail %s lacks %s", got[0].Detail, want)
	}
	// Rows: at most 3, the new prune entry included: the older prune
	// entry and tok9 stay.
	n, err = e.s.PruneAudit(ctx, 24*time.Hour, 3)
	if err != nil || n != 3 {
		t.Fatalf("prune by rows: deleted %d, %v; want 3", n, err)
	}
	got = audit()
	if len(got) != 3 || got[0].Action != "audit.prune" || got[1].Action != "audit.prune" || got[2].Object != "tok9" {
		t.Fatalf("after pruning by rows: %+v", got)
	}
	// Nothing to delete: nothing written.
	if n, err := e.s.PruneAudit(ctx, 24*time.Hour, 3); err != nil || n != 0 || len(audit()) != 3 {
		t.Fatalf("a prune with nothing to delete: deleted %d, %v, %d entries left; want 0 and 3", n, err, len(audit()))
	}
}

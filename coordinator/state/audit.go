package state

import (
	"context"
	"errors"
	"time"

	"github.com/latchnet/latch/coordinator/store"
)

// AuditPruneActor is the actor of the audit entry a prune writes.
const AuditPruneActor = "coordinator"

// errNothingToPrune ends a prune that deleted nothing, so that it writes
// no entry.
var errNothingToPrune = errors.New("nothing to prune")

// PruneAudit deletes audit entries older than retention and the oldest
// beyond maxRows (no size bound when maxRows <= 0), and records that as
// one audit entry ("audit.prune", with how many it deleted), for which it
// makes room: the log holds at most maxRows entries afterwards (at least
// two: the newest and the prune's own). A prune that deletes nothing
// writes nothing. It returns how many entries it deleted.
func (s *State) PruneAudit(ctx context.Context, retention time.Duration, maxRows int) (int64, error) {
	before := s.opts.Now().Add(-retention)
	var n int64
	detail := map[string]any{"before": before.UTC(), "max_rows": maxRows}
	err := s.change(ctx, "audit.prune", AuditPruneActor, "audit", detail, func(tx store.Tx) ([]string, error) {
		var err error
		if n, err = tx.PruneAudit(before, maxRows); err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, errNothingToPrune
		}
		if maxRows > 0 {
			k, err := tx.PruneAudit(before, max(maxRows-1, 1)) // room for the prune's own entry
			if err != nil {
				return nil, err
			}
			n += k
		}
		detail["deleted"] = n
		return nil, nil
	})
	if errors.Is(err, errNothingToPrune) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

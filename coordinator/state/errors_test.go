package state

import (
	"context"
	"errors"
	"testing"

	"github.com/latchnet/latch/coordinator/store"
)

// TestErrorsNameTheNodeOnce: the store's not-found errors already name
// the node or SPIFFE ID, so the checks of a deleted node's credential
// add only what to do, not the name again.
func TestErrorsNameTheNodeOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"certificate of a deleted node", e.s.CheckCert(ctx, "ghost", "0a"),
			`node "ghost": not found: enroll it again with a new join token`},
		{"SPIFFE ID never admitted", e.s.CheckSpiffeNode(ctx, "spiffe://spire.test/ghost", "ghost"),
			`spiffe node spiffe://spire.test/ghost: not found: the node was deleted`},
	} {
		if !errors.Is(c.err, store.ErrNotFound) || c.err.Error() != c.want {
			t.Errorf("%s: %v, want %q (and store.ErrNotFound)", c.name, c.err, c.want)
		}
	}
}

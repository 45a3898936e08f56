package state

import (
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
)

// PolicyChange is what applying one policy would change: the policy as
// the store holds it now (Before, "" when it is new) and as applying it
// would store it (After), both in PolicyYAML's form.
type PolicyChange struct {
	Key    string // namespace/name
	Before string
	After  string
}

// Changed says whether applying the policy would change what the store
// holds.
func (c PolicyChange) Changed() bool { return c.Before != c.After }

// PolicyChanges computes what applying ps over the stored policies would
// change: one PolicyChange per policy of ps, in the order of ps, unchanged
// ones included. It is pure: the validate endpoint (the console's diff)
// and `latch policy diff` show its result; ApplyPolicies stores the
// After of each.
func PolicyChanges(stored []store.Policy, ps []*policy.Policy) ([]PolicyChange, error) {
	before := make(map[string]string, len(stored))
	for _, sp := range stored {
		before[sp.Namespace+"/"+sp.Name] = sp.YAML
	}
	out := make([]PolicyChange, 0, len(ps))
	for _, p := range ps {
		after, err := PolicyYAML(p)
		if err != nil {
			return nil, err
		}
		out = append(out, PolicyChange{Key: p.Key(), Before: before[p.Key()], After: after})
	}
	return out, nil
}

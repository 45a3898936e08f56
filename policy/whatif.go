package policy

import (
	"errors"
	"fmt"

	"github.com/latchnet/latch/inventory"
)

// ErrNoWorkload is wrapped by the error of WhatIf when it is asked about
// a workload that does not exist.
var ErrNoWorkload = errors.New("no such workload or node")

// UnknownWorkloadError is WhatIf's error for a source or destination that
// names no workload of the inventory.
type UnknownWorkloadError struct {
	Role string // "source" or "destination"
	Key  string // the namespace/name asked for
}

func (e *UnknownWorkloadError) Error() string {
	return fmt.Sprintf("%s %q: %v; give it as NAMESPACE/NAME (see the workloads and nodes lists)", e.Role, e.Key, ErrNoWorkload)
}

// Unwrap returns ErrNoWorkload.
func (e *UnknownWorkloadError) Unwrap() error { return ErrNoWorkload }

// WhatIf answers "may from reach to on proto/port?" for the workloads ws
// (nodes included, as inventory.AllWorkloads gives them), named by their
// keys (namespace/name): the verdict, with the policies that decide it.
// A key that names no workload of ws is an *UnknownWorkloadError.
func (e *Evaluator) WhatIf(ws []inventory.Workload, from, to string, proto inventory.Protocol, port uint16) (Verdict, error) {
	find := func(key, role string) (*inventory.Workload, error) {
		for i := range ws {
			if ws[i].Key() == key {
				return &ws[i], nil
			}
		}
		return nil, &UnknownWorkloadError{Role: role, Key: key}
	}
	src, err := find(from, "source")
	if err != nil {
		return Verdict{}, err
	}
	dst, err := find(to, "destination")
	if err != nil {
		return Verdict{}, err
	}
	return e.Decide(src, dst, proto, port), nil
}

package route

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

var _ Host = (*Fake)(nil)

// Fake is a Host in memory, for tests: a main table, the forwarding
// switch and the SNAT tables by device. Errors set in its fields are
// returned by the matching methods.
type Fake struct {
	mu         sync.Mutex
	table      []KernelRoute
	forwarding bool
	snat       map[string][]netip.Prefix

	// Set to make the matching method fail.
	RoutesErr, AddErr, DelErr, ForwardingErr, EnableErr, SNATErr error
	// SNATCalls counts SetSNAT calls.
	SNATCalls int
}

// NewFake returns a Fake holding the routes of table (of other owners,
// say) with forwarding off.
func NewFake(table ...KernelRoute) *Fake {
	return &Fake{table: table, snat: map[string][]netip.Prefix{}}
}

func (f *Fake) Routes() ([]KernelRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.RoutesErr != nil {
		return nil, f.RoutesErr
	}
	return slices.Clone(f.table), nil
}

func (f *Fake) AddRoute(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.AddErr != nil {
		return f.AddErr
	}
	for _, r := range f.table {
		if r.Prefix == p {
			return fmt.Errorf("%w: %s", ErrExists, p)
		}
	}
	f.table = append(f.table, KernelRoute{Prefix: p, Dev: dev, Protocol: Protocol})
	return nil
}

func (f *Fake) DelRoute(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.DelErr != nil {
		return f.DelErr
	}
	f.table = slices.DeleteFunc(f.table, func(r KernelRoute) bool { return r.Prefix == p && r.Latch(dev) })
	return nil
}

func (f *Fake) Forwarding() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forwarding, f.ForwardingErr
}

func (f *Fake) EnableForwarding() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.EnableErr != nil {
		return f.EnableErr
	}
	f.forwarding = true
	return nil
}

func (f *Fake) SetSNAT(dev string, _ netip.Prefix, snat []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.SNATCalls++
	if f.SNATErr != nil {
		return f.SNATErr
	}
	if len(snat) == 0 {
		delete(f.snat, dev)
	} else {
		f.snat[dev] = slices.Clone(snat)
	}
	return nil
}

// Table returns the routes the Fake holds.
func (f *Fake) Table() []KernelRoute {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.table)
}

// LatchRoutes returns the prefixes of the Latch routes on dev, sorted.
func (f *Fake) LatchRoutes(dev string) []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	for _, r := range f.table {
		if r.Latch(dev) {
			out = append(out, r.Prefix)
		}
	}
	sortPrefixes(out)
	return out
}

// SNAT returns the prefixes masqueraded for dev; nil when dev has no
// SNAT table.
func (f *Fake) SNAT(dev string) []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.snat[dev])
}

// SetForwarding sets the forwarding switch.
func (f *Fake) SetForwarding(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarding = on
}

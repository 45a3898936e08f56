package netmap

import (
	"net/netip"

	"github.com/latchnet/latch/inventory"
)

// SiteAt returns the site one of whose CIDRs holds a.
func (e *Engine) SiteAt(a netip.Addr) (inventory.Site, bool) {
	for _, s := range e.sites {
		if s.Contains(a) {
			return s, true
		}
	}
	return inventory.Site{}, false
}

// Carries reports whether node has an approved route that holds a: it may
// carry, and report flows of, the site host at a.
func (e *Engine) Carries(node string, a netip.Addr) bool {
	for _, r := range e.routes[node] {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

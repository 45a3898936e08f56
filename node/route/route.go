// Package route keeps a node's host networking in step with its view for
// the routes of sites behind gateways: a kernel route through the
// WireGuard device for every prefix outside the overlay that the node's
// peers carry (a site's addresses behind a gateway), IPv4 forwarding on a
// gateway, and the masquerade (SNAT) of overlay traffic a gateway forwards
// into a route advertised with :snat.
//
// Manager computes what to change (Plan is pure) and makes the change
// through Host, whose Linux implementation is Kernel (netlink for routes,
// nftables for SNAT, /proc/sys for forwarding); tests use Fake. Every route
// it installs carries the route protocol Protocol and is on the node's
// device, so that it only ever removes its own; a route of another owner
// for the same prefix (the site's connected route on a gateway, say) is
// left alone and reported as a conflict.
//
// Only package node/agent imports it.
package route

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
)

// Protocol is the route protocol (rtm_protocol, `proto 76` in `ip route`)
// of the kernel routes Latch installs; no well-known routing daemon uses
// it.
const Protocol = 76

// ErrExists is wrapped by Host.AddRoute's error when the kernel already has
// a route for the prefix.
var ErrExists = errors.New("a route for the prefix already exists")

// ErrUnsupported is returned by the Host of platforms other than Linux.
var ErrUnsupported = errors.New("route: kernel routes, forwarding and SNAT are only supported on Linux")

// KernelRoute is an IPv4 route of the main routing table.
type KernelRoute struct {
	Prefix   netip.Prefix
	Dev      string // the output device's name, "" when the route has none
	Protocol int    // the route protocol: Protocol for Latch's
}

// Latch reports whether r is a route Latch installed on device dev.
func (r KernelRoute) Latch(dev string) bool { return r.Protocol == Protocol && r.Dev == dev }

// owner describes who installed r, for a conflict report.
func (r KernelRoute) owner() string {
	name := protoNames[r.Protocol]
	if name == "" {
		name = fmt.Sprint(r.Protocol)
	}
	s := "proto " + name
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

var protoNames = map[int]string{1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp", 186: "bgp", 188: "ospf", Protocol: "latch"}

// Host is the effect of the package on the host's network namespace.
type Host interface {
	// Routes lists the IPv4 routes of the main table.
	Routes() ([]KernelRoute, error)
	// AddRoute adds `prefix dev dev proto 76 scope link` to the main
	// table; it fails with ErrExists when a route for prefix (with the
	// same metric) is there already, and replaces nothing.
	AddRoute(dev string, prefix netip.Prefix) error
	// DelRoute removes the Latch route for prefix on dev; one already
	// gone is not an error.
	DelRoute(dev string, prefix netip.Prefix) error
	// Forwarding reports net.ipv4.ip_forward.
	Forwarding() (bool, error)
	// EnableForwarding sets net.ipv4.ip_forward to 1.
	EnableForwarding() error
	// SetSNAT makes the device's SNAT table hold exactly one masquerade
	// rule per prefix of snat, for traffic from overlay towards the
	// prefix leaving through another interface than dev; with no prefix
	// it removes the table. It is one transaction, and idempotent.
	SetSNAT(dev string, overlay netip.Prefix, snat []netip.Prefix) error
}

// Plan computes the kernel route changes for device dev: want are the
// prefixes that must route through dev, have the main table. It adds a
// prefix of want that has no route, removes the Latch routes on dev whose
// prefix is not in want, and reports (without touching) the routes of
// other owners that hold a prefix of want. Results are sorted.
func Plan(dev string, want []netip.Prefix, have []KernelRoute) (add, del []netip.Prefix, conflicts map[netip.Prefix]string) {
	wanted := map[netip.Prefix]bool{}
	for _, p := range want {
		wanted[p.Masked()] = true
	}
	ours := map[netip.Prefix]bool{}
	other := map[netip.Prefix]string{}
	for _, r := range have {
		p := r.Prefix.Masked()
		if r.Latch(dev) {
			ours[p] = true
		} else if _, seen := other[p]; !seen {
			other[p] = r.owner()
		}
	}
	for p := range wanted {
		switch {
		case ours[p]:
		case other[p] != "":
			if conflicts == nil {
				conflicts = map[netip.Prefix]string{}
			}
			conflicts[p] = other[p]
		default:
			add = append(add, p)
		}
	}
	for p := range ours {
		if !wanted[p] {
			del = append(del, p)
		}
	}
	sortPrefixes(add)
	sortPrefixes(del)
	return add, del, conflicts
}

// SitePrefixes returns the prefixes of allowed that lie outside overlay
// (none of their addresses in it), masked, sorted and without duplicates.
func SitePrefixes(overlay netip.Prefix, allowed []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range allowed {
		p = p.Masked()
		if !p.IsValid() || !p.Addr().Is4() || overlaps(overlay, p) || slices.Contains(out, p) {
			continue
		}
		out = append(out, p)
	}
	sortPrefixes(out)
	return out
}

func overlaps(a, b netip.Prefix) bool { return a.IsValid() && a.Overlaps(b) }

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
}

// Config is what a Manager works for.
type Config struct {
	Dev     string       // the WireGuard device
	Overlay netip.Prefix // the overlay range; prefixes in it get no route
	// SNAT are the node's routes advertised with :snat; each is
	// masqueraded once approved.
	SNAT []netip.Prefix
}

// State is a site route through the device, in Status.
type State struct {
	Prefix netip.Prefix `json:"prefix"`
	// Installed is true when the kernel route through the device is in
	// place.
	Installed bool `json:"installed"`
	// Conflict names the owner of the route that holds the prefix
	// instead ("proto kernel dev eth1"), "" when none.
	Conflict string `json:"conflict,omitempty"`
	// Error is why the route could not be added or removed, "" when it
	// was.
	Error string `json:"error,omitempty"`
}

// Status is what a Manager has done.
type Status struct {
	Routes []State `json:"routes,omitempty"`
	// SNAT are the prefixes masqueraded now.
	SNAT []netip.Prefix `json:"snat,omitempty"`
	// SNATError is why the SNAT table could not be set, "" when it was.
	SNATError string `json:"snatError,omitempty"`
}

// Manager keeps the host's site routes and SNAT in step with the views
// it is given. It is safe for concurrent use.
type Manager struct {
	h   Host
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	st        Status
	snatOK    bool // st.SNAT is what the host holds
	conflicts map[netip.Prefix]string
}

// New returns a Manager that changes nothing until Sync.
func New(h Host, cfg Config, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{h: h, cfg: cfg, log: log}
}

// EnsureForwarding sets net.ipv4.ip_forward to 1 unless it is already; it
// reports whether it changed it.
func EnsureForwarding(h Host) (changed bool, err error) {
	on, err := h.Forwarding()
	if err != nil {
		return false, fmt.Errorf("reading net.ipv4.ip_forward: %w", err)
	}
	if on {
		return false, nil
	}
	if err := h.EnableForwarding(); err != nil {
		return false, fmt.Errorf("setting net.ipv4.ip_forward to 1: %w", err)
	}
	return true, nil
}

// Sync makes the kernel routes through the device exactly the site
// prefixes of allowed (the AllowedIPs of the peers the device holds), and
// the SNAT table the prefixes of Config.SNAT that are in approved (the
// node's approved routes). A route another owner holds is left alone and
// reported; every failure is in the returned error and in Status, and the
// next Sync tries again.
func (m *Manager) Sync(allowed, approved []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := SitePrefixes(m.cfg.Overlay, allowed)
	var errs []error
	have, err := m.h.Routes()
	if err != nil {
		errs = append(errs, fmt.Errorf("listing the kernel's routes: %w", err))
	} else {
		errs = append(errs, m.syncRoutes(want, have)...)
	}
	var snat []netip.Prefix
	for _, p := range m.cfg.SNAT {
		if slices.Contains(approved, p.Masked()) {
			snat = append(snat, p.Masked())
		}
	}
	sortPrefixes(snat)
	switch {
	case len(m.cfg.SNAT) == 0:
		// A node without :snat routes needs no nf_tables: it only removes,
		// once, a table an earlier agent may have left, and does not
		// insist.
		if !m.snatOK {
			m.snatOK = true
			if err := m.h.SetSNAT(m.cfg.Dev, m.cfg.Overlay, nil); err != nil {
				m.log.Warn("removing an SNAT table left by an earlier agent", "dev", m.cfg.Dev, "err", err)
			}
		}
	case !m.snatOK || !slices.Equal(snat, m.st.SNAT):
		if err := m.h.SetSNAT(m.cfg.Dev, m.cfg.Overlay, snat); err != nil {
			m.snatOK = false
			m.st.SNATError = err.Error()
			errs = append(errs, fmt.Errorf("setting the SNAT rules of %s: %w", m.cfg.Dev, err))
		} else {
			if !slices.Equal(snat, m.st.SNAT) || m.st.SNATError != "" {
				m.log.Info("SNAT set", "dev", m.cfg.Dev, "prefixes", snat)
			}
			m.st.SNAT, m.st.SNATError, m.snatOK = snat, "", true
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) syncRoutes(want []netip.Prefix, have []KernelRoute) []error {
	add, del, conflicts := Plan(m.cfg.Dev, want, have)
	var errs []error
	failed := map[netip.Prefix]string{}
	for _, p := range del {
		if err := m.h.DelRoute(m.cfg.Dev, p); err != nil {
			failed[p] = err.Error()
			errs = append(errs, fmt.Errorf("removing the route %s dev %s: %w", p, m.cfg.Dev, err))
			continue
		}
		m.log.Info("removed site route", "prefix", p, "dev", m.cfg.Dev)
	}
	installed := map[netip.Prefix]bool{}
	for _, r := range have {
		if r.Latch(m.cfg.Dev) {
			installed[r.Prefix.Masked()] = true
		}
	}
	for _, p := range add {
		if err := m.h.AddRoute(m.cfg.Dev, p); err != nil {
			if errors.Is(err, ErrExists) {
				// Someone added one between the list and now.
				if conflicts == nil {
					conflicts = map[netip.Prefix]string{}
				}
				conflicts[p] = "a route added meanwhile"
				continue
			}
			failed[p] = err.Error()
			errs = append(errs, fmt.Errorf("adding the route %s dev %s: %w", p, m.cfg.Dev, err))
			continue
		}
		installed[p] = true
		m.log.Info("added site route", "prefix", p, "dev", m.cfg.Dev)
	}
	for p, owner := range conflicts {
		if m.conflicts[p] != owner {
			m.log.Warn("not routing a site prefix through the overlay: the kernel already has a route for it of another owner, which is left in place; remove it to let the overlay carry the prefix",
				"prefix", p, "dev", m.cfg.Dev, "owner", owner)
		}
	}
	m.conflicts = conflicts
	st := make([]State, 0, len(want))
	for _, p := range want {
		st = append(st, State{Prefix: p, Installed: installed[p], Conflict: conflicts[p], Error: failed[p]})
	}
	for _, p := range del {
		if failed[p] != "" { // still there
			st = append(st, State{Prefix: p, Installed: true, Error: failed[p]})
		}
	}
	slices.SortFunc(st, func(a, b State) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	m.st.Routes = st
	return errs
}

// Status returns what the Manager did last.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.Routes = slices.Clone(st.Routes)
	st.SNAT = slices.Clone(st.SNAT)
	return st
}

// Close removes every Latch route on the device and, on a node with
// :snat routes, the SNAT table.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st, m.snatOK, m.conflicts = Status{}, false, nil
	err := removeRoutes(m.h, m.cfg.Dev)
	if len(m.cfg.SNAT) > 0 {
		err = errors.Join(err, removeSNAT(m.h, m.cfg.Dev))
	}
	return err
}

// Remove removes every Latch route on device dev and dev's SNAT table:
// `latch node --cleanup`.
func Remove(h Host, dev string) error {
	return errors.Join(removeRoutes(h, dev), removeSNAT(h, dev))
}

func removeRoutes(h Host, dev string) error {
	have, err := h.Routes()
	if err != nil {
		return fmt.Errorf("listing the kernel's routes: %w", err)
	}
	var errs []error
	for _, r := range have {
		if r.Latch(dev) {
			if err := h.DelRoute(dev, r.Prefix); err != nil {
				errs = append(errs, fmt.Errorf("removing the route %s dev %s: %w", r.Prefix, dev, err))
			}
		}
	}
	return errors.Join(errs...)
}

func removeSNAT(h Host, dev string) error {
	if err := h.SetSNAT(dev, netip.Prefix{}, nil); err != nil {
		return fmt.Errorf("removing the SNAT table of %s: %w", dev, err)
	}
	return nil
}

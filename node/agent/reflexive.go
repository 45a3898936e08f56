package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/latchnet/latch/node/wg"
)

// StunEvery is how often the agent asks the coordinator's STUN server for
// its reflexive endpoint (as often as the WireGuard keepalive, which keeps
// the NAT mapping open). AddrPoll is how often it reads the host's
// addresses, when its endpoints are those (no --endpoint).
const (
	StunEvery = 25 * time.Second
	AddrPoll  = 5 * time.Second
)

// endpointLoop keeps the registered endpoints current until ctx ends:
// every AddrPoll it reads the host's addresses (unless --endpoint fixed
// the local endpoints), and it asks r (the WireGuard device; nil for
// kernel WireGuard) for the reflexive endpoint at once, every StunEvery,
// and at once when the local addresses changed. It registers again when
// either changed. Nothing is asked while the coordinator has told no STUN
// port (none registered yet, or STUN off).
func (a *agent) endpointLoop(ctx context.Context, r wg.Reflector) {
	var nextSTUN time.Time // zero: ask at once
	pending := false       // a change whose registration failed
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-a.d.clock.After(min(AddrPoll, StunEvery)):
			}
		}
		changed := a.refreshLocal()
		if changed {
			nextSTUN = time.Time{}
		}
		a.mu.Lock()
		port := a.stunPort
		a.mu.Unlock()
		if r != nil && port != 0 && !a.d.clock.Now().Before(nextSTUN) {
			nextSTUN = a.d.clock.Now().Add(StunEvery)
			reflChanged, err := a.refreshReflexive(ctx, r, port)
			if err != nil && ctx.Err() == nil {
				a.log.Warn("learning this node's reflexive endpoint", logErr, err, logRetry, StunEvery)
			}
			changed = changed || reflChanged
		}
		if changed || pending {
			err := a.register(ctx)
			pending = err != nil
			if err != nil && ctx.Err() == nil {
				a.log.Warn("registering the changed endpoints; will retry", logErr, err, logRetry, AddrPoll)
			}
		}
	}
}

// refreshLocal reads the host's addresses, when they are the local
// endpoints, and reports whether they changed.
func (a *agent) refreshLocal() bool {
	if !a.s.autoEndpoints {
		return false
	}
	addrs, err := a.d.hostAddrs()
	if err != nil {
		a.log.Warn("reading this host's addresses", logErr, err)
		return false
	}
	eps := make([]netip.AddrPort, 0, len(addrs))
	for _, ip := range addrs {
		eps = append(eps, netip.AddrPortFrom(ip, uint16(a.s.ListenPort)))
	}
	if len(eps) == 0 {
		return false // keep the last ones rather than register none
	}
	a.mu.Lock()
	old := a.local
	a.local = eps
	a.mu.Unlock()
	if slices.Equal(old, eps) {
		return false
	}
	a.log.Info("this host's addresses changed", "endpoints", fmt.Sprint(eps), "was", fmt.Sprint(old))
	return true
}

// refreshReflexive asks the STUN server at the coordinator's host and
// port and reports whether the answer is new.
func (a *agent) refreshReflexive(ctx context.Context, r wg.Reflector, port int) (bool, error) {
	server, err := a.stunServer(ctx, port)
	if err != nil {
		return false, err
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ap, err := r.Reflexive(qctx, server)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	old := a.reflexive
	a.reflexive = ap
	a.mu.Unlock()
	if old == ap {
		return false, nil
	}
	a.log.Info("reflexive endpoint", "endpoint", ap.String(), "was", old.String())
	return true, nil
}

// stunServer is the coordinator's host (from --coordinator) at port.
func (a *agent) stunServer(ctx context.Context, port int) (netip.AddrPort, error) {
	host := a.s.base.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolving the coordinator's host %s for STUN: %w", host, err)
	}
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
		}
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, errors.New("the coordinator's host " + host + " has no address")
	}
	return netip.AddrPortFrom(ips[0], uint16(port)), nil
}

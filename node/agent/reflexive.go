package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/latchnet/latch/node/wg"
)

// StunEvery is how often the agent asks the coordinator's STUN server for
// its reflexive endpoint (as often as the WireGuard keepalive, which keeps
// the NAT mapping open).
const StunEvery = 25 * time.Second

// stunLoop asks r (the WireGuard device) for this node's reflexive
// endpoint at once and every StunEvery until ctx ends, and re-registers
// when it differs from the one registered. Nothing is asked while the
// coordinator has told no STUN port (none registered yet, or STUN off).
func (a *agent) stunLoop(ctx context.Context, r wg.Reflector) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.d.clock.After(wait):
		}
		wait = StunEvery
		a.mu.Lock()
		port := a.stunPort
		a.mu.Unlock()
		if port == 0 {
			wait = time.Second // until a registration tells the port
			continue
		}
		if err := a.refreshReflexive(ctx, r, port); err != nil && ctx.Err() == nil {
			a.log.Warn("learning this node's reflexive endpoint", logErr, err, logRetry, wait)
		}
	}
}

// refreshReflexive asks the STUN server at the coordinator's host and
// port, and registers again when the answer is new.
func (a *agent) refreshReflexive(ctx context.Context, r wg.Reflector, port int) error {
	server, err := a.stunServer(ctx, port)
	if err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ap, err := r.Reflexive(qctx, server)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.reflexive
	a.reflexive = ap
	a.mu.Unlock()
	if old == ap {
		return nil
	}
	a.log.Info("reflexive endpoint", "endpoint", ap.String(), "was", old.String())
	if err := a.register(ctx); err != nil {
		// The next sync registers it; so does the next change.
		a.mu.Lock()
		a.reflexive = old
		a.mu.Unlock()
		return fmt.Errorf("registering reflexive endpoint %s: %w", ap, err)
	}
	return nil
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

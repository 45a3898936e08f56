package agent

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// renewAt is when an SVID received at issued should be renewed: after
// frac of its lifetime. The lifetime counts from when the node received
// it (not from NotBefore, which the CA backdates for clock skew), so a new
// SVID is never due at once.
func renewAt(id *identity, issued time.Time, frac float64) time.Time {
	start := id.chain[0].NotBefore
	if issued.After(start) {
		start = issued
	}
	life := id.notAfter().Sub(start)
	if life < 0 {
		life = 0
	}
	return start.Add(time.Duration(frac * float64(life)))
}

// renewLoop renews the SVID when it is due, until ctx ends.
func (a *agent) renewLoop(ctx context.Context) {
	bo := newBackoff(a.d.backoffMin, 4*a.d.backoffMax)
	for {
		a.mu.Lock()
		at := renewAt(a.src.get(), a.issuedAt, a.s.RenewBefore)
		a.mu.Unlock()
		if wait := at.Sub(a.d.clock.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-a.d.clock.After(wait):
			}
		}
		for {
			err := a.renew(ctx)
			if err == nil {
				bo.reset()
				break
			}
			if ctx.Err() != nil {
				return
			}
			wait := bo.next()
			a.mu.Lock()
			a.lastErr = err.Error()
			a.mu.Unlock()
			a.log.Error("renewing the SVID", logErr, err, logExpiry, a.src.get().notAfter(), logRetry, wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// renew gets a new SVID for a new key over mTLS with the current one,
// saves it and makes later handshakes use it.
func (a *agent) renew(ctx context.Context) error {
	cur := a.src.get()
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return err
	}
	resp, err := a.api.renew(ctx, csr)
	if err != nil {
		return fmt.Errorf("renewing the SVID: %w", err)
	}
	id, err := fromResponse(resp, key)
	if err != nil {
		return fmt.Errorf("renewing the SVID: the coordinator's SVID is unusable: %w", err)
	}
	if id.spiffeID() != cur.spiffeID() {
		return errors.New("renewing the SVID: the coordinator issued " + id.spiffeID().String() + ", not " + cur.spiffeID().String())
	}
	if err := a.dir.saveIdentity(id); err != nil {
		return fmt.Errorf("renewing the SVID: %w", err)
	}
	a.mu.Lock()
	a.src.swap(id)
	a.issuedAt = a.d.clock.Now()
	restream := a.restream
	a.mu.Unlock()
	a.api.closeIdle()
	if restream != nil {
		restream()
	}
	a.log.Info("SVID renewed", logExpiry, id.notAfter())
	return nil
}

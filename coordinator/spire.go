package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// DefaultBundlePoll is how often SpireConfig.BundleFile is checked for
// changes when SpireConfig.BundlePoll is zero.
const DefaultBundlePoll = 5 * time.Second

// SpireConfig makes the coordinator trust a SPIRE deployment: nodes with
// an SVID of SPIRE's trust domain are node identities too. All fields
// empty: no SPIRE. Errors name the `latch coordinator` flag of each field.
type SpireConfig struct {
	// Socket is the Workload API socket of the coordinator's own SPIRE
	// agent (unix:///PATH/api.sock), --spiffe-socket: it supplies SPIRE's
	// bundle and the coordinator's SPIRE SVID, shown to SPIRE nodes.
	Socket string
	// BundleFile is a PEM file of SPIRE's CA certificates, reloaded when
	// it changes, --trust-bundle; instead of Socket.
	BundleFile string
	// TrustDomain is SPIRE's trust domain, --spiffe-trust-domain: by
	// default that of the coordinator's SPIRE SVID with Socket; required
	// with BundleFile.
	TrustDomain string
	// MapFile is the SPIFFE mapping (YAML) admitting SPIRE nodes,
	// --spiffe-map; others wait for an admin's approval.
	MapFile string
	// BundlePoll is how often BundleFile is checked, --trust-bundle-poll;
	// zero: DefaultBundlePoll.
	BundlePoll time.Duration
}

func (c SpireConfig) withDefaults() SpireConfig {
	if c.BundlePoll == 0 {
		c.BundlePoll = DefaultBundlePoll
	}
	return c
}

// validate checks c without touching the host; own is the coordinator's
// trust domain. It returns SPIRE's trust domain if c names it.
func (c SpireConfig) validate(own spiffeid.TrustDomain) (spiffeid.TrustDomain, error) {
	var td spiffeid.TrustDomain
	if c.Socket == "" && c.BundleFile == "" {
		if c.MapFile != "" || c.TrustDomain != "" {
			return td, errors.New("--spiffe-map and --spiffe-trust-domain need --spiffe-socket or --trust-bundle")
		}
		return td, nil
	}
	if c.BundleFile != "" && c.BundlePoll <= 0 {
		return td, fmt.Errorf("--trust-bundle-poll %v: must be positive, e.g. 5s", c.BundlePoll)
	}
	if c.Socket != "" && c.BundleFile != "" {
		return td, errors.New("--spiffe-socket and --trust-bundle: give one (the socket already supplies SPIRE's bundle)")
	}
	if c.TrustDomain != "" {
		var err error
		if td, err = spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
			return td, fmt.Errorf("--spiffe-trust-domain %q: %w", c.TrustDomain, err)
		}
	}
	if c.BundleFile != "" && td.IsZero() {
		return td, errors.New("--trust-bundle needs --spiffe-trust-domain (SPIRE's trust domain, e.g. example.org)")
	}
	if !td.IsZero() && td == own {
		return td, ownTrustDomainError(td)
	}
	return td, nil
}

func ownTrustDomainError(td spiffeid.TrustDomain) error {
	return fmt.Errorf("SPIRE's trust domain %q is the coordinator's own --trust-domain: give the coordinator another trust domain, so that SPIRE IDs and the embedded CA's IDs cannot be confused", td.Name())
}

// spire is what the coordinator holds of SPIRE: all nil without it.
type spire struct {
	trust   *spiffetrust.Trust
	mapping *spiffemap.Map
	svids   x509svid.Source // the coordinator's own SPIRE SVID (Socket)
	close   func()
}

// open checks c and connects to SPIRE. With neither Socket nor
// BundleFile it returns an empty spire.
func (c SpireConfig) open(ctx context.Context, own spiffeid.TrustDomain, log *slog.Logger) (*spire, error) {
	out := &spire{close: func() {}}
	td, err := c.validate(own)
	if err != nil {
		return nil, err
	}
	if c.Socket == "" && c.BundleFile == "" {
		return out, nil
	}
	if c.MapFile != "" {
		data, err := os.ReadFile(c.MapFile)
		if err != nil {
			return nil, fmt.Errorf("--spiffe-map: %w", err)
		}
		if out.mapping, err = spiffemap.Parse(c.MapFile, data); err != nil {
			return nil, fmt.Errorf("--spiffe-map: %w", err)
		}
	}
	watchCtx, cancel := context.WithCancel(ctx)
	if c.Socket != "" {
		// Bounded: a missing agent or an unregistered coordinator fails
		// the start with a message instead of hanging.
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		src, err := workloadapi.NewX509Source(wctx, workloadapi.WithClientOptions(workloadapi.WithAddr(c.Socket)))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("--spiffe-socket %s: no SVID from the SPIRE agent within 30s: %w (is the agent running, and is there a registration entry for the coordinator?)", c.Socket, err)
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			cancel()
			src.Close()
			return nil, fmt.Errorf("--spiffe-socket %s: %w", c.Socket, err)
		}
		if td.IsZero() {
			td = svid.ID.TrustDomain()
		}
		out.trust = &spiffetrust.Trust{TD: td, Bundles: src}
		out.svids = src
		out.close = func() { cancel(); src.Close() }
		log.Info("trusting SPIRE", "trust_domain", td.Name(), "coordinator_spiffe_id", svid.ID.String(), "socket", c.Socket)
	} else {
		src, err := spiffetrust.NewFileSource(td, c.BundleFile, log)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("--trust-bundle: %w", err)
		}
		go src.Watch(watchCtx, c.BundlePoll)
		out.trust = &spiffetrust.Trust{TD: td, Bundles: src}
		out.close = cancel
		log.Info("trusting SPIRE", "trust_domain", td.Name(), "bundle", c.BundleFile)
	}
	if td == own {
		out.close()
		return nil, ownTrustDomainError(td)
	}
	for _, mtd := range out.mapping.TrustDomains() {
		if mtd != td.Name() {
			out.close()
			return nil, fmt.Errorf("--spiffe-map %s names trust domain %q, but SPIRE's is %q: such an entry could never match", c.MapFile, mtd, td.Name())
		}
	}
	return out, nil
}

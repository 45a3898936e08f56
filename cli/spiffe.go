package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// spiffeFlags make the coordinator trust a SPIRE deployment.
type spiffeFlags struct {
	socket, bundleFile, trustDomain, mapFile string
	bundlePoll                               time.Duration
}

func (f *spiffeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.socket, "spiffe-socket", "", "Workload API socket of the coordinator's own SPIRE agent (unix:///PATH/api.sock): trust SPIRE's bundle and present the coordinator's SPIRE SVID to SPIRE nodes")
	fl.StringVar(&f.bundleFile, "trust-bundle", "", "PEM file with SPIRE's CA certificates (spire-server bundle show), reloaded when it changes; instead of --spiffe-socket")
	fl.StringVar(&f.trustDomain, "spiffe-trust-domain", "", "SPIRE's trust domain (default with --spiffe-socket: that of the coordinator's SPIRE SVID; required with --trust-bundle)")
	fl.StringVar(&f.mapFile, "spiffe-map", "", "YAML `FILE`: a list of {id: spiffe://TD/PATTERN, namespace: NS, labels: {k: v}} admitting SPIRE nodes; the first match wins, others wait for latch admin node approve")
	fl.DurationVar(&f.bundlePoll, "trust-bundle-poll", 5*time.Second, "how often --trust-bundle is checked for changes")
}

// spire is what the coordinator holds of SPIRE: all nil without flags.
type spire struct {
	trust   *spiffetrust.Trust
	mapping *spiffemap.Map
	svids   x509svid.Source // the coordinator's own SPIRE SVID (--spiffe-socket)
	close   func()
}

// open checks the flags and connects to SPIRE. With neither
// --spiffe-socket nor --trust-bundle it returns an empty spire.
func (f *spiffeFlags) open(ctx context.Context, own spiffeid.TrustDomain, log *slog.Logger) (*spire, error) {
	out := &spire{close: func() {}}
	if f.socket == "" && f.bundleFile == "" {
		if f.mapFile != "" || f.trustDomain != "" {
			return nil, errors.New("--spiffe-map and --spiffe-trust-domain need --spiffe-socket or --trust-bundle")
		}
		return out, nil
	}
	if f.bundleFile != "" && f.bundlePoll <= 0 {
		return nil, fmt.Errorf("--trust-bundle-poll %v: must be positive, e.g. 5s", f.bundlePoll)
	}
	if f.socket != "" && f.bundleFile != "" {
		return nil, errors.New("--spiffe-socket and --trust-bundle: give one (the socket already supplies SPIRE's bundle)")
	}
	var td spiffeid.TrustDomain
	if f.trustDomain != "" {
		var err error
		if td, err = spiffeid.TrustDomainFromString(f.trustDomain); err != nil {
			return nil, fmt.Errorf("--spiffe-trust-domain %q: %w", f.trustDomain, err)
		}
	}
	if f.mapFile != "" {
		data, err := os.ReadFile(f.mapFile)
		if err != nil {
			return nil, fmt.Errorf("--spiffe-map: %w", err)
		}
		if out.mapping, err = spiffemap.Parse(f.mapFile, data); err != nil {
			return nil, fmt.Errorf("--spiffe-map: %w", err)
		}
	}
	watchCtx, cancel := context.WithCancel(ctx)
	if f.socket != "" {
		// Bounded: a missing agent or an unregistered coordinator fails
		// the start with a message instead of hanging.
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		src, err := workloadapi.NewX509Source(wctx, workloadapi.WithClientOptions(workloadapi.WithAddr(f.socket)))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("--spiffe-socket %s: no SVID from the SPIRE agent within 30s: %w (is the agent running, and is there a registration entry for the coordinator?)", f.socket, err)
		}
		svid, err := src.GetX509SVID()
		if err != nil {
			cancel()
			src.Close()
			return nil, fmt.Errorf("--spiffe-socket %s: %w", f.socket, err)
		}
		if td.IsZero() {
			td = svid.ID.TrustDomain()
		}
		out.trust = &spiffetrust.Trust{TD: td, Bundles: src}
		out.svids = src
		out.close = func() { cancel(); src.Close() }
		log.Info("trusting SPIRE", "trust_domain", td.Name(), "coordinator_spiffe_id", svid.ID.String(), "socket", f.socket)
	} else {
		if td.IsZero() {
			cancel()
			return nil, errors.New("--trust-bundle needs --spiffe-trust-domain (SPIRE's trust domain, e.g. example.org)")
		}
		src, err := spiffetrust.NewFileSource(td, f.bundleFile, log)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("--trust-bundle: %w", err)
		}
		go src.Watch(watchCtx, f.bundlePoll)
		out.trust = &spiffetrust.Trust{TD: td, Bundles: src}
		out.close = cancel
		log.Info("trusting SPIRE", "trust_domain", td.Name(), "bundle", f.bundleFile)
	}
	if td == own {
		out.close()
		return nil, fmt.Errorf("SPIRE's trust domain %q is the coordinator's own --trust-domain: give the coordinator another trust domain, so that SPIRE IDs and the embedded CA's IDs cannot be confused", td.Name())
	}
	for _, mtd := range out.mapping.TrustDomains() {
		if mtd != td.Name() {
			out.close()
			return nil, fmt.Errorf("--spiffe-map %s names trust domain %q, but SPIRE's is %q: such an entry could never match", f.mapFile, mtd, td.Name())
		}
	}
	return out, nil
}

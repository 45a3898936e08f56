package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// spireWait bounds how long the agent waits for its first SVID from the
// SPIRE agent.
const spireWait = 2 * time.Minute

// SpireSource is the node's identity from a SPIRE agent: the current
// X.509-SVID and the trust bundles, kept fresh by the source (go-spiffe's
// workloadapi.X509Source rotates them). Tests use a fake.
type SpireSource interface {
	x509svid.Source
	x509bundle.Source
	Close() error
}

// openWorkloadAPI is deps.spire: go-spiffe's X509Source on the SPIRE
// agent's Workload API socket (unix:///PATH/api.sock). SPIRE may issue
// the agent's process several SVIDs: the node's own and those of the
// workloads it declares (workloadIDs); the source serves the first one
// that is not a workload's.
func openWorkloadAPI(ctx context.Context, addr string, workloadIDs []string) (SpireSource, error) {
	pick := func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, s := range svids {
			if !slices.Contains(workloadIDs, s.ID.String()) {
				return s
			}
		}
		return svids[0]
	}
	return workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)),
		workloadapi.WithDefaultX509SVIDPicker(pick))
}

// fetchSpireIDs is deps.spireIDs: the SPIFFE IDs of every SVID the SPIRE
// agent at addr issues to this process.
func fetchSpireIDs(ctx context.Context, addr string) ([]string, error) {
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		return nil, err
	}
	out := make([]string, len(svids))
	for i, s := range svids {
		out[i] = s.ID.String()
	}
	return out, nil
}

// spireName is the node name of a SPIFFE ID from SPIRE: the last segment
// of its path (the coordinator derives it the same way).
func spireName(id spiffeid.ID) (string, error) {
	p := id.Path()
	name := p[strings.LastIndex(p, "/")+1:]
	if err := wire.CheckNodeName(name); err != nil {
		return "", fmt.Errorf("the node name is the last path segment of the SPIFFE ID %s from SPIRE: %w; register the node in SPIRE under an ID that ends in a valid name", id, err)
	}
	return name, nil
}

// openSpire takes the node's identity from the SPIRE agent at
// s.SpiffeSocket instead of the embedded CA.
func (a *agent) openSpire(ctx context.Context) error {
	if _, err := os.Stat(a.dir.path(SVIDFile)); err == nil {
		return fmt.Errorf("the state directory %s holds an SVID from enrolling with a join token: use another --state-dir for --spiffe-socket", a.s.StateDir)
	}
	a.log.Info("waiting for an SVID from the SPIRE agent", "socket", a.s.SpiffeSocket)
	wctx, cancel := context.WithTimeout(ctx, spireWait)
	defer cancel()
	var wlIDs []string
	for _, w := range a.s.Workloads {
		if w.SpiffeID != "" {
			wlIDs = append(wlIDs, w.SpiffeID)
		}
	}
	src, err := a.d.spire(wctx, a.s.SpiffeSocket, wlIDs)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("--spiffe-socket %s: no SVID from the SPIRE agent within %v: %w (is the agent running, and does a registration entry match this process?)", a.s.SpiffeSocket, spireWait, err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		src.Close()
		return fmt.Errorf("--spiffe-socket %s: %w", a.s.SpiffeSocket, err)
	}
	name, err := spireName(svid.ID)
	if err != nil {
		src.Close()
		return err
	}
	if a.s.Name != "" && a.s.Name != name {
		src.Close()
		return fmt.Errorf("--name %s: with --spiffe-socket the node's name comes from its SPIFFE ID %s (%s): drop --name", a.s.Name, svid.ID, name)
	}
	coordTD := svid.ID.TrustDomain()
	a.bundles = src
	if a.s.CoordinatorCA != "" {
		ca, err := loadCoordinatorCA(a.s.CoordinatorCA)
		if err != nil {
			src.Close()
			return err
		}
		coordTD = ca.TrustDomain()
		a.bundles = withBundle{Source: src, extra: ca}
	}
	coord := a.s.coordinatorID
	if coord.IsZero() {
		coord, err = spiffeid.FromPath(coordTD, coordinatorPath)
		if err != nil {
			src.Close()
			return err
		}
	}
	if len(wlIDs) > 0 {
		// A workload's SPIFFE ID is SPIRE's word, not the config's: the
		// SPIRE agent must issue it to this process.
		issued, err := a.d.spireIDs(wctx, a.s.SpiffeSocket)
		if err != nil {
			src.Close()
			return fmt.Errorf("--spiffe-socket %s: listing the SVIDs SPIRE issues to this node: %w", a.s.SpiffeSocket, err)
		}
		for _, id := range wlIDs {
			if !slices.Contains(issued, id) {
				src.Close()
				return fmt.Errorf("a workload declares spiffe_id=%s, but the SPIRE agent does not issue that ID to this node (it issues %s): register an entry for it under this node's SPIRE agent", id, strings.Join(issued, ", "))
			}
		}
	}
	a.spire, a.spireName, a.coordID = src, name, coord
	return nil
}

// who returns the node's name, SPIFFE ID and the expiry of its current
// SVID, from SPIRE or from the embedded CA's SVID.
func (a *agent) who() (string, spiffeid.ID, time.Time) {
	if a.spire != nil {
		svid, err := a.spire.GetX509SVID()
		if err != nil || len(svid.Certificates) == 0 {
			return a.spireName, spiffeid.ID{}, time.Time{}
		}
		return a.spireName, svid.ID, svid.Certificates[0].NotAfter
	}
	id := a.src.get()
	return id.name, id.spiffeID(), id.notAfter()
}

// errNoSpire: reported when --spiffe-socket and --join-token meet.
var errNoSpire = errors.New("--spiffe-socket and --join-token: give one (with SPIRE the node's identity comes from the SPIRE agent, no enrollment)")

// loadCoordinatorCA reads the coordinator's CA certificate (PEM); its
// trust domain is its URI SAN spiffe://TD.
func loadCoordinatorCA(path string) (*x509bundle.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--coordinator-ca: %w", err)
	}
	certs, err := decodeCerts(data)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("--coordinator-ca %s: no PEM certificate (want the coordinator's ca.crt)", path)
	}
	if len(certs[0].URIs) != 1 {
		return nil, fmt.Errorf("--coordinator-ca %s: not a Latch CA certificate (it names no SPIFFE trust domain)", path)
	}
	td, err := spiffeid.TrustDomainFromURI(certs[0].URIs[0])
	if err != nil {
		return nil, fmt.Errorf("--coordinator-ca %s: %w", path, err)
	}
	return x509bundle.FromX509Authorities(td, certs), nil
}

// withBundle is SPIRE's bundles plus the coordinator's CA for its own
// trust domain.
type withBundle struct {
	x509bundle.Source
	extra *x509bundle.Bundle
}

func (b withBundle) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td == b.extra.TrustDomain() {
		return b.extra, nil
	}
	return b.Source.GetX509BundleForTrustDomain(td)
}

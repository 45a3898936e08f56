package agent

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var spireTD = spiffeid.RequireTrustDomainFromString("spire.test")

// fakeSpire stands in for a SPIRE agent's Workload API (go-spiffe's
// X509Source): a CA of its own and an SVID it can rotate.
type fakeSpire struct {
	*spiffetest.CA

	mu   sync.Mutex
	svid *x509svid.SVID // guarded by mu
}

var _ SpireSource = (*fakeSpire)(nil)

func newFakeSpire(t *testing.T) *fakeSpire {
	return &fakeSpire{CA: spiffetest.NewCA(t, spireTD.Name())}
}

func (f *fakeSpire) set(s *x509svid.SVID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svid = s
}

func (f *fakeSpire) GetX509SVID() (*x509svid.SVID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svid, nil
}

func (f *fakeSpire) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != spireTD {
		return nil, errors.New("no bundle")
	}
	return f.Bundle(), nil
}

func (f *fakeSpire) Close() error { return nil }

// trustSpire makes fc accept SVIDs of spire (node name: the last path
// segment) and present a SPIRE SVID of its own to clients offering
// wire.SpiffeALPN, as the real coordinator with --spiffe-socket does.
func (fc *fakeCoord) trustSpire(t *testing.T, spire *fakeSpire) {
	own := spire.Issue(t, "spiffe://spire.test/latch/coordinator", time.Hour)
	base := fc.srv.TLS
	spireCfg := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequestClientCert,
		GetCertificate: tlsconfig.GetCertificate(staticSVIDSource{own})}
	base.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(h.SupportedProtos, wire.SpiffeALPN) {
			return spireCfg, nil
		}
		return nil, nil
	}
	base.VerifyConnection = nil // verified per request, below
	fc.spire = spire
}

type staticSVIDSource struct{ s *x509svid.SVID }

func (s staticSVIDSource) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

func TestSpireNode(t *testing.T) {
	spire := newFakeSpire(t)
	// Short-lived, as SPIRE's with a small x509_svid_ttl.
	spire.set(spire.Issue(t, "spiffe://spire.test/prod/web1", 3*time.Second))
	fc := newFakeCoordWith(t, 20*time.Minute, func(fc *fakeCoord) { fc.trustSpire(t, spire) })
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, "")
	cfg.SpiffeSocket = "unix:///run/spire/agent.sock"
	cfg.Workloads = append(cfg.Workloads, wire.WorkloadDecl{Name: "api", Namespace: "prod", SpiffeID: "spiffe://spire.test/prod/web1/api"})
	a := startAgentWith(t, cfg, func(d *deps) {
		d.spireIDs = func(context.Context, string) ([]string, error) {
			return []string{"spiffe://spire.test/prod/web1", "spiffe://spire.test/prod/web1/api"}, nil
		}
		d.spire = func(_ context.Context, addr string, _ []string) (SpireSource, error) {
			if addr != cfg.SpiffeSocket {
				t.Errorf("opened the Workload API at %s, want %s", addr, cfg.SpiffeSocket)
			}
			return spire, nil
		}
	})
	a.device(t)
	fc.nextStream(t)
	if got := fc.lastRegisterName(); got != "web1" {
		t.Fatalf("the coordinator saw node %q, want web1 (from the SPIFFE ID)", got)
	}
	if ws := fc.lastRegister().Workloads; len(ws) != 2 || ws[1].SpiffeID != "spiffe://spire.test/prod/web1/api" {
		t.Fatalf("registered workloads %+v: want api with its SPIFFE ID", ws)
	}
	// SPIRE rotates the SVID; before the old one expires the agent
	// reconnects with the new one.
	next := spire.Issue(t, "spiffe://spire.test/prod/web1", time.Hour)
	spire.set(next)
	s2 := fc.nextStream(t)
	if s2.serial != next.Certificates[0].SerialNumber.String() {
		t.Fatalf("reconnected with serial %s, want the rotated SVID's %s", s2.serial, next.Certificates[0].SerialNumber)
	}
	if enrolls, _, renewed := fc.counts(); enrolls != 0 || len(renewed) != 0 {
		t.Errorf("a SPIRE node enrolled %d times and renewed %d times with the coordinator", enrolls, len(renewed))
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestSpireNodeConfigErrors(t *testing.T) {
	fc := newFakeCoord(t, time.Hour)
	base := testConfig(fc, t.TempDir(), "")
	base.SpiffeSocket = "unix:///run/spire/agent.sock"
	cases := map[string]func(*Config){
		"token too":        func(c *Config) { c.JoinToken = fc.token },
		"not an address":   func(c *Config) { c.SpiffeSocket = "/run/spire/agent.sock" },
		"bad coordinator":  func(c *Config) { c.CoordinatorID = "latch/coordinator" },
		"id without spire": func(c *Config) { c.SpiffeSocket = ""; c.CoordinatorID = "spiffe://spire.test/x" },
	}
	for name, mod := range cases {
		c := base
		mod(&c)
		if _, err := c.check(func() ([]netip.Addr, error) { return nil, nil }, isCgroup2Dir); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// The node name comes from the SPIFFE ID; --name must agree.
	spire := newFakeSpire(t)
	spire.set(spire.Issue(t, "spiffe://spire.test/prod/Bad_Name", time.Hour))
	c := base
	c.StateDir = filepath.Join(t.TempDir(), "s")
	err := runWith(t, c, spire)
	if err == nil || !strings.Contains(err.Error(), "last path segment") {
		t.Errorf("an SVID whose last segment is no node name: %v", err)
	}
	spire.set(spire.Issue(t, "spiffe://spire.test/prod/web1", time.Hour))
	// A workload's SPIFFE ID must be one SPIRE issues to the node.
	c.Workloads = []wire.WorkloadDecl{{Name: "api", Namespace: "prod", SpiffeID: "spiffe://spire.test/prod/web1/other"}}
	if err := runWith(t, c, spire); err == nil || !strings.Contains(err.Error(), "does not issue that ID") {
		t.Errorf("a workload SPIFFE ID SPIRE does not issue: %v", err)
	}
	noSock := base
	noSock.SpiffeSocket = ""
	noSock.Workloads = c.Workloads
	if _, err := noSock.check(func() ([]netip.Addr, error) { return nil, nil }, isCgroup2Dir); err == nil || !strings.Contains(err.Error(), "needs --spiffe-socket") {
		t.Errorf("a workload SPIFFE ID without --spiffe-socket: %v", err)
	}
	c.Workloads = nil
	c.Name = "other"
	if err := runWith(t, c, spire); err == nil || !strings.Contains(err.Error(), "drop --name") {
		t.Errorf("--name other for spiffe://spire.test/prod/web1: %v", err)
	}
}

// runWith runs an agent that should fail at start and returns its error.
func runWith(t *testing.T, cfg Config, spire *fakeSpire) error {
	t.Helper()
	r := &running{clock: newFakeClock(time.Now()), dev: make(chan *wg.Fake, 1), cfgs: make(chan wg.Config, 1)}
	d := testDeps(r)
	d.spire = func(context.Context, string, []string) (SpireSource, error) { return spire, nil }
	d.spireIDs = func(context.Context, string) ([]string, error) {
		return []string{"spiffe://spire.test/prod/web1", "spiffe://spire.test/prod/web1/api"}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return run(ctx, cfg, nil, d)
}

// TestSpireNodeCoordinatorCA: a SPIRE node given the coordinator's CA
// certificate trusts the coordinator's embedded-CA SVID (a coordinator
// with --trust-bundle has no SPIRE SVID) and does not ask for a SPIRE one.
func TestSpireNodeCoordinatorCA(t *testing.T) {
	spire := newFakeSpire(t)
	spire.set(spire.Issue(t, "spiffe://spire.test/prod/web1", time.Hour))
	var offered atomic.Bool
	fc := newFakeCoordWith(t, 20*time.Minute, func(fc *fakeCoord) {
		fc.trustSpire(t, spire)
		fc.srv.TLS.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			offered.Store(offered.Load() || slices.Contains(h.SupportedProtos, wire.SpiffeALPN))
			return nil, nil // always the embedded CA's SVID
		}
	})
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fc.ca.Root().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(fc, filepath.Join(t.TempDir(), "state"), "")
	cfg.SpiffeSocket = "unix:///run/spire/agent.sock"
	cfg.CoordinatorCA = caFile
	a := startAgentWith(t, cfg, func(d *deps) {
		d.spire = func(context.Context, string, []string) (SpireSource, error) { return spire, nil }
	})
	a.device(t)
	fc.nextStream(t)
	if offered.Load() {
		t.Error("the node asked for the coordinator's SPIRE SVID although it was given --coordinator-ca")
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	// Without the CA file the same coordinator is not trusted.
	cfg.CoordinatorCA = ""
	cfg.StateDir = filepath.Join(t.TempDir(), "state2")
	b := startAgentWith(t, cfg, func(d *deps) {
		d.spire = func(context.Context, string, []string) (SpireSource, error) { return spire, nil }
	})
	select {
	case <-fc.streams:
		t.Fatal("a SPIRE node trusted the coordinator's embedded CA without --coordinator-ca")
	case <-time.After(time.Second):
	}
	b.stop(t)
}

package coordinator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestSpireConfig(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	goodMap := filepath.Join(dir, "map.yaml")
	os.WriteFile(goodMap, []byte("- id: spiffe://spire.test/prod/*\n  namespace: prod\n"), 0o644)
	otherMap := filepath.Join(dir, "other.yaml")
	os.WriteFile(otherMap, []byte("- id: spiffe://other.test/prod/*\n  namespace: prod\n"), 0o644)
	own := spiffeid.RequireTrustDomainFromString("example.test")
	log := slog.New(slog.DiscardHandler)

	s, err := (SpireConfig{BundleFile: bundle, TrustDomain: "spire.test", MapFile: goodMap, BundlePoll: time.Second}).open(context.Background(), own, log)
	if err != nil {
		t.Fatal(err)
	}
	if s.trust == nil || s.trust.TD.Name() != "spire.test" || s.mapping.Len() != 1 || s.svids != nil {
		t.Fatalf("open = %+v", s)
	}
	s.close()
	if s, err := (SpireConfig{}).open(context.Background(), own, log); err != nil || s.trust != nil {
		t.Fatalf("no flags: %+v, %v", s, err)
	}
	for name, c := range map[string]struct {
		c    SpireConfig
		want string
	}{
		"map alone":         {SpireConfig{MapFile: goodMap}, "need --spiffe-socket or --trust-bundle"},
		"both sources":      {SpireConfig{Socket: "unix:///x", BundleFile: bundle, BundlePoll: time.Second}, "give one"},
		"bundle without td": {SpireConfig{BundleFile: bundle, BundlePoll: time.Second}, "needs --spiffe-trust-domain"},
		"own trust domain":  {SpireConfig{BundleFile: bundle, TrustDomain: "example.test", BundlePoll: time.Second}, "coordinator's own --trust-domain"},
		"map of other td":   {SpireConfig{BundleFile: bundle, TrustDomain: "spire.test", MapFile: otherMap, BundlePoll: time.Second}, "could never match"},
		"bad poll interval": {SpireConfig{BundleFile: bundle, TrustDomain: "spire.test", BundlePoll: -time.Second}, "--trust-bundle-poll"},
		"missing bundle":    {SpireConfig{BundleFile: filepath.Join(dir, "nope.pem"), TrustDomain: "spire.test", BundlePoll: time.Second}, "--trust-bundle"},
	} {
		if _, err := c.c.open(context.Background(), own, log); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
}

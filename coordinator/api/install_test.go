package api_test

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/scripts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func installServer(t *testing.T, distDir, publicURL string) (*httptest.Server, *ca.CA) {
	t.Helper()
	authority, err := ca.Open(t.TempDir(), spiffeid.RequireTrustDomainFromString("example.test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Config{CA: authority, InstallScript: scripts.InstallScript, DistDir: distDir, PublicURL: publicURL})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, authority
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if len(hdr) == 2 {
		req.Host = hdr[1]
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestInstallRoutes(t *testing.T) {
	dist := t.TempDir()
	os.WriteFile(filepath.Join(dist, "latch-linux-amd64"), []byte("binary"), 0o755)
	os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte("sums"), 0o644)
	os.Mkdir(filepath.Join(dist, "latch-linux-arm64"), 0o755) // not a regular file
	outside := filepath.Join(filepath.Dir(dist), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(dist, "latch-darwin-arm64"))
	srv, authority := installServer(t, dist, "")

	code, body := get(t, srv.URL+"/install.sh", "Host", "coord.example:7443")
	if code != 200 || !strings.Contains(body, "\ndefault_coordinator='https://coord.example:7443'\n") {
		t.Errorf("install.sh: %d, no coordinator URL baked in:\n%.300s", code, body)
	}
	code, body = get(t, srv.URL+"/install.sh", "Host", "x';rm -rf /;'")
	if code != 400 || !strings.Contains(body, "want https://HOST[:PORT]") {
		t.Errorf("install.sh with a hostile Host: %d %s", code, body)
	}

	code, body = get(t, srv.URL+"/ca.pem")
	blk, rest := pem.Decode([]byte(body))
	if code != 200 || blk == nil || blk.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("ca.pem: %d %q, want one PEM certificate and nothing else (install.sh refuses more)", code, body)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || ca.SPKIFingerprint(cert) != authority.Fingerprint() {
		t.Errorf("ca.pem is not the CA root: %v", err)
	}

	if code, body := get(t, srv.URL+"/dl/latch-linux-amd64"); code != 200 || body != "binary" {
		t.Errorf("binary: %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/dl/SHA256SUMS"); code != 200 || body != "sums" {
		t.Errorf("sums: %d %q", code, body)
	}
	for _, p := range []string{
		"/dl/latch-darwin-amd64",   // absent
		"/dl/latch-linux-arm64",    // a directory
		"/dl/latch-darwin-arm64",   // a symlink out of the directory
		"/dl/..%2fsecret",          // traversal, escaped
		"/dl/../secret",            // traversal
		"/dl/%2e%2e%2fsecret",      // traversal, all escaped
		"/dl/latch-linux-amd64%00", // NUL
		"/dl/",
		"/dl/.hidden",
	} {
		code, body := get(t, srv.URL+p)
		if code == 200 || strings.Contains(body, "secret\"") || body == "secret" {
			t.Errorf("GET %s: %d %q, want refused", p, code, body)
		}
	}

	// No --dist-dir: a clear 404.
	none, _ := installServer(t, "", "https://coord.example:7443")
	code, body = get(t, none.URL+"/dl/SHA256SUMS")
	if code != 404 || !strings.Contains(body, "--dist-dir") {
		t.Errorf("no dist dir: %d %s", code, body)
	}
	// A public URL wins over the Host header.
	code, body = get(t, none.URL+"/install.sh", "Host", "other:1")
	if code != 200 || !strings.Contains(body, "\ndefault_coordinator='https://coord.example:7443'\n") {
		t.Errorf("install.sh with --public-url: %d", code)
	}
}

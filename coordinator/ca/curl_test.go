package ca_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
)

// curlWithCA fetches https://NAME:PORT/ from a loopback server that
// presents chain (signed by c), as the install script does: curl verifying
// against the CA certificate alone (--cacert), NAME resolving to the
// server. It returns curl's output and error.
func curlWithCA(t *testing.T, c *ca.CA, name string, chain []*x509.Certificate, key crypto.Signer) (string, error) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("this test needs curl (make deps installs it): %v", err)
		}
		t.Skipf("curl is not installed: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "served install script")
	}))
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // curl's refusals
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--proto", "=https", "--cacert", caFile,
		"--resolve", name+":"+port+":127.0.0.1", "https://"+name+":"+port+"/").CombinedOutput()
	return string(out), err
}

// TestCurlRefusesANodeAsTheCoordinator: a node enrolled with the name of
// the coordinator's host (here localhost) must not pass curl's check of the
// coordinator, which is all the install script has. curl (OpenSSL) falls
// back to the subject CN when a certificate has no DNS or IP SAN, and
// accepts any certificate whose key usages allow serverAuth.
func TestCurlRefusesANodeAsTheCoordinator(t *testing.T) {
	c := newCA(t, td, nil)

	// The coordinator's certificate passes: the check can succeed.
	coord, err := c.ServerSVID([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out, err := curlWithCA(t, c, "localhost", coord.Certificates, coord.PrivateKey)
	if err != nil || out != "served install script" {
		t.Fatalf("curl refused the coordinator itself: %v\n%s", err, out)
	}

	for _, name := range []string{"localhost", "coord"} {
		node, key := signNode(t, c, name, time.Hour)
		out, err := curlWithCA(t, c, name, node.Certificates, key)
		if err == nil || strings.Contains(out, "served install script") {
			t.Errorf("curl accepted node %q's certificate as the server %s: %v\n%s", name, name, err, out)
		}
		t.Logf("node %q: curl says %s", name, strings.TrimSpace(out))
	}
}

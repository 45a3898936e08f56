package api

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"

	"github.com/latchnet/latch/adminapi/client"
)

// client returns the typed admin API client with the admin token, trusting
// the harness's CA.
func (h *harness) client() *client.Client { return h.clientWith(h.admin) }

// clientWith returns the typed admin API client with a token.
func (h *harness) clientWith(token string) *client.Client {
	return client.New(h.srv.URL, token, h.clientHTTP())
}

// clientHTTP is an HTTP client trusting the harness's CA.
func (h *harness) clientHTTP() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(h.ca.Root())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
}

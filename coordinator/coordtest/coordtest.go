// Package coordtest runs a real coordinator in-process for tests: an
// embedded CA and a SQLite store in a temporary directory, the state
// layer, and the node and admin APIs (package api) served over TLS on
// loopback, with options for a fake clock, SPIRE trust, extensions such
// as the web console, and the API's limits. It offers the typed admin
// client (adminapi/client), raw calls with any credential, and the node
// side of the protocol: join tokens, enrollment with a CSR,
// registration, the view stream and flow reports.
//
// Only tests import it (internal/deptest checks).
package coordtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/node/pin"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TrustDomain is the trust domain of the coordinator's embedded CA.
var TrustDomain = spiffeid.RequireTrustDomainFromString("example.test")

// Options change the coordinator New starts. The zero value is a plain
// coordinator on a fake clock.
type Options struct {
	// Clock is the time of the state layer, the API and (unless CAClock
	// is set) the CA; nil: a fake clock stopped at time.Now().
	Clock *ca.FakeClock
	// CAClock is the CA's clock if not Clock, e.g. ca.SystemClock{}.
	CAClock ca.Clock
	// Spiffe is a SPIRE trust domain whose SVIDs are node identities too;
	// SpiffeMap admits SPIRE nodes; SpireSVIDs is the coordinator's own
	// SPIRE SVID, shown to nodes that offer api.SpiffeALPN.
	Spiffe     *spiffetrust.Trust
	SpiffeMap  *spiffemap.Map
	SpireSVIDs x509svid.Source
	// Store wraps the store the state writes (e.g. to count writes).
	Store func(store.Store) store.Store
	// Extensions mount more routes on the API server, such as the web
	// console; they are built with the coordinator's state.
	Extensions func(*state.State) []func(root *echo.Echo, admin *echo.Group)
	// API changes the API server's Config (limits, keepalive, ...) before
	// the server is built.
	API func(*api.Config)
	// Handler wraps the API server's handler (e.g. to watch requests).
	Handler func(http.Handler) http.Handler
}

// Coordinator is a coordinator serving on loopback until the test ends.
type Coordinator struct {
	tb         testing.TB
	Dir        string // the data directory: CA and database
	URL        string // https://127.0.0.1:PORT
	Server     *httptest.Server
	State      *state.State
	CA         *ca.CA
	API        *api.Server
	Clock      *ca.FakeClock
	AdminToken string // the admin API token
}

// New starts a coordinator, stopped when tb ends.
func New(tb testing.TB, o Options) *Coordinator {
	tb.Helper()
	dir := tb.TempDir()
	clock := o.Clock
	if clock == nil {
		clock = ca.NewFakeClock(time.Now())
	}
	var caClock ca.Clock = clock
	if o.CAClock != nil {
		caClock = o.CAClock
	}
	authority, err := ca.Open(dir, TrustDomain, caClock)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := store.OpenSQLite(filepath.Join(dir, "latch.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	var sto store.Store = db
	if o.Store != nil {
		sto = o.Store(db)
	}
	st, err := state.Open(context.Background(), sto, fanout.New(), state.Options{SpiffeMap: o.SpiffeMap, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	c := &Coordinator{tb: tb, Dir: dir, State: st, CA: authority, Clock: clock, AdminToken: "the-admin-token"}
	cfg := api.Config{State: st, CA: authority, AdminTokenHash: api.AdminTokenHash(c.AdminToken), Keepalive: 200 * time.Millisecond,
		FlowPoll: 50 * time.Millisecond, Spiffe: o.Spiffe, Now: clock.Now, Log: slog.New(slog.DiscardHandler)}
	if o.Extensions != nil {
		cfg.Extensions = o.Extensions(st)
	}
	if o.API != nil {
		o.API(&cfg)
	}
	c.API = api.New(cfg)
	var h http.Handler = c.API
	if o.Handler != nil {
		h = o.Handler(h)
	}
	c.Server = httptest.NewUnstartedServer(h)
	// Clients (browsers among them) drop connections they opened: no log
	// of those.
	c.Server.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	svid, err := authority.ServerSVID([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	c.Server.TLS = api.TLSConfig(authority, svid)
	if o.SpireSVIDs != nil {
		c.Server.TLS = api.TLSConfigWithSPIRE(authority, svid, o.SpireSVIDs)
	}
	c.Server.StartTLS()
	tb.Cleanup(c.Server.Close)
	c.URL = c.Server.URL
	return c
}

// Call sends a request with body (JSON, or YAML if it starts with
// "apiVersion"), its credential set by authz, and the server checked
// against the CA; it returns the status and the body.
func (c *Coordinator) Call(method, path, body string, authz func(*http.Request)) (int, string) {
	c.tb.Helper()
	req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(body, "apiVersion") {
		req.Header.Set("Content-Type", "application/yaml")
	}
	authz(req)
	resp, data := c.Do(req)
	return resp.StatusCode, string(data)
}

// Do sends req with the server checked against the CA and returns the
// answer (its body closed) and the body.
func (c *Coordinator) Do(req *http.Request) (*http.Response, []byte) {
	c.tb.Helper()
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	return resp, data
}

// AdminCall is Call with the admin token; it decodes the answer into out
// if not nil.
func (c *Coordinator) AdminCall(method, path, body string, out any) (int, string) {
	c.tb.Helper()
	code, resp := c.Call(method, path, body, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.AdminToken) })
	if out != nil {
		json.Unmarshal([]byte(resp), out)
	}
	return code, resp
}

// HTTPClient returns an HTTP client that checks the server against the
// coordinator's CA.
func (c *Coordinator) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.CA.Root())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
}

// Client returns the typed admin API client authenticating with token
// (the admin token or an API token).
func (c *Coordinator) Client(token string) *client.Client {
	return client.New(c.URL, token, c.HTTPClient())
}

// Admin returns the typed admin API client with the admin token.
func (c *Coordinator) Admin() *client.Client { return c.Client(c.AdminToken) }

// Token creates a join token for namespace prod, usable uses times for
// ten minutes, granting the workloads grants (grant.Parse syntax).
func (c *Coordinator) Token(uses int, grants ...string) string {
	c.tb.Helper()
	var ws []adminapi.Grant
	for _, g := range grants {
		ws = append(ws, adminapi.GrantSpec(g))
	}
	resp, err := c.Admin().CreateJoinToken(context.Background(), adminapi.JoinTokenRequest{Namespace: "prod", Uses: uses, TTL: "10m", Workloads: ws})
	if err != nil {
		c.tb.Fatalf("token create: %v", err)
	}
	return resp.Token
}

// Node is the client side of a node: its key, its certificate and an
// HTTP client presenting it (without a timeout: streams last).
type Node struct {
	Name string // the node's name; the SPIFFE ID of a SPIRE node
	Key  *ecdsa.PrivateKey
	// Cert is the certificate HTTP presents (read at each handshake).
	Cert tls.Certificate
	HTTP *http.Client
	Info wire.NodeInfo // what enrollment answered
}

// WithCert returns a client of n that presents chain (with n's key), on
// connections of its own.
func (n *Node) WithCert(chain [][]byte) *Node {
	o := &Node{Name: n.Name, Key: n.Key, Info: n.Info, Cert: tls.Certificate{Certificate: chain, PrivateKey: n.Key}}
	cfg := n.HTTP.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &o.Cert, nil }
	o.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	return o
}

// CSR returns a certificate request for key, as a node sends it.
func CSR(tb testing.TB, key *ecdsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// Enroll performs the node side of enrollment with a fresh key, the
// coordinator pinned by the token's CA fingerprint. It returns the node,
// or the HTTP status (0 if there was none) and the coordinator's error
// text.
func (c *Coordinator) Enroll(token, name string) (*Node, int, string) {
	return c.EnrollLabels(token, name, nil)
}

// EnrollLabels is Enroll asking for labels.
func (c *Coordinator) EnrollLabels(token, name string, labels map[string]string) (*Node, int, string) {
	c.tb.Helper()
	tok, err := ca.ParseToken(token)
	if err != nil {
		return nil, 0, err.Error()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.tb.Fatal(err)
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: token, Name: name, Labels: labels, CSR: CSR(c.tb, key)})
	pinned := &http.Client{Transport: &http.Transport{TLSClientConfig: pin.ClientConfig(tok.CAFingerprint)}, Timeout: 30 * time.Second}
	resp, err := pinned.Post(c.URL+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, 0, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return nil, resp.StatusCode, e.Error
	}
	var sr wire.SVIDResponse
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
		c.tb.Fatal(err)
	}
	n := &Node{Name: name, Key: key, Info: sr.Node, Cert: tls.Certificate{Certificate: sr.Chain, PrivateKey: key}}
	pool := x509.NewCertPool()
	for _, b := range sr.Bundle {
		cert, err := x509.ParseCertificate(b)
		if err != nil {
			c.tb.Fatal(err)
		}
		pool.AddCert(cert)
	}
	n.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &n.Cert, nil },
	}}}
	return n, http.StatusOK, ""
}

// MustEnroll is Enroll that fails the test when enrollment is refused.
func (c *Coordinator) MustEnroll(token, name string) *Node {
	c.tb.Helper()
	n, code, msg := c.Enroll(token, name)
	if n == nil {
		c.tb.Fatalf("enroll %s: %d %s", name, code, msg)
	}
	return n
}

// Post sends in as JSON to path as node n, decodes a 200 answer into out
// (if not nil), and returns the status and the body.
func (c *Coordinator) Post(n *Node, path string, in, out any) (int, string) {
	c.tb.Helper()
	body, _ := json.Marshal(in)
	resp, err := n.HTTP.Post(c.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		json.Unmarshal(buf.Bytes(), out)
	}
	return resp.StatusCode, buf.String()
}

// PublicKey is the WireGuard key Register declares for a node: its own,
// as keys must be unique, and the same at every registration.
func PublicKey(name string) string {
	k := sha256.Sum256([]byte(name))
	return base64.StdEncoding.EncodeToString(k[:])
}

// Register declares n's key (PublicKey), an endpoint and the workloads
// ws, as the agent does, and returns the status and the body.
func (c *Coordinator) Register(n *Node, ws ...wire.WorkloadDecl) (int, string) {
	c.tb.Helper()
	return c.Post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: PublicKey(n.Name),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")}, Workloads: ws}, nil)
}

// MustRegister is Register that fails the test unless it succeeds.
func (c *Coordinator) MustRegister(n *Node, ws ...wire.WorkloadDecl) {
	c.tb.Helper()
	if code, body := c.Register(n, ws...); code != http.StatusOK {
		c.tb.Fatalf("register %s: %d %s", n.Name, code, body)
	}
}

// ErrorOf decodes the wire.Error of a refusal's body.
func ErrorOf(body string) wire.Error {
	var e wire.Error
	json.Unmarshal([]byte(body), &e)
	return e
}

// ViewStream opens n's view stream, asking for a full view, and returns
// its lines (one wire.StreamMessage each); it is closed when the test
// ends, or after 20 s.
func (c *Coordinator) ViewStream(n *Node) *bufio.Scanner {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c.tb.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", c.URL+wire.PathStream+"?have=0", nil)
	resp, err := n.HTTP.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		c.tb.Fatalf("stream of %s: %s", n.Name, resp.Status)
	}
	return bufio.NewScanner(resp.Body)
}

// Connect opens n's view stream (as the agent does) and reads it until
// ctx ends; the node is online meanwhile. It returns once the stream
// answered.
func (c *Coordinator) Connect(ctx context.Context, n *Node) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.URL+wire.PathStream, nil)
	if err != nil {
		return err
	}
	r, err := n.HTTP.Do(req)
	if err != nil {
		return err
	}
	if r.StatusCode != http.StatusOK {
		r.Body.Close()
		return fmt.Errorf("stream of %s: %d", n.Name, r.StatusCode)
	}
	go func() {
		defer r.Body.Close()
		io.Copy(io.Discard, r.Body)
	}()
	return nil
}

// PostFlows sends flow records as n's agent does and returns how many
// the coordinator accepted; a refusal, or rejected records, are errors.
func (c *Coordinator) PostFlows(n *Node, recs ...wire.FlowRecord) (int, error) {
	body, _ := json.Marshal(wire.FlowBatch{Records: recs})
	r, err := n.HTTP.Post(c.URL+wire.PathFlows, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(r.Body)
		return 0, fmt.Errorf("flows of %s: %d %s", n.Name, r.StatusCode, b)
	}
	var out wire.FlowBatchResponse
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Rejected > 0 {
		return out.Accepted, fmt.Errorf("flows of %s: %d rejected: %s", n.Name, out.Rejected, out.Message)
	}
	return out.Accepted, nil
}

// SpireNode is a node whose identity is svid, from the SPIRE-like CA
// spire: it offers api.SpiffeALPN, as `latch node --spiffe-socket` does,
// and checks that the coordinator answers with an SVID of spire.
func SpireNode(spire *spiffetest.CA, svid *x509svid.SVID) *Node {
	bundle := spire.Bundle()
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: svid.PrivateKey}},
		NextProtos:   []string{api.SpiffeALPN, "http/1.1"},
		// The coordinator's SPIRE SVID has no DNS name: its chain is
		// checked against the SPIRE bundle here instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, _, err = x509svid.Verify([]*x509.Certificate{cert}, bundle)
			return err
		},
	}
	return &Node{Name: svid.ID.String(), HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
}

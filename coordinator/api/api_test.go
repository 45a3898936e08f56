package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/node/pin"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type harness struct {
	t     *testing.T
	clock *ca.FakeClock
	srv   *httptest.Server
	ca    *ca.CA
	admin string
	api   *Server
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, harnessOpts{}) }

// harnessOpts add SPIRE trust to a harness.
type harnessOpts struct {
	spiffe     *spiffetrust.Trust
	spiffeMap  *spiffemap.Map
	spireSVIDs x509svid.Source // the coordinator's SPIRE SVID
	// store wraps the store the state writes (to count writes); config
	// changes the server's Config before it is built.
	store  func(store.Store) store.Store
	config func(*Config)
}

func newHarnessWith(t *testing.T, o harnessOpts) *harness {
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("example.test")
	clock := ca.NewFakeClock(time.Now())
	authority, err := ca.Open(dir, td, clock)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(filepath.Join(dir, "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var sto store.Store = db
	if o.store != nil {
		sto = o.store(db)
	}
	st, err := state.Open(context.Background(), sto, fanout.New(), state.Options{SpiffeMap: o.spiffeMap, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ca: authority, clock: clock, admin: "secret-admin"}
	cfg := Config{State: st, CA: authority, AdminTokenHash: AdminTokenHash(h.admin), Keepalive: 200 * time.Millisecond,
		FlowPoll: 50 * time.Millisecond, Spiffe: o.spiffe, Now: clock.Now}
	if o.config != nil {
		o.config(&cfg)
	}
	s := New(cfg)
	h.api = s
	h.srv = httptest.NewUnstartedServer(s)
	svid, err := authority.ServerSVID([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.TLS = TLSConfig(authority, svid)
	if o.spireSVIDs != nil {
		h.srv.TLS = TLSConfigWithSPIRE(authority, svid, o.spireSVIDs)
	}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) adminCall(method, path, body string, out any) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.admin)
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(body, "apiVersion") {
		req.Header.Set("Content-Type", "application/yaml")
	}
	pool := x509.NewCertPool()
	pool.AddCert(h.ca.Root())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if out != nil {
		json.Unmarshal(buf.Bytes(), out)
	}
	return resp.StatusCode, buf.String()
}

// token creates a join token for namespace prod granting the workloads
// specs (grant.Parse syntax).
func (h *harness) token(uses int, specs ...string) string {
	var ws []adminapi.Grant
	for _, s := range specs {
		ws = append(ws, adminapi.GrantSpec(s))
	}
	resp, err := h.client().CreateJoinToken(context.Background(), adminapi.JoinTokenRequest{Namespace: "prod", Uses: uses, TTL: "10m", Workloads: ws})
	if err != nil {
		h.t.Fatalf("token create: %v", err)
	}
	return resp.Token
}

type nodeClient struct {
	key  *ecdsa.PrivateKey
	cert tls.Certificate
	http *http.Client
	info wire.NodeInfo
}

func csrFor(t *testing.T, key *ecdsa.PrivateKey) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// enroll performs the node side of enrollment; it returns the HTTP status
// and the coordinator's error text on failure.
func (h *harness) enroll(tok, name string) (*nodeClient, int, string) {
	return h.enrollLabels(tok, name, nil)
}

// enrollLabels enrolls asking for labels.
func (h *harness) enrollLabels(tok, name string, labels map[string]string) (*nodeClient, int, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, _ := json.Marshal(wire.EnrollRequest{Token: tok, Name: name, Labels: labels, CSR: csrFor(h.t, key)})
	fp := strings.Split(tok, ".")[3]
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pin.ClientConfig(fp)}}
	resp, err := c.Post(h.srv.URL+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, 0, err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e wire.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return nil, resp.StatusCode, e.Error
	}
	var sr wire.SVIDResponse
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
		h.t.Fatal(err)
	}
	n := &nodeClient{key: key, info: sr.Node}
	n.cert = tls.Certificate{Certificate: sr.Chain, PrivateKey: key}
	pool := x509.NewCertPool()
	for _, b := range sr.Bundle {
		cert, _ := x509.ParseCertificate(b)
		pool.AddCert(cert)
	}
	n.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &n.cert, nil },
	}}}
	return n, 200, ""
}

func (h *harness) post(n *nodeClient, path string, in, out any) (int, string) {
	h.t.Helper()
	body, _ := json.Marshal(in)
	resp, err := n.http.Post(h.srv.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		json.Unmarshal(buf.Bytes(), out)
	}
	return resp.StatusCode, buf.String()
}

const policies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web-api, namespace: prod}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
  egress: [{to: [{podSelector: {}}]}]
`

func TestNodeLifecycle(t *testing.T) {
	h := newHarness(t)
	tok := h.token(2, "namespace=prod,name=w-*")
	a, code, msg := h.enroll(tok, "node-a")
	if a == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	b, _, _ := h.enroll(tok, "node-b")
	if _, code, msg := h.enroll(tok, "node-c"); code != http.StatusUnauthorized || !strings.Contains(msg, "used") {
		t.Fatalf("third use of a 2-use token: %d %q", code, msg)
	}
	if a.info.Namespace != "prod" || !a.info.IP.IsValid() || a.info.Route.String() != "100.64.0.0/10" {
		t.Fatalf("node info: %+v", a.info)
	}
	for _, n := range []*nodeClient{a, b} {
		code, body := h.post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: "key-" + n.info.Name,
			Workloads: []wire.WorkloadDecl{{Name: "w-" + n.info.Name, Namespace: "prod", Ports: []inventory.Port{{Port: 80}}}}}, nil)
		if code != 200 {
			t.Fatalf("register: %d %s", code, body)
		}
	}
	// Stream: the first message is a full view with no peers (deny).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+wire.PathStream+"?have=0", nil)
	resp, err := a.http.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, resp)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() wire.StreamMessage {
		for lines.Scan() {
			var m wire.StreamMessage
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if !m.Keepalive {
				return m
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return wire.StreamMessage{}
	}
	m := next()
	if m.Full == nil || len(m.Full.Peers) != 0 {
		t.Fatalf("first message: %+v", m)
	}
	// A bad policy is refused with the validator's message.
	c := h.client()
	if _, err := c.ApplyPolicies(ctx, "bad.yaml", "", []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: prod}\nspec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n")); !client.IsCode(err, "invalid") || !strings.Contains(err.Error(), "bad.yaml: document 1") {
		t.Fatalf("bad policy: %v", err)
	}
	// A good one makes a and b peers, delivered as a delta.
	if _, err := c.ApplyPolicies(ctx, "", "", []byte(policies)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	m = next()
	if m.Delta == nil || len(m.Delta.UpsertPeers) != 1 || m.Delta.UpsertPeers[0].Node != "node-b" || m.Delta.UpsertPeers[0].PublicKey != "key-node-b" {
		t.Fatalf("after policy: %+v", m)
	}
	// Renewal gives a new certificate.
	var sr wire.SVIDResponse
	if code, body := h.post(a, wire.PathRenew, wire.RenewRequest{CSR: csrFor(t, a.key)}, &sr); code != 200 || len(sr.Chain) == 0 {
		t.Fatalf("renew: %d %s", code, body)
	}
	// Deleting b removes it from a's view; b's certificate is refused.
	if err := c.DeleteNode(ctx, "node-b"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	m = next()
	if m.Delta == nil || len(m.Delta.RemovePeers) != 1 {
		t.Fatalf("after delete: %+v", m)
	}
	if code, body := h.post(b, wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}, nil); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Fatalf("deleted node's certificate: %d %s", code, body)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	// No admin token.
	req, _ := http.NewRequest("GET", h.srv.URL+"/v1/admin/nodes", nil)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin without token: %d", resp.StatusCode)
	}
	// Node calls without a client certificate.
	resp, err = c.Post(h.srv.URL+wire.PathRegister, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("register without a certificate: %d", resp.StatusCode)
	}
	// A token made for another coordinator.
	other, err := ca.Open(t.TempDir(), spiffeid.RequireTrustDomainFromString("example.test"), ca.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := ca.NewToken(other.Fingerprint())
	if n, _, msg := h.enroll(tok.String(), "x"); n != nil || !strings.Contains(msg, "fingerprint mismatch") {
		t.Fatalf("enrolling with a token pinned to another CA: %q", msg)
	}
}

func TestExpiredCertificateIsRefusedWithAReason(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.enroll(h.token(1), "old")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	h.clock.Advance(2 * time.Hour)
	code, body := h.post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}, nil)
	if code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired certificate: %d %s", code, body)
	}
}

package web

import (
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
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/auth"
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

// harness is a real coordinator in-process: CA, SQLite store, state, the
// admin API and the console, served over TLS on loopback.
type harness struct {
	t          *testing.T
	dir        string
	st         *state.State
	ca         *ca.CA
	api        *api.Server
	srv        *httptest.Server
	adminToken string
	adminPW    string // password of the first admin, "admin"
	clock      *fakeNow
	// following counts the flow follow requests being served.
	following atomic.Int64
	flowNode  *enrolledNode  // set by flowNodes
	spire     *spiffetest.CA // the SPIRE-like CA the coordinator trusts
}

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil) }

// newHarnessWith is newHarness with the console's Config changed by
// config (if not nil) before the console is built.
func newHarnessWith(t *testing.T, config func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	clock := &fakeNow{t: time.Now()}
	authority, err := ca.Open(dir, spiffeid.RequireTrustDomainFromString("example.test"), ca.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(filepath.Join(dir, "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// The coordinator trusts a SPIRE-like CA of the trust domain
	// spire.test; its mapping admits spiffe://spire.test/prod/* at once.
	spire := spiffetest.NewCA(t, spireTD.Name())
	smap, err := spiffemap.New([]spiffemap.Entry{{ID: "spiffe://spire.test/prod/*", Namespace: "prod", Labels: map[string]string{"role": "server"}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(context.Background(), db, fanout.New(), state.Options{Now: clock.Now, SpiffeMap: smap})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	pw, err := EnsureFirstAdmin(context.Background(), st, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, st: st, ca: authority, adminToken: "the-admin-token", adminPW: pw, clock: clock, spire: spire}
	cfg := Config{State: st, Flows: StoredFlows{State: st}, Now: clock.Now, Log: log}
	if config != nil {
		config(&cfg)
	}
	web := New(cfg)
	h.api = api.New(api.Config{State: st, CA: authority, AdminTokenHash: api.AdminTokenHash(h.adminToken),
		Keepalive: 500 * time.Millisecond, Now: clock.Now, Log: log, Extensions: []func(*echo.Echo, *echo.Group){web.Mount},
		Spiffe: &spiffetrust.Trust{TD: spireTD, Bundles: spire.Bundle()}})
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") == "true" {
			h.following.Add(1)
			defer h.following.Add(-1)
		}
		h.api.ServeHTTP(w, r)
	}))
	// Chromium opens spare connections it then drops: no log of those.
	h.srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	svid, err := authority.ServerSVID([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.TLS = api.TLSConfigWithSPIRE(authority, svid, spiffetest.Static{SVID: h.spire.Issue(t, "spiffe://spire.test/latch/coordinator", 24*time.Hour)})
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

// client is a browser-like HTTP client with a cookie jar.
type client struct {
	h    *harness
	http *http.Client
	csrf string
	// bearer, when set, is sent as the Authorization header.
	bearer string
}

func (h *harness) newClient() *client {
	jar, _ := cookiejar.New(nil)
	return &client{h: h, http: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

type resp struct {
	code int
	body string
	hdr  http.Header
}

func (c *client) do(method, path, contentType, body string, hdr map[string]string) resp {
	c.h.t.Helper()
	req, err := http.NewRequest(method, c.h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		c.h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	r, err := c.http.Do(req)
	if err != nil {
		c.h.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, string(b), r.Header}
}

// call sends JSON with the CSRF header and decodes the answer into out.
func (c *client) call(method, path string, in, out any) resp {
	c.h.t.Helper()
	var body string
	if in != nil {
		b, _ := json.Marshal(in)
		body = string(b)
	}
	r := c.do(method, path, "application/json", body, map[string]string{auth.CSRFHeader: c.csrf})
	if out != nil && r.code < 300 {
		if err := json.Unmarshal([]byte(r.body), out); err != nil {
			c.h.t.Fatalf("%s %s: decoding %q: %v", method, path, r.body, err)
		}
	}
	return r
}

func (c *client) login(name, pw string) resp {
	c.h.t.Helper()
	b, _ := json.Marshal(loginRequest{Name: name, Password: pw})
	r := c.do("POST", "/console/login", "application/json", string(b), nil)
	if r.code == 200 {
		var p state.Principal
		json.Unmarshal([]byte(r.body), &p)
		c.csrf = p.CSRF
	}
	return r
}

func (h *harness) loggedIn(name, pw string) *client {
	h.t.Helper()
	c := h.newClient()
	if r := c.login(name, pw); r.code != 200 {
		h.t.Fatalf("login as %s: %d %s", name, r.code, r.body)
	}
	return c
}

func (h *harness) admin() *client { return h.loggedIn("admin", h.adminPW) }

// createUser makes a user through the admin API and returns its password.
func (h *harness) createUser(name, role string) string {
	h.t.Helper()
	var out adminapi.UserCreated
	if r := h.admin().call("POST", "/v1/admin/users", adminapi.UserRequest{Name: name, Role: role}, &out); r.code != 200 {
		h.t.Fatalf("creating user %s: %d %s", name, r.code, r.body)
	}
	return out.Password
}

// enroll enrolls a node with a join token through the real enrollment API.
func (h *harness) enroll(token, name string) error {
	_, err := h.enrollNode(token, name)
	return err
}

// enrolledNode is a node's client identity after enrollment.
type enrolledNode struct {
	name string
	http *http.Client // mTLS with the node's SVID, pinned to the CA
}

func (h *harness) enrollNode(token, name string) (*enrolledNode, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(wire.EnrollRequest{Token: token, Name: name, CSR: csr})
	tok, err := ca.ParseToken(token)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pin.ClientConfig(tok.CAFingerprint)}, Timeout: 30 * time.Second}
	r, err := c.Post(h.srv.URL+wire.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		return nil, fmt.Errorf("enroll %s: %d %s", name, r.StatusCode, b)
	}
	var sr wire.SVIDResponse
	if err := json.NewDecoder(r.Body).Decode(&sr); err != nil {
		return nil, err
	}
	cfg := pin.ClientConfig(tok.CAFingerprint)
	cfg.Certificates = []tls.Certificate{{Certificate: sr.Chain, PrivateKey: key}}
	return &enrolledNode{name: name, http: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}, nil
}

// connect opens the node's view stream (as the agent does) until ctx
// ends; the node is online meanwhile. It returns once the stream answered.
func (h *harness) connect(ctx context.Context, n *enrolledNode) error {
	req, err := http.NewRequestWithContext(ctx, "GET", h.srv.URL+wire.PathStream, nil)
	if err != nil {
		return err
	}
	r, err := n.http.Do(req)
	if err != nil {
		return err
	}
	if r.StatusCode != 200 {
		r.Body.Close()
		return fmt.Errorf("stream of %s: %d", n.name, r.StatusCode)
	}
	go func() {
		defer r.Body.Close()
		io.Copy(io.Discard, r.Body)
	}()
	return nil
}

func pathFor(r *echo.Route) string {
	p := r.Path
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") {
			parts[i] = "x"
		}
		if s == "*" {
			parts[i] = "app.js"
		}
	}
	return strings.Join(parts, "/")
}

// register declares the node's key, endpoint and workloads, as the agent does.
func (h *harness) register(n *enrolledNode, ws ...wire.WorkloadDecl) error {
	key := make([]byte, 32)
	rand.Read(key)
	body, _ := json.Marshal(wire.RegisterRequest{PublicKey: base64.StdEncoding.EncodeToString(key),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")}, Workloads: ws})
	r, err := n.http.Post(h.srv.URL+wire.PathRegister, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		return fmt.Errorf("register %s: %d %s", n.name, r.StatusCode, b)
	}
	return nil
}

// internalPolicy lets every workload of prod reach every other one.
const internalPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: internal
  namespace: prod
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {}
  egress:
  - to:
    - podSelector: {}
`

// postFlows sends flow records as the node's agent does (POST
// /v1/node/flows over mTLS) and returns how many the coordinator accepted.
func (h *harness) postFlows(n *enrolledNode, recs ...wire.FlowRecord) (int, error) {
	body, _ := json.Marshal(wire.FlowBatch{Records: recs})
	r, err := n.http.Post(h.srv.URL+wire.PathFlows, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	var out wire.FlowBatchResponse
	if r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		return 0, fmt.Errorf("flows of %s: %d %s", n.name, r.StatusCode, b)
	}
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Rejected > 0 {
		return out.Accepted, fmt.Errorf("flows of %s: %d rejected: %s", n.name, out.Rejected, out.Message)
	}
	return out.Accepted, nil
}

// spireTD is the trust domain of the harness's SPIRE-like CA.
var spireTD = spiffeid.RequireTrustDomainFromString("spire.test")

// spireNode is a node whose identity is an SVID from the SPIRE-like CA:
// it offers the ALPN latch-spiffe, as `latch node --spiffe-socket` does,
// and checks that the coordinator answers with its SPIRE SVID.
func (h *harness) spireNode(id string) *enrolledNode {
	h.t.Helper()
	svid := h.spire.Issue(h.t, id, 24*time.Hour)
	bundle := h.spire.Bundle()
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: svid.PrivateKey}},
		NextProtos:   []string{api.SpiffeALPN, "http/1.1"},
		// The coordinator's SPIRE SVID has no DNS name: its chain is
		// checked against the SPIRE bundle here instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, _, err = x509svid.Verify([]*x509.Certificate{c}, bundle)
			return err
		},
	}
	return &enrolledNode{name: svid.ID.String(), http: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}}
}

// registerSpire registers a SPIRE node as its agent does and returns the
// coordinator's answer: 200, or 403 with the code pending or rejected.
func (h *harness) registerSpire(n *enrolledNode) (int, wire.Error) {
	h.t.Helper()
	key := sha256.Sum256([]byte(n.name)) // a key of its own: keys are unique
	body, _ := json.Marshal(wire.RegisterRequest{PublicKey: base64.StdEncoding.EncodeToString(key[:])})
	r, err := n.http.Post(h.srv.URL+wire.PathRegister, "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer r.Body.Close()
	var e wire.Error
	if r.StatusCode != 200 {
		json.NewDecoder(r.Body).Decode(&e)
	}
	return r.StatusCode, e
}

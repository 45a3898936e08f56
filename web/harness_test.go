package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// harness is a real coordinator in-process (coordtest) with the console
// mounted, trusting a SPIRE-like CA, and the helpers of these tests.
type harness struct {
	*coordtest.Coordinator
	t       *testing.T
	adminPW string // password of the first admin, "admin"
	// following counts the flow follow requests being served.
	following atomic.Int64
	flowNode  *coordtest.Node // set by flowNodes
	spire     *spiffetest.CA  // the SPIRE-like CA the coordinator trusts
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil) }

// newHarnessWith is newHarness with the console's Config changed by
// config (if not nil) before the console is built.
func newHarnessWith(t *testing.T, config func(*Config)) *harness {
	t.Helper()
	clock := ca.NewFakeClock(time.Now())
	// The coordinator trusts a SPIRE-like CA of the trust domain
	// spire.test; its mapping admits spiffe://spire.test/prod/* at once.
	spire := spiffetest.NewCA(t, spireTD.Name())
	smap, err := spiffemap.New([]spiffemap.Entry{{ID: "spiffe://spire.test/prod/*", Namespace: "prod", Labels: map[string]string{"role": "server"}}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	h := &harness{t: t, spire: spire}
	h.Coordinator = coordtest.New(t, coordtest.Options{
		Clock:      clock,
		CAClock:    ca.SystemClock{},
		Spiffe:     &spiffetrust.Trust{TD: spireTD, Bundles: spire.Bundle()},
		SpiffeMap:  smap,
		SpireSVIDs: spiffetest.Static{SVID: spire.Issue(t, "spiffe://spire.test/latch/coordinator", 24*time.Hour)},
		Extensions: func(st *state.State) []func(*echo.Echo, *echo.Group) {
			cfg := Config{State: st, Flows: StoredFlows{State: st}, Now: clock.Now, Log: log}
			if config != nil {
				config(&cfg)
			}
			return []func(*echo.Echo, *echo.Group){New(cfg).Mount}
		},
		API: func(c *api.Config) { c.Keepalive, c.FlowPoll = 500*time.Millisecond, time.Second },
		Handler: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("follow") == "true" {
					h.following.Add(1)
					defer h.following.Add(-1)
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	if h.adminPW, err = EnsureFirstAdmin(context.Background(), h.State, h.Dir, log); err != nil {
		t.Fatal(err)
	}
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
	req, err := http.NewRequest(method, c.h.URL+path, strings.NewReader(body))
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

// spireTD is the trust domain of the harness's SPIRE-like CA.
var spireTD = spiffeid.RequireTrustDomainFromString("spire.test")

// spireNode is a node whose identity is an SVID of the SPIRE-like CA
// for id (coordtest.SpireNode).
func (h *harness) spireNode(id string) *coordtest.Node {
	h.t.Helper()
	return coordtest.SpireNode(h.spire, h.spire.Issue(h.t, id, 24*time.Hour))
}

// registerSpire registers a SPIRE node as its agent does and returns the
// coordinator's answer: 200, or 403 with the code pending or rejected.
func (h *harness) registerSpire(n *coordtest.Node) (int, wire.Error) {
	h.t.Helper()
	code, body := h.Register(n)
	return code, coordtest.ErrorOf(body)
}

// Package api serves the coordinator's HTTPS APIs with echo: the node API
// (enrollment with a join token; everything else over mTLS, the node's
// identity taken from its verified certificate only: an SVID of the
// embedded CA, or of a trusted SPIRE trust domain) and the admin API
// (the admin bearer token, API tokens with a role, or a web console session
// cookie with a CSRF header). Every change goes through package state.
// Public, without authentication: the install script (/install.sh), the CA
// certificate (/ca.pem), the binaries it installs (/dl/) and the OpenAPI
// description of the admin API (/v1/openapi.json). The admin API answers
// only the types of package adminapi (converted at this edge, convert.go).
//
// Only packages coordinator (which serves it) and web (whose console
// mounts on it and shares its request helpers), and tests, import it.
package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/relay"
	"github.com/latchnet/latch/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Config wires a Server.
type Config struct {
	State *state.State
	CA    *ca.CA
	// AdminTokenHash is the SHA-256 of the admin API token.
	AdminTokenHash []byte
	SVIDTTL        time.Duration // default 1 h
	Pool           netip.Prefix  // the overlay, told to nodes as their route
	Keepalive      time.Duration // stream keepalive, default 10 s
	// STUNPort is told to nodes in register responses: the port of the
	// coordinator's STUN server, 0 for none.
	STUNPort int
	// FlowPoll is how often a following flow query looks for new flows;
	// default 1 s.
	FlowPoll time.Duration
	Now      func() time.Time
	Log      *slog.Logger
	// Extensions mount more routes: the web console adds its pages on the
	// root and its endpoints on the admin group, which carries admin auth
	// and the role check.
	Extensions []func(root *echo.Echo, admin *echo.Group)
	// InstallScript returns the install script served at /install.sh with
	// the given coordinator URL baked in; nil serves none.
	InstallScript func(coordinatorURL string) ([]byte, error)
	// PublicURL is the coordinator URL baked into the install script; if
	// empty, https:// and the Host the script was fetched with.
	PublicURL string
	// DistDir holds the binaries and SHA256SUMS served at /dl/ (`make
	// dist`); empty serves none.
	DistDir string
	// Spiffe, if set, is a SPIRE trust domain whose SVIDs are node
	// identities too (see state.SpiffeNode); nil trusts only CA.
	Spiffe *spiffetrust.Trust
	// Limits bound the time and connections clients may hold; zero
	// fields take DefaultLimits.
	Limits Limits
	// EnrollLimit bounds enrollment attempts per source address; nil
	// takes EnrollLimiter().
	EnrollLimit *ratelimit.Limiter
	// NoRelay leaves out the relay (package relay) that the node API
	// serves at relay.Path by default.
	NoRelay bool
}

// Server is the coordinator's HTTP handler.
type Server struct {
	cfg     Config
	e       *echo.Echo
	metrics *metrics
	relay   *relay.Server // nil with Config.NoRelay
}

const (
	ctxNode   = "latch.node"
	ctxSpiffe = "latch.spiffe" // the SPIFFE ID of a node whose SVID is from SPIRE
	ctxSerial = "latch.serial" // the serial of a node's certificate from the embedded CA
)

// New builds the handler.
func New(cfg Config) *Server {
	if cfg.SVIDTTL == 0 {
		cfg.SVIDTTL = time.Hour
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = 10 * time.Second
	}
	if cfg.FlowPoll == 0 {
		cfg.FlowPoll = time.Second
	}
	if !cfg.Pool.IsValid() {
		cfg.Pool = state.DefaultPool
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.EnrollLimit == nil {
		cfg.EnrollLimit = EnrollLimiter()
	}
	s := &Server{cfg: cfg, e: echo.New()}
	s.metrics = newMetrics(s)
	s.metrics.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if s.relay = s.newRelay(); s.relay != nil {
		s.metrics.reg.MustRegister(s.relay)
	}
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.Use(s.metrics.instrument, s.deadlines)
	s.e.HTTPErrorHandler = s.errorHandler
	s.e.POST(wire.PathEnroll, s.enroll, rateLimited(cfg.EnrollLimit, "enrollment"), BodyLimit(SmallBodyLimit))
	node := s.e.Group("", s.nodeAuth)
	node.POST(wire.PathRenew, s.renew, BodyLimit(SmallBodyLimit))
	node.POST(wire.PathRegister, s.register, BodyLimit(RegisterBodyLimit))
	node.GET(wire.PathStream, s.stream)
	node.POST(wire.PathFlows, s.flows, BodyLimit(FlowsBodyLimit))
	if s.relay != nil {
		node.GET(relay.Path, s.relayConn)
	}
	admin := s.e.Group("/v1/admin", s.adminAuth)
	s.adminRoutes(admin)
	s.spiffeRoutes(admin)
	s.subnetRoutes(admin)
	s.e.GET(adminapi.OpenAPIPath, s.openAPI)
	s.installRoutes()
	for _, ext := range cfg.Extensions {
		ext(s.e, admin)
	}
	return s
}

// openAPI serves the OpenAPI description of the admin API, without
// authentication: it holds no data, only the routes and their types.
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, adminapi.OpenAPI)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.e.ServeHTTP(w, r) }

// apiError is an error with an HTTP status and a stable code.
type apiError struct {
	status int
	code   string
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// body is the error's answer on the admin API.
func (e *apiError) body() adminapi.Error { return adminapi.Error{Error: e.err.Error(), Code: e.code} }

func fail(status int, code string, format string, a ...any) error {
	return &apiError{status: status, code: code, err: fmt.Errorf(format, a...)}
}

// classify maps state and store errors to HTTP answers.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, store.ErrTokenUsed):
		return &apiError{http.StatusUnauthorized, "token_used", err}
	case errors.Is(err, store.ErrTokenExpired):
		return &apiError{http.StatusUnauthorized, "token_expired", err}
	case errors.Is(err, store.ErrTokenRevoked):
		return &apiError{http.StatusUnauthorized, "token_revoked", err}
	case errors.Is(err, state.ErrNotGranted):
		return &apiError{http.StatusForbidden, "not_granted", err}
	case errors.Is(err, state.ErrLimit):
		return &apiError{http.StatusForbidden, "limit", err}
	case errors.Is(err, policy.ErrInvalid), errors.Is(err, state.ErrInvalid):
		return &apiError{http.StatusBadRequest, "invalid", err}
	case errors.Is(err, store.ErrConflict):
		return &apiError{http.StatusConflict, "conflict", err}
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusNotFound, "not_found", err}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return &apiError{he.Code, "http", fmt.Errorf("%v", he.Message)}
	}
	return &apiError{http.StatusInternalServerError, "internal", err}
}

func (s *Server) errorHandler(err error, c echo.Context) {
	ae := classify(err)
	if ae.status >= 500 {
		s.cfg.Log.Error("request failed", "path", c.Path(), "err", err)
	}
	if c.Response().Committed {
		return
	}
	if strings.HasPrefix(c.Request().URL.Path, adminapi.Prefix+"/") {
		_ = c.JSON(ae.status, ae.body())
		return
	}
	_ = c.JSON(ae.status, wire.Error{Error: ae.err.Error(), Code: ae.code})
}

// bind reads an admin API body: JSON, strictly (an unknown field is
// refused, so that a misspelt option is not silently ignored).
func bind(c echo.Context, v any) error { return ReadJSON(c, v, true) }

// bindWire reads a node API body: JSON, ignoring unknown fields, so that
// an agent newer than the coordinator keeps working during an upgrade.
func bindWire(c echo.Context, v any) error { return ReadJSON(c, v, false) }

// parseCSR checks a CSR before anything is stored.
func parseCSR(der []byte) error {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fail(http.StatusBadRequest, "bad_csr", "csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return fail(http.StatusBadRequest, "bad_csr", "csr signature: %v", err)
	}
	return nil
}

func (s *Server) svidResponse(chain []*x509.Certificate, n store.Node) wire.SVIDResponse {
	out := wire.SVIDResponse{
		Node: wire.NodeInfo{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, IP: n.IP, Route: s.cfg.Pool},
	}
	for _, c := range chain {
		out.Chain = append(out.Chain, c.Raw)
	}
	if len(chain) > 0 {
		out.ExpiresAt = chain[0].NotAfter
	}
	out.Bundle = [][]byte{s.cfg.CA.Root().Raw}
	return out
}

// signer returns a state callback that issues the SVID and keeps it.
func (s *Server) signer(csr []byte, keep *[]*x509.Certificate) func(store.Node) (state.Cert, error) {
	return func(n store.Node) (state.Cert, error) {
		svid, err := s.cfg.CA.SignNode(csr, n.Name, s.cfg.SVIDTTL)
		if err != nil {
			return state.Cert{}, err
		}
		*keep = svid.Certificates
		return state.Cert{Serial: serialHex(svid.Certificates[0]), NotAfter: svid.Certificates[0].NotAfter}, nil
	}
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

func (s *Server) enroll(c echo.Context) error {
	var req wire.EnrollRequest
	if err := bindWire(c, &req); err != nil {
		return err
	}
	tok, err := ca.ParseToken(strings.TrimSpace(req.Token))
	if err != nil {
		return fail(http.StatusBadRequest, "bad_token", "%v", err)
	}
	if !strings.EqualFold(strings.TrimPrefix(tok.CAFingerprint, "sha256:"), strings.TrimPrefix(s.cfg.CA.Fingerprint(), "sha256:")) {
		return fail(http.StatusUnauthorized, "wrong_coordinator", "the join token was made for another coordinator (its CA hash differs): create a token on this one with `latch admin token create`")
	}
	if err := ca.ValidateNodeName(req.Name); err != nil {
		return fail(http.StatusBadRequest, "bad_name", "%v", err)
	}
	if err := parseCSR(req.CSR); err != nil {
		return err
	}
	secretHash := ca.HashSecret(tok.Secret)
	if err := s.checkEnrollment(c, tok.ID, secretHash, req.Name); err != nil {
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		return err
	}
	var chain []*x509.Certificate
	n, err := s.cfg.State.Enroll(c.Request().Context(), state.Enrollment{
		TokenID: tok.ID, SecretHash: secretHash, Name: req.Name, Labels: req.Labels, Routes: req.Routes,
	}, s.signer(req.CSR, &chain))
	if err != nil {
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		return err
	}
	s.metrics.enrollments.WithLabelValues("ok").Inc()
	return c.JSON(http.StatusOK, s.svidResponse(chain, n))
}

// nodeAuth takes the node's identity from its verified client certificate
// and refuses every certificate but the node's current one (and its
// previous one during the grace after a renewal, state.RenewGrace): so
// revoked and replaced certificates, and those of deleted nodes, are
// refused, also after the name is enrolled again.
func (s *Server) nodeAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return fail(http.StatusUnauthorized, "no_certificate", "this call needs the node's certificate (mTLS); enroll first with a join token")
		}
		if s.cfg.Spiffe != nil {
			if id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0]); err == nil && id.TrustDomain() == s.cfg.Spiffe.TD {
				n, err := s.spiffeNode(c)
				if err != nil {
					return err
				}
				c.Set(ctxNode, n)
				c.Set(ctxSpiffe, id.String())
				return next(c)
			}
		}
		name, _, err := s.cfg.CA.VerifyNode(r.TLS.PeerCertificates)
		if err != nil {
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return fail(http.StatusUnauthorized, "bad_certificate", "%v", err)
		}
		serial := serialHex(r.TLS.PeerCertificates[0])
		n, err := s.cfg.State.NodeForCert(r.Context(), name, serial)
		if err != nil {
			// The connection carries the refused certificate: end it, so
			// that the node's next call makes a handshake with its
			// current one.
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return fail(http.StatusForbidden, "refused", "%v", err)
		}
		c.Set(ctxNode, n)
		c.Set(ctxSerial, serial)
		return next(c)
	}
}

func nodeOf(c echo.Context) store.Node { return c.Get(ctxNode).(store.Node) }

// nodeStillAuthorized checks again, without side effects, that the
// certificate of a node request that nodeAuth let through still
// authorizes the node: open streams call it at least once per keepalive.
func (s *Server) nodeStillAuthorized(c echo.Context) error {
	r := c.Request()
	name := nodeOf(c).Name
	if id, ok := c.Get(ctxSpiffe).(string); ok {
		got, err := s.cfg.Spiffe.Verify(r.TLS.PeerCertificates, s.cfg.Now())
		if err != nil {
			return fail(http.StatusUnauthorized, "bad_certificate", "%v", err)
		}
		if got.String() != id {
			return fail(http.StatusForbidden, "refused", "the certificate names %s, not %s", got, id)
		}
		if err := s.cfg.State.CheckSpiffeNode(r.Context(), id, name); err != nil {
			return fail(http.StatusForbidden, "refused", "%v", err)
		}
		return nil
	}
	got, _, err := s.cfg.CA.VerifyNode(r.TLS.PeerCertificates)
	if err != nil {
		return fail(http.StatusUnauthorized, "bad_certificate", "%v", err)
	}
	if got != name {
		return fail(http.StatusForbidden, "refused", "the certificate names node %q, not %q", got, name)
	}
	serial, _ := c.Get(ctxSerial).(string)
	if err := s.cfg.State.CheckCert(r.Context(), name, serial); err != nil {
		return fail(http.StatusForbidden, "refused", "%v", err)
	}
	return nil
}

// adminStillAuthorized authenticates the request of an open admin stream
// again, so that the stream ends when its user is deleted, its session
// ends or its API token is revoked or expires: streams call it at least
// once per keepalive.
func (s *Server) adminStillAuthorized(c echo.Context) error {
	p, err := s.authenticate(c)
	if err != nil {
		return err
	}
	if was := PrincipalOf(c); p.Name != was.Name || p.Role != was.Role {
		return fail(http.StatusUnauthorized, "unauthorized", "the credential of this stream now stands for %s (%s), not %s (%s): open it again", p.Name, p.Role, was.Name, was.Role)
	}
	return nil
}

func (s *Server) renew(c echo.Context) error {
	var req wire.RenewRequest
	if err := bindWire(c, &req); err != nil {
		return err
	}
	if id, ok := c.Get(ctxSpiffe).(string); ok {
		return fail(http.StatusBadRequest, "spiffe_node", "node %s takes its SVID (%s) from SPIRE, which renews it; the coordinator does not", nodeOf(c).Name, id)
	}
	if err := parseCSR(req.CSR); err != nil {
		return err
	}
	var chain []*x509.Certificate
	serial, _ := c.Get(ctxSerial).(string)
	n, err := s.cfg.State.Renew(c.Request().Context(), nodeOf(c).Name, serial, s.signer(req.CSR, &chain))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.svidResponse(chain, n))
}

func (s *Server) register(c echo.Context) error {
	var req wire.RegisterRequest
	if err := bindWire(c, &req); err != nil {
		return err
	}
	reg := state.Registration{PublicKey: req.PublicKey, Endpoints: req.Endpoints, Ports: req.Ports}
	reg.SpiffeID, _ = c.Get(ctxSpiffe).(string)
	for _, d := range req.Workloads {
		w, err := s.spiffeWorkload(c, d)
		if err != nil {
			return err
		}
		reg.Workloads = append(reg.Workloads, w)
		if d.SpiffeID != "" {
			if reg.WorkloadIDs == nil {
				reg.WorkloadIDs = map[string]string{}
			}
			reg.WorkloadIDs[w.Key()] = d.SpiffeID
		}
	}
	reg.Routes = req.Routes
	n, ws, err := s.cfg.State.Register(c.Request().Context(), nodeOf(c).Name, reg)
	if err != nil {
		return err
	}
	routes, err := s.cfg.State.Routes(c.Request().Context(), n.Name)
	if err != nil {
		return err
	}
	resp := wire.RegisterResponse{
		Node:      wire.NodeInfo{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, IP: n.IP, Route: s.cfg.Pool},
		Workloads: ws,
		STUNPort:  s.cfg.STUNPort,
	}
	for _, r := range routes {
		resp.Routes = append(resp.Routes, wire.RouteStatus{Prefix: r.Prefix.String(), SNAT: r.SNAT, Status: r.Status})
	}
	return c.JSON(http.StatusOK, resp)
}

func adminHash(token string) []byte {
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return h[:]
}

// AdminTokenHash hashes an admin token for Config.AdminTokenHash.
func AdminTokenHash(token string) []byte { return adminHash(token) }

const ctxPrincipal = "latch.principal"

// PrincipalOf returns who makes an admin request (set by the admin auth).
func PrincipalOf(c echo.Context) state.Principal {
	p, _ := c.Get(ctxPrincipal).(state.Principal)
	return p
}

// readOnly reports whether an HTTP method only reads.
func readOnly(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// adminAuth accepts the admin bearer token, an API token, or a console
// session cookie (with the session's CSRF token in a header on every
// request that changes something), then refuses changes by viewers.
func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := s.authenticate(c)
		if err != nil {
			return err
		}
		if !readOnly(c.Request().Method) && p.Role != auth.RoleAdmin {
			return fail(http.StatusForbidden, "read_only", "%s has the role %s, which may only read: ask an admin to make this change", p.Name, p.Role)
		}
		c.Set(ctxPrincipal, p)
		return next(c)
	}
}

func (s *Server) authenticate(c echo.Context) (state.Principal, error) {
	r := c.Request()
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return state.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "the Authorization header must be \"Bearer TOKEN\"")
		}
		tok = strings.TrimSpace(tok)
		if id, secret, ok := auth.ParseAPIToken(tok); ok {
			p, err := s.cfg.State.APITokenPrincipal(r.Context(), id, secret)
			if err != nil {
				return state.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "%v: create a new one in the console or with the admin API", err)
			}
			return p, nil
		}
		if subtle.ConstantTimeCompare(adminHash(tok), s.cfg.AdminTokenHash) != 1 {
			return state.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "missing or wrong admin token: pass --token-file DATA_DIR/admin.token (or LATCH_TOKEN_FILE)")
		}
		return state.Principal{Name: adminActor, Role: auth.RoleAdmin, Via: "admin-token"}, nil
	}
	ck, err := r.Cookie(auth.SessionCookie)
	if err != nil || ck.Value == "" {
		return state.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "not logged in: log in to the web console, or pass the admin token or an API token as \"Authorization: Bearer TOKEN\"")
	}
	p, err := s.cfg.State.SessionPrincipal(r.Context(), ck.Value)
	if err != nil {
		return state.Principal{}, fail(http.StatusUnauthorized, "unauthorized", "your console session has ended: log in again")
	}
	if !readOnly(r.Method) {
		got := r.Header.Get(auth.CSRFHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.CSRF)) != 1 {
			return state.Principal{}, fail(http.StatusForbidden, "csrf", "missing or wrong %s header: reload the console page", auth.CSRFHeader)
		}
	}
	return p, nil
}

// TLSConfig is the listener's TLS configuration: the coordinator's SVID
// with its chain, and client certificates requested but not verified in
// the handshake. nodeAuth verifies them on every node call, so that a
// refused certificate (expired, revoked, another trust domain) gets an
// HTTP answer saying why instead of a bare TLS alert.
func TLSConfig(authority *ca.CA, svid *x509svid.SVID) *tls.Config {
	cfg := authority.ServerTLSConfig(svid)
	cfg.VerifyConnection = nil
	return cfg
}

// Routes lists every route the server answers (for tests that walk them).
func (s *Server) Routes() []*echo.Route { return s.e.Routes() }

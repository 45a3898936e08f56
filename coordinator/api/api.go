// Package api serves the coordinator's HTTPS APIs with echo: the node API
// (enrollment with a join token; everything else over mTLS, the node's
// identity taken from its verified certificate only: an SVID of the
// embedded CA, or of a trusted SPIRE trust domain) and the admin API
// (bearer token). Every change goes through package state.
//
// Only cmd/latch (through package cli) imports it.
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
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
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
	Now            func() time.Time
	Log            *slog.Logger
	// Spiffe, if set, is a SPIRE trust domain whose SVIDs are node
	// identities too (see state.SpiffeNode); nil trusts only CA.
	Spiffe *spiffetrust.Trust
}

// Server is the coordinator's HTTP handler.
type Server struct {
	cfg Config
	e   *echo.Echo
}

const (
	ctxNode   = "latch.node"
	ctxSpiffe = "latch.spiffe" // the SPIFFE ID of a node whose SVID is from SPIRE
)

// New builds the handler.
func New(cfg Config) *Server {
	if cfg.SVIDTTL == 0 {
		cfg.SVIDTTL = time.Hour
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = 10 * time.Second
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
	s := &Server{cfg: cfg, e: echo.New()}
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.HTTPErrorHandler = s.errorHandler
	s.e.POST(wire.PathEnroll, s.enroll)
	node := s.e.Group("", s.nodeAuth)
	node.POST(wire.PathRenew, s.renew)
	node.POST(wire.PathRegister, s.register)
	node.GET(wire.PathStream, s.stream)
	admin := s.e.Group("/v1/admin", s.adminAuth)
	s.adminRoutes(admin)
	s.spiffeRoutes(admin)
	return s
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
	_ = c.JSON(ae.status, wire.Error{Error: ae.err.Error(), Code: ae.code})
}

func bind(c echo.Context, v any) error {
	if err := c.Bind(v); err != nil {
		return fail(http.StatusBadRequest, "bad_request", "reading the request body: %v", err)
	}
	return nil
}

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
func (s *Server) signer(csr []byte, keep *[]*x509.Certificate) func(store.Node) (string, error) {
	return func(n store.Node) (string, error) {
		svid, err := s.cfg.CA.SignNode(csr, n.Name, s.cfg.SVIDTTL)
		if err != nil {
			return "", err
		}
		*keep = svid.Certificates
		return serialHex(svid.Certificates[0]), nil
	}
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

func (s *Server) enroll(c echo.Context) error {
	var req wire.EnrollRequest
	if err := bind(c, &req); err != nil {
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
	var chain []*x509.Certificate
	n, err := s.cfg.State.Enroll(c.Request().Context(), state.Enrollment{
		TokenID: tok.ID, SecretHash: ca.HashSecret(tok.Secret), Name: req.Name, Labels: req.Labels,
	}, s.signer(req.CSR, &chain))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.svidResponse(chain, n))
}

// nodeAuth takes the node's identity from its verified client certificate
// and refuses revoked certificates and deleted nodes.
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
			return fail(http.StatusUnauthorized, "bad_certificate", "%v", err)
		}
		n, err := s.cfg.State.NodeForCert(r.Context(), name, serialHex(r.TLS.PeerCertificates[0]))
		if err != nil {
			return fail(http.StatusForbidden, "refused", "%v", err)
		}
		c.Set(ctxNode, n)
		return next(c)
	}
}

func nodeOf(c echo.Context) store.Node { return c.Get(ctxNode).(store.Node) }

func (s *Server) renew(c echo.Context) error {
	var req wire.RenewRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if id, ok := c.Get(ctxSpiffe).(string); ok {
		return fail(http.StatusBadRequest, "spiffe_node", "node %s takes its SVID (%s) from SPIRE, which renews it; the coordinator does not", nodeOf(c).Name, id)
	}
	if err := parseCSR(req.CSR); err != nil {
		return err
	}
	var chain []*x509.Certificate
	n, err := s.cfg.State.Renew(c.Request().Context(), nodeOf(c).Name, s.signer(req.CSR, &chain))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.svidResponse(chain, n))
}

func (s *Server) register(c echo.Context) error {
	var req wire.RegisterRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	reg := state.Registration{PublicKey: req.PublicKey, Endpoints: req.Endpoints, Ports: req.Ports}
	for _, d := range req.Workloads {
		w, err := s.spiffeWorkload(c, d)
		if err != nil {
			return err
		}
		reg.Workloads = append(reg.Workloads, w)
	}
	n, ws, err := s.cfg.State.Register(c.Request().Context(), nodeOf(c).Name, reg)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, wire.RegisterResponse{
		Node:      wire.NodeInfo{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, IP: n.IP, Route: s.cfg.Pool},
		Workloads: ws,
	})
}

func adminHash(token string) []byte {
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return h[:]
}

// AdminTokenHash hashes an admin token for Config.AdminTokenHash.
func AdminTokenHash(token string) []byte { return adminHash(token) }

func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || subtle.ConstantTimeCompare(adminHash(tok), s.cfg.AdminTokenHash) != 1 {
			return fail(http.StatusUnauthorized, "unauthorized", "missing or wrong admin token: pass --token-file DATA_DIR/admin.token (or LATCH_TOKEN_FILE)")
		}
		return next(c)
	}
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

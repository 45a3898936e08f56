package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/relay"
	"github.com/latchnet/latch/wire"
	"golang.org/x/net/netutil"
)

// This file bounds what a client may cost the coordinator: the size of a
// request body (per route), its content type (JSON only where JSON is
// read), the time to send a request and to take an answer, the number of
// connections, and how often one address may try to enroll.

// Request body limits. A bigger body is refused with 413 from its
// Content-Length, or as soon as the limit is passed when it has none.
const (
	// SmallBodyLimit is for enrollment, renewal and the console login: a
	// token, a name, a CSR, a password.
	SmallBodyLimit int64 = 64 << 10
	// RegisterBodyLimit is for a node's registration: its endpoints,
	// ports and workloads.
	RegisterBodyLimit int64 = 1 << 20
	// FlowsBodyLimit is for a flow batch (at most maxFlowBatch records).
	FlowsBodyLimit int64 = 16 << 20
	// PolicyBodyLimit is for policy YAML (apply, validate).
	PolicyBodyLimit int64 = 8 << 20
	// DefaultBodyLimit is for every other route (the admin API's JSON).
	DefaultBodyLimit int64 = 1 << 20
)

// Limits bound the time and connections clients may hold. Zero fields
// take the defaults of DefaultLimits.
type Limits struct {
	// ReadHeaderTimeout bounds the TLS handshake and reading a request's
	// headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request's body, from the end of its
	// headers.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer that is not a stream; for the
	// streams (view stream, console events, flow tail and export) and the
	// binaries of /dl/ it bounds each write instead, so that they live on
	// while the client takes what is sent.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no request.
	IdleTimeout time.Duration
	// MaxConnections caps the connections served at once; more wait in
	// the kernel's listen backlog until one closes.
	MaxConnections int
	// DeadPeerTimeout is how long a client may stay silent at the TCP
	// level (no answer to keepalive probes, data left unacknowledged)
	// before its connection is closed. It is how a node whose host died
	// without closing its connection is noticed: its view stream ends and
	// a gateway fails over. TCP keepalive probes start after a third of
	// it, every third of it (whole seconds); on Linux TCP_USER_TIMEOUT
	// bounds unacknowledged data to it.
	DeadPeerTimeout time.Duration
}

// DefaultLimits are the limits of a zero Limits field.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       30 * time.Second,
	WriteTimeout:      60 * time.Second,
	IdleTimeout:       120 * time.Second,
	MaxConnections:    4096,
	DeadPeerTimeout:   3 * time.Second,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.ReadHeaderTimeout > 0 {
		d.ReadHeaderTimeout = l.ReadHeaderTimeout
	}
	if l.ReadTimeout > 0 {
		d.ReadTimeout = l.ReadTimeout
	}
	if l.WriteTimeout > 0 {
		d.WriteTimeout = l.WriteTimeout
	}
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.MaxConnections > 0 {
		d.MaxConnections = l.MaxConnections
	}
	if l.DeadPeerTimeout > 0 {
		d.DeadPeerTimeout = l.DeadPeerTimeout
	}
	return d
}

// Enrollment rate per source address (see ratelimit.Source): a burst for
// a fleet enrolling at once behind one address, then a steady rate.
const (
	enrollBurst = 50
	enrollRate  = 5 // per second
)

// HTTPServer returns the http.Server to serve s with: the header and idle
// timeouts of its Limits and small headers. It sets no ReadTimeout or
// WriteTimeout: a connection deadline would end the long-lived streams
// (when a read deadline passes, net/http cancels the running request's
// context); the deadlines middleware sets them per request instead.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.Limits.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.Limits.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
}

// Listen listens on addr (TCP) with TLS, serving at most
// Limits.MaxConnections connections at once, each closed when the client
// goes silent for Limits.DeadPeerTimeout.
//
// The node agent's streams run over HTTP/1.1 (its client offers no h2),
// so HTTP/2 pings would not reach them; TCP keepalive and
// TCP_USER_TIMEOUT work for every connection. When the kernel gives up on
// a connection, net/http's background read of it fails and cancels the
// request's context, which ends the view stream.
func (s *Server) Listen(addr string, cfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ln = deadPeerListener{Listener: ln, timeout: s.cfg.Limits.DeadPeerTimeout, log: s.cfg.Log}
	return tls.NewListener(netutil.LimitListener(ln, s.cfg.Limits.MaxConnections), cfg), nil
}

// deadPeerListener sets up every accepted TCP connection to be closed by
// the kernel when the peer goes silent for timeout.
type deadPeerListener struct {
	net.Listener
	timeout time.Duration
	log     *slog.Logger
}

func (l deadPeerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if err := detectDeadPeer(tc, l.timeout); err != nil && l.log != nil {
			l.log.Warn("cannot set up dead peer detection on a connection", "remote", c.RemoteAddr().String(), "err", err)
		}
	}
	return c, nil
}

// detectDeadPeer makes the kernel close c when its peer answers no
// keepalive probe, or acknowledges no data, for timeout.
func detectDeadPeer(c *net.TCPConn, timeout time.Duration) error {
	step := max(timeout/3, time.Second)
	if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: step, Interval: step, Count: 2}); err != nil {
		return fmt.Errorf("setting keepalive: %w", err)
	}
	return setUserTimeout(c, timeout)
}

// ctxBodyLimit holds the route's body limit (BodyLimit).
const ctxBodyLimit = "latch.bodylimit"

// BodyLimit sets the most a route reads of a request body (see ReadJSON
// and readBody); routes without it read at most DefaultBodyLimit.
func BodyLimit(n int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Set(ctxBodyLimit, n)
			return next(c)
		}
	}
}

func bodyLimitOf(c echo.Context) int64 {
	if n, ok := c.Get(ctxBodyLimit).(int64); ok {
		return n
	}
	return DefaultBodyLimit
}

func tooLarge(c echo.Context, limit int64) error {
	return fail(http.StatusRequestEntityTooLarge, "too_large", "the request body is larger than the %d bytes %s %s accepts: send less", limit, c.Request().Method, c.Path())
}

// readBody reads the whole request body, at most the route's limit: 413
// beyond it (at once when Content-Length says so), 408 when the client
// does not send it within the read timeout.
func readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	limit := bodyLimitOf(c)
	if r.ContentLength > limit {
		return nil, tooLarge(c, limit)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, bodyError(c, err)
	}
	// Read to the end: net/http now reads ahead on the connection to see
	// the client go away, and the body's read deadline passing there
	// would cancel the request's context. (r.Body is left as it is, so
	// that net/http still knows how much of it is unread.)
	_ = http.NewResponseController(c.Response().Writer).SetReadDeadline(time.Time{})
	if int64(len(data)) > limit {
		return nil, tooLarge(c, limit)
	}
	return data, nil
}

func bodyError(c echo.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fail(http.StatusRequestTimeout, "timeout", "the request body did not arrive in time: send it at once")
	}
	return fail(http.StatusBadRequest, "bad_request", "reading the request body: %v", err)
}

// ReadJSON reads the request body into v: JSON only (415 for any other
// content type, which keeps echo's XML, form and multipart binders out),
// at most the route's BodyLimit (413), one JSON value. With strict,
// fields v does not have are refused (400, naming the field); without,
// they are ignored. An empty body leaves v as it is.
func ReadJSON(c echo.Context, v any, strict bool) error {
	r := c.Request()
	if r.ContentLength == 0 {
		return nil
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType)); err != nil || ct != echo.MIMEApplicationJSON {
		return fail(http.StatusUnsupportedMediaType, "unsupported_media_type", "send the request body as JSON with Content-Type: application/json, not %q",
			truncate(r.Header.Get(echo.HeaderContentType), 64))
	}
	data, err := readBody(c)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "bad_request", "reading the request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail(http.StatusBadRequest, "bad_request", "reading the request body: something follows after the JSON value: send one")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// deadlines bounds the time a client may take: to send a request body
// (ReadTimeout, from now until readBody has read it; no deadline for a
// request without a body, so that a stream's context is not cancelled by
// it), and to take the answer (WriteTimeout for the whole answer, or for
// each write of a stream).
func (s *Server) deadlines(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		w := c.Response()
		rc := http.NewResponseController(w.Writer)
		lim := s.cfg.Limits
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			_ = rc.SetReadDeadline(time.Now().Add(lim.ReadTimeout))
		}
		if streamRoute(c) {
			w.Writer = &streamWriter{ResponseWriter: w.Writer, rc: rc, timeout: lim.WriteTimeout}
		} else {
			_ = rc.SetWriteDeadline(time.Now().Add(lim.WriteTimeout))
		}
		return next(c)
	}
}

// streamRoute reports whether c answers with a stream or a large file:
// the view stream, the relay's WebSocket (which sets its own deadlines),
// the console's events, the flow tail and the flow export, the binaries
// of /dl/ (tens of MiB, which a slow link takes longer than WriteTimeout
// to fetch).
func streamRoute(c echo.Context) bool {
	switch c.Path() {
	case wire.PathStream, relay.Path, "/v1/admin/events", PathDownloads + ":file":
		return true
	case "/v1/admin/flows":
		return c.QueryParam("follow") == "true" || c.QueryParam("format") == "jsonl"
	}
	return false
}

// streamWriter gives each write of a stream WriteTimeout to reach the
// client.
type streamWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *streamWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController.Flush calls.
func (w *streamWriter) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// rateLimited refuses a source over l's budget with 429 and Retry-After,
// before the request body is read.
func rateLimited(l *ratelimit.Limiter, what string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if ok, wait := l.Allow(ratelimit.Source(c.Request().RemoteAddr)); !ok {
				secs := int(wait/time.Second) + 1
				c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
				return fail(http.StatusTooManyRequests, "rate_limited", "too many %s attempts from this address: try again in %d s", what, secs)
			}
			return next(c)
		}
	}
}

// checkEnrollment refuses, by a read, an enrollment that State.Enroll
// would refuse for its token (unknown, wrong secret, used up, expired,
// revoked) or its name (already enrolled), so that a flood of bad
// enrollments takes neither the state's lock nor a write transaction.
// State.Enroll checks again under its lock.
func (s *Server) checkEnrollment(c echo.Context, tokenID string, secretHash []byte, name string) error {
	return s.cfg.State.Read(c.Request().Context(), func(tx store.Tx) error {
		if _, err := tx.CheckToken(tokenID, secretHash, s.cfg.Now()); err != nil {
			return err
		}
		if _, err := tx.GetNode(name); err == nil {
			return fmt.Errorf("%w: node %q is already enrolled: delete it (latch admin node delete %s) or choose another name", state.ErrConflict, name, name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
}

// EnrollLimiter is the default enrollment rate limit: enrollBurst at
// once from one source, then enrollRate a second.
func EnrollLimiter() *ratelimit.Limiter { return ratelimit.New(enrollRate, enrollBurst, 10000, nil) }

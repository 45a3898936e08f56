package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/latchnet/latch/node/pin"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// callTimeout bounds every call but the stream.
const callTimeout = 30 * time.Second

// CoordinatorError is a non-2xx answer of the coordinator. Its Error is
// the coordinator's message, meant for the user as is.
type CoordinatorError struct {
	Status  int    // HTTP status
	Code    string // wire.Error.Code, may be empty
	Message string // wire.Error.Error
}

func (e *CoordinatorError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (%s)", e.Message, e.Code)
	}
	return e.Message
}

// Refused reports whether the coordinator refused the node's certificate
// or token (HTTP 401 or 403).
func (e *CoordinatorError) Refused() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// client calls the coordinator's node API.
type client struct {
	base *url.URL
	tr   *http.Transport // mTLS with the current SVID
	http *http.Client
}

// newClient makes the mTLS client: it presents the SVID svids holds at
// each handshake, trusts only bundles and requires the coordinator's
// SPIFFE ID to pass authz. protos are offered by ALPN (wire.SpiffeALPN for
// a node whose SVID is from SPIRE).
func newClient(base *url.URL, svids x509svid.Source, bundles x509bundle.Source, authz tlsconfig.Authorizer, protos ...string) *client {
	cfg := tlsconfig.MTLSClientConfig(svids, bundles, authz)
	cfg.MinVersion = tls.VersionTLS13
	if len(protos) > 0 {
		cfg.NextProtos = append(protos, "http/1.1")
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: callTimeout,
		IdleConnTimeout:       90 * time.Second,
	}
	return &client{base: base, tr: tr, http: &http.Client{Transport: tr}}
}

func (c *client) url(path string, q url.Values) string {
	u := *c.base
	u.Path = path
	u.RawQuery = q.Encode()
	return u.String()
}

// post sends req as JSON and decodes a 2xx answer into resp.
func post(ctx context.Context, hc *http.Client, u string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(r)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := checkStatus(res); err != nil {
		return err
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(resp); err != nil {
		return fmt.Errorf("reading the coordinator's answer: %w", err)
	}
	return nil
}

// checkStatus turns a non-2xx answer into a *CoordinatorError.
func checkStatus(res *http.Response) error {
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var we wire.Error
	if json.Unmarshal(data, &we) != nil || we.Error == "" {
		we.Error = "coordinator answered " + res.Status
		if s := string(bytes.TrimSpace(data)); s != "" && len(s) < 500 {
			we.Error += ": " + s
		}
	}
	return &CoordinatorError{Status: res.StatusCode, Code: we.Code, Message: we.Error}
}

// enroll trades the join token for a first SVID over the pinned TLS
// connection.
func enroll(ctx context.Context, base *url.URL, tok joinToken, name string, labels map[string]string, routes []wire.Route) (*identity, wire.NodeInfo, error) {
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, wire.NodeInfo{}, err
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     pin.ClientConfig(tok.fingerprint),
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	defer hc.CloseIdleConnections()
	u := *base
	u.Path = wire.PathEnroll
	var resp wire.SVIDResponse
	if err := post(ctx, hc, u.String(), wire.EnrollRequest{Token: tok.text, Name: name, Labels: labels, CSR: csr, Routes: routes}, &resp); err != nil {
		return nil, wire.NodeInfo{}, err
	}
	id, err := fromResponse(&resp, key)
	if err != nil {
		return nil, wire.NodeInfo{}, fmt.Errorf("the coordinator's SVID is unusable: %w", err)
	}
	pinned := false
	for _, c := range id.bundle {
		pinned = pinned || pin.Fingerprint(c) == tok.fingerprint
	}
	if !pinned {
		return nil, wire.NodeInfo{}, fmt.Errorf("the coordinator's trust bundle does not contain the CA %s the join token names", tok.fingerprint)
	}
	return id, resp.Node, nil
}

func (c *client) renew(ctx context.Context, csr []byte) (*wire.SVIDResponse, error) {
	var resp wire.SVIDResponse
	if err := post(ctx, c.http, c.url(wire.PathRenew, nil), wire.RenewRequest{CSR: csr}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *client) register(ctx context.Context, req wire.RegisterRequest) (*wire.RegisterResponse, error) {
	var resp wire.RegisterResponse
	if err := post(ctx, c.http, c.url(wire.PathRegister, nil), req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (c *client) postFlows(ctx context.Context, b wire.FlowBatch) (*wire.FlowBatchResponse, error) {
	var resp wire.FlowBatchResponse
	if err := post(ctx, c.http, c.url(wire.PathFlows, nil), b, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// stream opens the view stream. The caller closes the body.
func (c *client) stream(ctx context.Context, have uint64) (io.ReadCloser, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(wire.PathStream, url.Values{"have": {strconv.FormatUint(have, 10)}}), nil)
	if err != nil {
		return nil, err
	}
	res, err := c.http.Do(r)
	if err != nil {
		return nil, err
	}
	if err := checkStatus(res); err != nil {
		res.Body.Close()
		return nil, err
	}
	return res.Body, nil
}

// closeIdle drops idle connections, so the next call makes a handshake
// with the current SVID.
func (c *client) closeIdle() { c.tr.CloseIdleConnections() }

// refused reports whether err is the coordinator refusing the node.
func refused(err error) (*CoordinatorError, bool) {
	var ce *CoordinatorError
	if errors.As(err, &ce) && ce.Refused() {
		return ce, true
	}
	return nil, false
}

package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/node/pin"
	"github.com/latchnet/latch/wire"
)

// insecure is a client for calls that need no pinning (the answers are
// what is tested, not the server's identity).
func insecure() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// send makes one request and returns the status and the wire.Error.
func send(t *testing.T, c *http.Client, method, url, contentType string, body io.Reader, hdr map[string]string) (int, wire.Error, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var e wire.Error
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	json.Unmarshal(data, &e)
	return resp.StatusCode, e, resp.Header
}

// onlyReader hides the length of a reader, so that the request is sent
// chunked, without a Content-Length.
type onlyReader struct{ io.Reader }

// TestBodyLimits: every route that reads a body refuses one over its
// limit with 413 and a message saying the limit, whether the client
// declares the length or not.
func TestBodyLimits(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.Enroll(h.Token(1), "limited")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	n.HTTP.Timeout = 20 * time.Second
	admin := map[string]string{"Authorization": "Bearer " + h.AdminToken}
	jsonOf := func(size int) []byte { return []byte(`{"token":"` + strings.Repeat("a", size) + `"}`) }
	for _, tc := range []struct {
		name, path string
		c          *http.Client
		hdr        map[string]string
		ct         string
		limit      int64
	}{
		{"enroll", wire.PathEnroll, insecure(), nil, "application/json", api.SmallBodyLimit},
		{"renew", wire.PathRenew, n.HTTP, nil, "application/json", api.SmallBodyLimit},
		{"register", wire.PathRegister, n.HTTP, nil, "application/json", api.RegisterBodyLimit},
		{"flows", wire.PathFlows, n.HTTP, nil, "application/json", api.FlowsBodyLimit},
		{"admin JSON", "/v1/admin/tokens", insecure(), admin, "application/json", api.DefaultBodyLimit},
		{"policy apply", "/v1/admin/policies", insecure(), admin, "application/yaml", api.PolicyBodyLimit},
		{"policy validate", "/v1/admin/policies/validate", insecure(), admin, "application/yaml", api.PolicyBodyLimit},
	} {
		big := jsonOf(int(tc.limit))
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(big)
			if chunked {
				body = onlyReader{body}
			}
			code, e, _ := send(t, tc.c, "POST", h.URL+tc.path, tc.ct, body, tc.hdr)
			if code != http.StatusRequestEntityTooLarge || e.Code != "too_large" || !strings.Contains(e.Error, fmt.Sprint(tc.limit)) {
				t.Errorf("%s (chunked %v), %d bytes: %d %+v; want 413 saying the limit %d", tc.name, chunked, len(big), code, e, tc.limit)
			}
		}
		// Just under the limit is read (and refused for what it says).
		if tc.name == "enroll" {
			if code, e, _ := send(t, tc.c, "POST", h.URL+tc.path, tc.ct, bytes.NewReader(jsonOf(int(tc.limit)-100)), nil); code == http.StatusRequestEntityTooLarge {
				t.Errorf("enroll under the limit: %d %+v", code, e)
			}
		}
	}
}

// TestHugeDeclaredBodyRefusedUnread: a 256 MiB enrollment is refused
// from its Content-Length, before the server reads it: the client sends
// only its first bytes, and gets its 413 without sending more.
func TestHugeDeclaredBodyRefusedUnread(t *testing.T) {
	h := newHarness(t)
	conn, err := tls.Dial("tcp", h.Server.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"token\":\"%s",
		wire.PathEnroll, 256<<20, strings.Repeat("a", 1000))
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a 256 MiB enrollment of which 1 KiB was sent got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("256 MiB enrollment: %d; want 413", resp.StatusCode)
	}
}

// TestJSONOnly: JSON bodies are read as JSON only (415 for XML, forms,
// multipart, anything else), strictly on the admin API (unknown fields
// and trailing data are refused, naming them) and leniently on the node
// API (a newer agent's extra fields are ignored).
func TestJSONOnly(t *testing.T) {
	h := newHarness(t)
	admin := map[string]string{"Authorization": "Bearer " + h.AdminToken}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("token", "x")
	mw.WriteField("name", "n")
	mw.Close()
	bodies := []struct{ ct, body string }{
		{"application/xml", `<EnrollRequest><token>x</token><name>n</name></EnrollRequest>`},
		{"text/xml", `<EnrollRequest><token>x</token></EnrollRequest>`},
		{"application/x-www-form-urlencoded", "token=x&name=n"},
		{mw.FormDataContentType(), mp.String()},
		{"text/plain", `{"token":"x"}`},
		{"", `{"token":"x"}`},
	}
	for _, b := range bodies {
		for _, path := range []string{wire.PathEnroll, "/v1/admin/tokens", "/v1/admin/users"} {
			code, e, _ := send(t, insecure(), "POST", h.URL+path, b.ct, onlyReader{strings.NewReader(b.body)}, admin)
			if code != http.StatusUnsupportedMediaType || !strings.Contains(e.Error, "application/json") {
				t.Errorf("POST %s as %q: %d %+v; want 415 asking for application/json", path, b.ct, code, e)
			}
		}
	}
	for body, want := range map[string]string{
		`{"namespace":"prod","uses":1,"tll":"1m"}`: `unknown field "tll"`,
		`{"namespace":"prod"} {"uses":2}`:          "after the JSON",
		`{"namespace":`:                            "reading the request body",
	} {
		code, e, _ := send(t, insecure(), "POST", h.URL+"/v1/admin/tokens", "application/json", strings.NewReader(body), admin)
		if code != http.StatusBadRequest || !strings.Contains(e.Error, want) {
			t.Errorf("token create %s: %d %+v; want 400 saying %s", body, code, e, want)
		}
	}
	if code, e, _ := send(t, insecure(), "POST", h.URL+"/v1/admin/tokens", "application/json; charset=utf-8", strings.NewReader(`{"namespace":"prod"}`), admin); code != 200 {
		t.Errorf("token create with a charset: %d %+v", code, e)
	}
	// The node API ignores fields it does not know.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok := h.Token(1)
	body, _ := json.Marshal(map[string]any{"token": tok, "name": "newer", "csr": coordtest.CSR(t, key), "fromTheFuture": true})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: pin.ClientConfig(strings.Split(tok, ".")[3])}}
	if code, e, _ := send(t, c, "POST", h.URL+wire.PathEnroll, "application/json", bytes.NewReader(body), nil); code != 200 {
		t.Errorf("enroll with an unknown field: %d %+v; want it ignored", code, e)
	}
}

// serveReal serves h's API the way the coordinator does: s.Listen and
// s.HTTPServer on loopback, not httptest. It returns the address.
func serveReal(t *testing.T, h *harness) string {
	t.Helper()
	svid, err := h.CA.ServerSVID([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := h.API.Listen("127.0.0.1:0", api.TLSConfig(h.CA, svid))
	if err != nil {
		t.Fatal(err)
	}
	hs := h.API.HTTPServer(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestSlowBodyTimesOut: a client sending its body a byte at a time loses
// its connection once the body read timeout passes.
func TestSlowBodyTimesOut(t *testing.T) {
	h := newHarnessWith(t, coordtest.Options{API: func(c *api.Config) { c.Limits.ReadTimeout = 300 * time.Millisecond }})
	addr := serveReal(t, h)
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", wire.PathEnroll)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// 1000 bytes at 50 ms each would take 50 s.
		for range 1000 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the slow body still holds the connection after 20 s")
		}
		return // closed without an answer
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow body: %d; want 408 or the connection closed", resp.StatusCode)
	}
	// The server closes the connection after the answer.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the connection stays open after the 408")
		}
	}
}

// TestStreamsOutliveTimeouts: the view stream is not cut by the read and
// write timeouts, however much longer than them it runs.
func TestStreamsOutliveTimeouts(t *testing.T) {
	h := newHarnessWith(t, coordtest.Options{API: func(c *api.Config) {
		c.Limits.ReadTimeout, c.Limits.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond
		c.Keepalive = 30 * time.Millisecond
	}})
	addr := serveReal(t, h)
	n, code, msg := h.Enroll(h.Token(1), "streamer")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	url := "https://" + addr
	if code, body := h.postTo(n, url+wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}); code != 200 {
		t.Fatalf("register: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", url+wire.PathStream, nil)
	resp, err := n.HTTP.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, resp)
	}
	defer resp.Body.Close()
	start := time.Now()
	lines := bufio.NewScanner(resp.Body)
	count := 0
	// 40 keepalives of 30 ms: the stream lives 12 times the timeouts.
	for count < 40 && lines.Scan() {
		count++
	}
	if count < 40 {
		t.Fatalf("the stream ended after %d messages (%v): %v", count, time.Since(start), lines.Err())
	}
}

// postTo posts JSON to a full URL as node n.
func (h *harness) postTo(n *coordtest.Node, url string, in any) (int, string) {
	h.t.Helper()
	body, _ := json.Marshal(in)
	resp, err := n.HTTP.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestConnectionCap: no more connections are served at once than
// Limits.MaxConnections; one more is served when one closes.
func TestConnectionCap(t *testing.T) {
	h := newHarnessWith(t, coordtest.Options{API: func(c *api.Config) { c.Limits.MaxConnections = 2 }})
	addr := serveReal(t, h)
	cfg := &tls.Config{InsecureSkipVerify: true}
	var held []*tls.Conn
	for range 2 {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The handshake of a third waits: the server does not accept it.
	d := &net.Dialer{Timeout: time.Second}
	if c, err := tls.DialWithDialer(d, "tcp", addr, cfg); err == nil {
		c.Close()
		t.Fatal("a third connection was served with the cap at 2")
	}
	held[0].Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after one of the two closed: %v", err)
		}
	}
}

// countingStore counts write transactions.
type countingStore struct {
	store.Store
	updates atomic.Int64
}

func (c *countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, fn)
}

// TestEnrollFloodTakesNoWrites: bad enrollments (malformed, for another
// coordinator, unknown token, wrong secret, used-up or revoked token,
// name taken, bad name, bad CSR) are refused before the state's write
// path: no write transaction, no lock.
func TestEnrollFloodTakesNoWrites(t *testing.T) {
	var counted *countingStore
	h := newHarnessWith(t, coordtest.Options{Store: func(s store.Store) store.Store {
		counted = &countingStore{Store: s}
		return counted
	}, API: func(c *api.Config) { c.EnrollLimit = ratelimit.New(1000, 1000, 100, nil) }}) // the rate limit is tested on its own
	good := h.Token(1)
	if n, code, msg := h.Enroll(good, "taken"); n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	live := h.Token(5)
	revoked := h.Token(5)
	h.AdminCall("DELETE", "/v1/admin/tokens/"+strings.Split(revoked, ".")[1], "", nil)
	parts := strings.Split(live, ".")
	wrongSecret := strings.Join([]string{parts[0], parts[1], strings.Repeat("a", len(parts[2])), parts[3]}, ".")
	unknown, _, _ := ca.NewToken(h.CA.Fingerprint())
	other, _, _ := ca.NewToken("sha256:" + strings.Repeat("ab", 32))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := coordtest.CSR(t, key)
	before := counted.updates.Load()
	for i, tc := range []struct{ tok, name string }{
		{"not a token", "n1"},
		{other.String(), "n1"},
		{unknown.String(), "n1"},
		{wrongSecret, "n1"},
		{good, "n1"},    // used up
		{revoked, "n1"}, // revoked
		{live, "taken"}, // name in use
		{live, "Bad_N"}, // bad name
	} {
		body, _ := json.Marshal(wire.EnrollRequest{Token: tc.tok, Name: tc.name, CSR: csr})
		for range 20 {
			if code, e, _ := send(t, insecure(), "POST", h.URL+wire.PathEnroll, "application/json", bytes.NewReader(body), nil); code == 200 || code == http.StatusTooManyRequests {
				t.Fatalf("bad enrollment %d: %d %+v; want it refused for what it is", i, code, e)
			}
		}
	}
	if got := counted.updates.Load() - before; got != 0 {
		t.Errorf("160 bad enrollments took %d write transactions; want none", got)
	}
	// A good one still writes, and works.
	if n, code, msg := h.Enroll(live, "fresh"); n == nil {
		t.Fatalf("good enrollment after the flood: %d %s", code, msg)
	}
}

// TestEnrollRateLimit: a source past its enrollment budget gets 429 with
// Retry-After, before anything is read.
func TestEnrollRateLimit(t *testing.T) {
	h := newHarnessWith(t, coordtest.Options{API: func(c *api.Config) { c.EnrollLimit = ratelimit.New(0.01, 3, 100, nil) }})
	for i := range 3 {
		if code, e, _ := send(t, insecure(), "POST", h.URL+wire.PathEnroll, "application/json", strings.NewReader(`{"token":"x"}`), nil); code != http.StatusBadRequest {
			t.Fatalf("attempt %d: %d %+v; want 400 (bad token)", i, code, e)
		}
	}
	code, e, hdr := send(t, insecure(), "POST", h.URL+wire.PathEnroll, "application/json", strings.NewReader(`{"token":"x"}`), nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || e.Code != "rate_limited" {
		t.Fatalf("4th attempt: %d %+v %v; want 429 with Retry-After", code, e, hdr)
	}
}

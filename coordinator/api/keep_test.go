package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"

	"github.com/latchnet/latch/wire"
)

// Two nodes enroll at the same time with a single-use token: exactly one
// gets a certificate, the other is told the token is used.
func TestSingleUseTokenEnrollsOneOfTwoConcurrentNodes(t *testing.T) {
	h := newHarness(t)
	tok := h.Token(1)
	const nodes = 2
	var (
		wg    sync.WaitGroup
		codes [nodes]int
		msgs  [nodes]string
	)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, codes[i], msgs[i] = h.Enroll(tok, fmt.Sprintf("node-%d", i))
		}()
	}
	wg.Wait()
	ok, used := 0, 0
	for i := range nodes {
		switch codes[i] {
		case http.StatusOK:
			ok++
		case http.StatusUnauthorized:
			used++
		default:
			t.Errorf("enrollment %d: %d %s", i, codes[i], msgs[i])
		}
	}
	if ok != 1 || used != 1 {
		t.Fatalf("%d enrollments succeeded and %d were refused, want 1 and 1: %v %q", ok, used, codes, msgs)
	}
	if nodes, err := h.Admin().Nodes(context.Background()); err != nil || len(nodes) != 1 {
		t.Fatalf("nodes after the race: %v %+v", err, nodes)
	}
}

// The certificate is verified on every request, not once per connection:
// a node deleted while its connection is kept alive is refused on that
// same connection at its next request.
func TestCertificateCheckedOnEveryRequestOfAKeptAliveConnection(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.Enroll(h.Token(1), "node-a")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	register := func() (status int, reused bool) {
		body, _ := json.Marshal(wire.RegisterRequest{PublicKey: "k"})
		req, _ := http.NewRequest("POST", h.URL+wire.PathRegister, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := n.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // so that the connection goes back to the pool
		resp.Body.Close()
		return resp.StatusCode, reused
	}
	if code, _ := register(); code != http.StatusOK {
		t.Fatalf("register: %d", code)
	}
	if err := h.Admin().DeleteNode(context.Background(), "node-a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	code, reused := register()
	if !reused {
		t.Fatal("the second request did not reuse the connection: the test proves nothing")
	}
	if code != http.StatusForbidden {
		t.Fatalf("a deleted node's request on its kept-alive connection: %d, want 403", code)
	}
}

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func postJSON(t *testing.T, c *http.Client, u string, in any) (int, wire.Error) {
	body, _ := json.Marshal(in)
	resp, err := c.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e wire.Error
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

func TestSpiffeNodes(t *testing.T) {
	spire := spiffetest.NewCA(t, "spire.test")
	td := spiffeid.RequireTrustDomainFromString("spire.test")
	m, err := spiffemap.New([]spiffemap.Entry{{ID: "spiffe://spire.test/prod/*", Namespace: "prod", Labels: map[string]string{"role": "server"},
		Workloads: []grant.Workload{{Namespace: "prod", Name: "api"}}, WorkloadIDs: []string{"spiffe://spire.test/prod/web/*"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, coordtest.Options{
		Spiffe:     &spiffetrust.Trust{TD: td, Bundles: spire.Bundle()},
		SpiffeMap:  m,
		SpireSVIDs: spiffetest.Static{SVID: spire.Issue(t, "spiffe://spire.test/latch/coordinator", time.Hour)},
	})
	reg := wire.RegisterRequest{PublicKey: "k"}

	// A mapped node registers straight away and gets the mapping's namespace.
	web := coordtest.SpireNode(spire, spire.Issue(t, "spiffe://spire.test/prod/web", time.Hour)).HTTP
	var rr wire.RegisterResponse
	body, _ := json.Marshal(reg)
	resp, err := web.Post(h.URL+wire.PathRegister, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&rr)
	resp.Body.Close()
	if resp.StatusCode != 200 || rr.Node.Name != "web" || rr.Node.Namespace != "prod" || rr.Node.Labels["role"] != "server" || !rr.Node.IP.IsValid() {
		t.Fatalf("register of a mapped SPIRE node: %d %+v", resp.StatusCode, rr.Node)
	}
	if resp.TLS.PeerCertificates[0].URIs[0].String() != "spiffe://spire.test/latch/coordinator" {
		t.Errorf("the coordinator presented %v to a SPIRE node, want its SPIRE SVID", resp.TLS.PeerCertificates[0].URIs)
	}
	if code, e := postJSON(t, web, h.URL+wire.PathRenew, wire.RenewRequest{CSR: []byte("x")}); code != 400 || e.Code != "spiffe_node" {
		t.Errorf("renew by a SPIRE node: %d %+v", code, e)
	}

	// A SPIRE node's workload with a SPIFFE ID gets it as its label; the
	// label cannot be declared directly, nor the ID be from elsewhere.
	withID := wire.RegisterRequest{PublicKey: "k", Workloads: []wire.WorkloadDecl{{Name: "api", Namespace: "prod", SpiffeID: "spiffe://spire.test/prod/web/api"}}}
	body, _ = json.Marshal(withID)
	resp, err = web.Post(h.URL+wire.PathRegister, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rr = wire.RegisterResponse{}
	json.NewDecoder(resp.Body).Decode(&rr)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(rr.Workloads) != 1 || rr.Workloads[0].Labels[policy.SpiffeIDLabel] != policy.SpiffeLabelValue("spiffe://spire.test/prod/web/api") {
		t.Fatalf("register with a workload SPIFFE ID: %d %+v", resp.StatusCode, rr.Workloads)
	}
	// A workload ID outside what the node's mapping entry lists is
	// refused: SPIRE issuing it to the node is not enough.
	outside := wire.RegisterRequest{PublicKey: "k", Workloads: []wire.WorkloadDecl{{Name: "api", Namespace: "prod", SpiffeID: "spiffe://spire.test/dev/admin"}}}
	if code, e := postJSON(t, web, h.URL+wire.PathRegister, outside); code != 403 || e.Code != "not_granted" || !strings.Contains(e.Error, "spiffe://spire.test/dev/admin") {
		t.Errorf("a workload ID outside the entry's patterns: %d %+v", code, e)
	}
	for name, d := range map[string]wire.WorkloadDecl{
		"label":        {Name: "api", Namespace: "prod", Labels: map[string]string{policy.SpiffeIDLabel: "x"}},
		"other domain": {Name: "api", Namespace: "prod", SpiffeID: "spiffe://other.test/api"},
	} {
		if code, e := postJSON(t, web, h.URL+wire.PathRegister, wire.RegisterRequest{PublicKey: "k", Workloads: []wire.WorkloadDecl{d}}); code != 400 {
			t.Errorf("%s: %d %+v", name, code, e)
		}
	}

	// An unmapped node waits; the admin sees it, approves it, and it registers.
	laptop := coordtest.SpireNode(spire, spire.Issue(t, "spiffe://spire.test/dev/laptop", time.Hour)).HTTP
	if code, e := postJSON(t, laptop, h.URL+wire.PathRegister, reg); code != 403 || e.Code != "pending" {
		t.Fatalf("register of an unmapped SPIRE node: %d %+v", code, e)
	}
	c, ctx := h.Admin(), context.Background()
	if pending, err := c.SpiffeNodes(ctx, adminapi.SpiffePending); err != nil || len(pending) != 1 || pending[0].Name != "laptop" {
		t.Fatalf("pending list: %v %+v", err, pending)
	}
	if _, err := c.ApproveSpiffeNode(ctx, adminapi.SpiffeApproval{Node: "laptop"}); !client.IsCode(err, "invalid") {
		t.Fatalf("approve without a namespace: %v", err)
	}
	if n, err := c.ApproveSpiffeNode(ctx, adminapi.SpiffeApproval{Node: "laptop", Namespace: "dev", Labels: map[string]string{"role": "client"}}); err != nil ||
		n.Name != "laptop" || n.Identity != adminapi.IdentitySPIRE || n.SpiffeID != "spiffe://spire.test/dev/laptop" {
		t.Fatalf("approve: %v %+v", err, n)
	}
	if code, e := postJSON(t, laptop, h.URL+wire.PathRegister, wire.RegisterRequest{PublicKey: "k-laptop"}); code != 200 {
		t.Fatalf("register after approval: %d %+v", code, e)
	}
	if err := c.RejectSpiffeNode(ctx, "spiffe://spire.test/dev/laptop"); err != nil {
		t.Fatalf("reject: %v", err)
	}
	if code, e := postJSON(t, laptop, h.URL+wire.PathRegister, reg); code != 403 || e.Code != "rejected" {
		t.Fatalf("register after rejection: %d %+v", code, e)
	}

	// An SVID from another SPIRE server of the same trust domain is refused.
	rogue := spiffetest.NewCA(t, "spire.test")
	if code, e := postJSON(t, coordtest.SpireNode(spire, rogue.Issue(t, "spiffe://spire.test/prod/evil", time.Hour)).HTTP, h.URL+wire.PathRegister, reg); code != 401 {
		t.Fatalf("register with an untrusted SVID: %d %+v", code, e)
	}

	// Token nodes still get the embedded CA's certificate and work as before.
	n, code, msg := h.Enroll(h.Token(1), "tok")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	if code, body := h.Post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: "k-tok"}, nil); code != 200 {
		t.Fatalf("register of a token node: %d %s", code, body)
	}
	if code, _ := h.Post(n, wire.PathRegister, withID, nil); code != 400 {
		t.Errorf("a token node declared a workload SPIFFE ID: %d", code)
	}
}

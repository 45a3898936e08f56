package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/wire"
)

// maxKeepalivesBeforeEnd bounds the keepalives a stream may still send
// after its authority is gone: it is checked again at every keepalive.
const maxKeepalivesBeforeEnd = 2

// nodeStream opens n's view stream and reads its first message.
func (h *harness) nodeStream(n *coordtest.Node) *bufio.Scanner {
	h.t.Helper()
	sc := h.ViewStream(n)
	if !sc.Scan() {
		h.t.Fatalf("stream: no first message: %v", sc.Err())
	}
	return sc
}

// nodeStreamEnd reads a view stream until the coordinator ends it and
// returns the reason it gave, failing if more than
// maxKeepalivesBeforeEnd keepalives came first.
func nodeStreamEnd(t *testing.T, sc *bufio.Scanner) *wire.Error {
	t.Helper()
	keepalives := 0
	for sc.Scan() {
		var m wire.StreamMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.End != nil:
			if sc.Scan() {
				t.Errorf("the stream goes on after its end: %s", sc.Text())
			}
			return m.End
		case m.Keepalive:
			if keepalives++; keepalives > maxKeepalivesBeforeEnd {
				t.Fatalf("the stream is still open after %d keepalives", keepalives)
			}
		}
	}
	t.Fatalf("the stream ended without saying why: %v", sc.Err())
	return nil
}

func TestNodeStreamEndsWhenTheCertificateExpires(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.Enroll(h.Token(1), "node-a")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	sc := h.nodeStream(n)
	h.Clock.Advance(2 * time.Hour)
	if end := nodeStreamEnd(t, sc); !strings.Contains(end.Error, "expired") {
		t.Fatalf("end: %+v", end)
	}
}

func TestNodeStreamEndsWhenTheCertificateIsReplaced(t *testing.T) {
	h := newHarness(t)
	old, code, msg := h.Enroll(h.Token(1), "node-a")
	if old == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	sc := h.nodeStream(old)
	cur := h.renew(old)
	if code, body := h.Register(cur); code != http.StatusOK {
		t.Fatalf("register with the new certificate: %d %s", code, body)
	}
	if end := nodeStreamEnd(t, sc); !strings.Contains(end.Error, "replaced") {
		t.Fatalf("end: %+v", end)
	}
}

func TestNodeStreamEndsWhenTheNodeIsDeleted(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.Enroll(h.Token(1), "node-a")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	sc := h.nodeStream(n)
	if err := h.Admin().DeleteNode(context.Background(), "node-a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if end := nodeStreamEnd(t, sc); !strings.Contains(end.Error, "deleted") {
		t.Fatalf("end: %+v", end)
	}
}

// adminStream opens an admin stream (path) with the credential set by
// auth and returns its lines.
func (h *harness) adminStream(path string, authz func(*http.Request)) *bufio.Scanner {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+path, nil)
	authz(req)
	pool := x509.NewCertPool()
	pool.AddCert(h.CA.Root())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("%s: %s", path, resp.Status)
	}
	return bufio.NewScanner(resp.Body)
}

// adminStreamEnd reads an admin stream until the coordinator ends it and
// returns the reason it gave: an "end" event of the event stream, or the
// last line of the flow tail.
func adminStreamEnd(t *testing.T, sc *bufio.Scanner, events bool) adminapi.Error {
	t.Helper()
	keepalives, ending := 0, false
	for sc.Scan() {
		line := sc.Text()
		var end adminapi.Error
		switch {
		case events && line == "event: end":
			ending = true
			continue
		case events && ending:
			data, _ := strings.CutPrefix(line, "data: ")
			if err := json.Unmarshal([]byte(data), &end); err != nil {
				t.Fatalf("end event: %q: %v", line, err)
			}
		case events && line == ": keepalive":
			keepalives++
			continue
		case events:
			continue
		case json.Unmarshal([]byte(line), &end) == nil && end.Error != "":
		default:
			keepalives++ // a flow or an empty poll: the tail re-checks at least this often
			continue
		}
		for sc.Scan() {
			if sc.Text() != "" {
				t.Errorf("the stream goes on after its end: %s", sc.Text())
			}
		}
		return end
	}
	t.Fatalf("the stream ended without saying why (%d keepalives): %v", keepalives, sc.Err())
	return adminapi.Error{}
}

// TestAdminStreamsEndWithTheirAuthority opens the event stream and the
// flow tail with an API token or a console session, takes the credential
// away, and waits for each stream to end saying why.
func TestAdminStreamsEndWithTheirAuthority(t *testing.T) {
	streams := map[string]string{"events": "/v1/admin/events", "flows": "/v1/admin/flows?follow=true"}
	type credential struct {
		authz  func(*http.Request)
		revoke func()
	}
	creds := map[string]func(h *harness) credential{
		"api token revoked": func(h *harness) credential {
			tok, err := h.Admin().CreateAPIToken(context.Background(), adminapi.APITokenRequest{Name: "ci", Role: "viewer", TTL: "1h"})
			if err != nil {
				t.Fatalf("api token: %v", err)
			}
			return credential{func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.Token) }, func() {
				if err := h.Admin().RevokeAPIToken(context.Background(), tok.ID); err != nil {
					t.Fatalf("revoke: %v", err)
				}
			}}
		},
		"api token expired": func(h *harness) credential {
			tok, err := h.Admin().CreateAPIToken(context.Background(), adminapi.APITokenRequest{Name: "ci", Role: "viewer", TTL: "1h"})
			if err != nil {
				t.Fatalf("api token: %v", err)
			}
			return credential{func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.Token) }, func() { h.Clock.Advance(2 * time.Hour) }}
		},
		"user deleted": func(h *harness) credential {
			sid := h.session("alice")
			return credential{func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: sid}) }, func() {
				if err := h.Admin().DeleteUser(context.Background(), "alice"); err != nil {
					t.Fatalf("delete user: %v", err)
				}
			}}
		},
		"session expired": func(h *harness) credential {
			sid := h.session("alice")
			return credential{func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: sid}) }, func() { h.Clock.Advance(13 * time.Hour) }}
		},
	}
	for sname, path := range streams {
		for cname, mk := range creds {
			t.Run(sname+"/"+cname, func(t *testing.T) {
				h := newHarness(t)
				cred := mk(h)
				sc := h.adminStream(path, cred.authz)
				cred.revoke()
				end := adminStreamEnd(t, sc, sname == "events")
				if end.Code != "unauthorized" {
					t.Fatalf("end: %+v", end)
				}
			})
		}
	}
}

// session logs user (a viewer, created here) in and returns the session
// id of its cookie; its CSRF token is "csrf".
func (h *harness) session(user string) string { return h.sessionAs(user, auth.RoleViewer) }

func (h *harness) sessionAs(user, role string) string {
	h.t.Helper()
	ctx := context.Background()
	st := h.State
	if err := st.CreateUser(ctx, "admin", store.User{Name: user, Role: role, PasswordHash: "unused"}); err != nil {
		h.t.Fatal(err)
	}
	sid := auth.NewSecret()
	now := h.Clock.Now()
	if err := st.Login(ctx, store.Session{IDHash: auth.HashSecret(sid), User: user, CSRF: "csrf", CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)}); err != nil {
		h.t.Fatal(err)
	}
	return sid
}

func TestSpireNodeStreamEndsWhenItsSVIDExpires(t *testing.T) {
	spire := spiffetest.NewCA(t, "spire.test")
	m, err := spiffemap.New([]spiffemap.Entry{{ID: "spiffe://spire.test/prod/*", Namespace: "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, coordtest.Options{
		Spiffe:     &spiffetrust.Trust{TD: spire.TD, Bundles: spire.Bundle()},
		SpiffeMap:  m,
		SpireSVIDs: spiffetest.Static{SVID: spire.Issue(t, "spiffe://spire.test/latch/coordinator", time.Hour)},
	})
	web := coordtest.SpireNode(spire, spire.Issue(t, "spiffe://spire.test/prod/web", time.Hour))
	sc := h.nodeStream(web)
	h.Clock.Advance(2 * time.Hour)
	if end := nodeStreamEnd(t, sc); end.Code != "bad_certificate" {
		t.Fatalf("end: %+v", end)
	}
}

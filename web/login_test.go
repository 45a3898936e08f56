package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/wire"
)

// countingVerifier is a password verifier that counts its calls and, while
// hold is open, waits in every call until it closes: a slow hash that the
// test controls.
type countingVerifier struct {
	calls   atomic.Int64
	inside  atomic.Int64
	hold    chan struct{}
	release sync.Once
}

func newCountingVerifier(holding bool) *countingVerifier {
	v := &countingVerifier{hold: make(chan struct{})}
	if !holding {
		close(v.hold)
	}
	return v
}

func (v *countingVerifier) verify(encoded, pw string) (bool, error) {
	v.calls.Add(1)
	v.inside.Add(1)
	defer v.inside.Add(-1)
	<-v.hold
	return auth.VerifyPassword(encoded, pw)
}

func (v *countingVerifier) open() { v.release.Do(func() { close(v.hold) }) }

// TestLoginRefusesBadNamesUnhashed: a user name that cannot exist (too
// long, or not a user name at all) is refused before any password is
// hashed and before the failure limiter keeps anything: a 2 MiB name by
// the body limit, a shorter one by the name check.
func TestLoginRefusesBadNamesUnhashed(t *testing.T) {
	v := newCountingVerifier(false)
	lim := NewLimiter(5, 15*time.Minute, 100, time.Now)
	h := newHarnessWith(t, func(c *Config) { c.VerifyPassword, c.Limiter = v.verify, lim })
	c := h.newClient()
	if got := c.login(strings.Repeat("a", 2<<20), "wrong password!"); got.code != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB user name: %d %.200s; want 413", got.code, got.body)
	}
	for _, name := range []string{strings.Repeat("a", 10000), strings.Repeat("a", auth.MaxUserNameLength+1), "bad name", "x\x00", "", "-x", "ädmin"} {
		got := c.login(name, "wrong password!")
		var e wire.Error
		json.Unmarshal([]byte(got.body), &e)
		if got.code != http.StatusBadRequest || !strings.Contains(e.Error, "user name") || len(got.body) > 400 {
			t.Errorf("user name %.20q (%d bytes): %d %.300s; want a short 400 about the user name", name, len(name), got.code, got.body)
		}
	}
	if n := v.calls.Load(); n != 0 {
		t.Errorf("%d password hashes computed for names that cannot exist", n)
	}
	if n := lim.Len(); n != 0 {
		t.Errorf("the failure limiter holds %d keys for names that cannot exist", n)
	}
	// A real name is hashed and counted; upper case is the same user.
	if got := c.login("Admin", h.adminPW); got.code != 200 {
		t.Errorf("login as Admin: %d %s", got.code, got.body)
	}
	if got := c.login("nobody", "wrong password!"); got.code != http.StatusUnauthorized || v.calls.Load() != 2 || lim.Len() != 1 {
		t.Errorf("unknown user: %d, %d hashes, %d limiter keys; want 401, 2, 1", got.code, v.calls.Load(), lim.Len())
	}
}

// TestLoginHashingBounded: no more than MaxHashing logins hash a password
// at once (19 MiB each); one more is answered 429 with Retry-After at
// once, not queued.
func TestLoginHashingBounded(t *testing.T) {
	v := newCountingVerifier(true)
	h := newHarnessWith(t, func(c *Config) { c.VerifyPassword, c.MaxHashing = v.verify, 2 })
	defer v.open()
	codes := make(chan int, 2)
	for _, name := range []string{"admin", "nobody"} {
		go func() { codes <- h.newClient().login(name, "wrong password!").code }()
	}
	for deadline := time.Now().Add(20 * time.Second); v.inside.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d logins hashing, want 2", v.inside.Load())
		}
	}
	c := h.newClient()
	c.http.Timeout = 10 * time.Second
	got := c.login("admin", h.adminPW)
	if got.code != http.StatusTooManyRequests || got.hdr.Get("Retry-After") == "" || !strings.Contains(got.body, "busy") {
		t.Fatalf("a third login while two hash: %d %v %s; want 429 with Retry-After", got.code, got.hdr, got.body)
	}
	if n := v.inside.Load(); n != 2 {
		t.Errorf("%d logins hashing at once, bound is 2", n)
	}
	v.open()
	for range 2 {
		if code := <-codes; code != http.StatusUnauthorized {
			t.Errorf("held login: %d, want 401", code)
		}
	}
	// With the slots free, the right password works.
	if got := c.login("admin", h.adminPW); got.code != 200 {
		t.Errorf("login after the others: %d %s", got.code, got.body)
	}
}

// TestLoginRateLimitPerSource: one address may try only so many logins,
// whatever user names it tries.
func TestLoginRateLimitPerSource(t *testing.T) {
	h := newHarnessWith(t, func(c *Config) { c.SourceLimit = ratelimit.New(0.001, 3, 100, nil) })
	c := h.newClient()
	for _, name := range []string{"alice", "bob", "carol"} {
		if got := c.login(name, "wrong password!"); got.code != http.StatusUnauthorized {
			t.Fatalf("login as %s: %d %s", name, got.code, got.body)
		}
	}
	got := c.login("admin", h.adminPW)
	if got.code != http.StatusTooManyRequests || got.hdr.Get("Retry-After") == "" || !strings.Contains(got.body, "rate_limited") {
		t.Fatalf("4th login from one address: %d %s; want 429 with Retry-After", got.code, got.body)
	}
}

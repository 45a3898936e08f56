package state

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/store"
)

func TestAPITokenLifetimes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok := func(id string, expires time.Time) store.APIToken {
		return store.APIToken{ID: id, Name: id, Role: auth.RoleViewer, SecretHash: auth.HashSecret("s-" + id), ExpiresAt: expires}
	}
	for name, expires := range map[string]time.Time{
		"never":              {},
		"beyond the maximum": e.now.Add(auth.MaxAPITokenTTL + time.Hour),
		"already expired":    e.now,
	} {
		if err := e.s.AddAPIToken(ctx, "ann", tok("bad", expires)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if err := e.s.AddAPIToken(ctx, "ann", tok("max", e.now.Add(auth.MaxAPITokenTTL))); err != nil {
		t.Fatalf("a token for the maximum lifetime: %v", err)
	}
	// A token stored without an expiry (before one was required) lasts at
	// most the maximum from its creation.
	err := e.db.Update(ctx, func(tx store.Tx) error {
		old := tok("old", time.Time{})
		old.CreatedAt = e.now
		return tx.PutAPIToken(old)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.APITokenPrincipal(ctx, "old", "s-old"); err != nil {
		t.Fatalf("a token stored without expiry, before the maximum: %v", err)
	}
	e.now = e.now.Add(auth.MaxAPITokenTTL)
	for _, id := range []string{"old", "max"} {
		if _, err := e.s.APITokenPrincipal(ctx, id, "s-"+id); !errors.Is(err, ErrBadToken) {
			t.Errorf("token %s after the maximum lifetime: %v, want ErrBadToken", id, err)
		}
	}
}

func TestJoinTokenMaximumLifetime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok := store.Token{ID: "long", SecretHash: []byte("h"), UsesLeft: 1, ExpiresAt: e.now.Add(MaxJoinTokenTTL + time.Minute), CreatedAt: e.now}
	if err := e.s.AddToken(ctx, "admin", tok); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a join token beyond the maximum lifetime: %v", err)
	}
	tok.ExpiresAt = e.now.Add(MaxJoinTokenTTL)
	if err := e.s.AddToken(ctx, "admin", tok); err != nil {
		t.Fatalf("a join token for the maximum lifetime: %v", err)
	}
}

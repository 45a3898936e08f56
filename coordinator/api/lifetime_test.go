package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/state"
)

func TestTokenLifetimes(t *testing.T) {
	h := newHarness(t)
	// An API token without a ttl expires after the default.
	c, ctx := h.Admin(), context.Background()
	if _, err := c.CreateAPIToken(ctx, adminapi.APITokenRequest{Name: "ci", Role: "viewer"}); err != nil {
		t.Fatalf("api token without ttl: %v", err)
	}
	list, err := c.APITokens(ctx)
	if err != nil || len(list) != 1 || !list[0].ExpiresAt.Equal(h.Clock.Now().Add(auth.DefaultAPITokenTTL)) {
		t.Fatalf("api tokens: %+v, want one expiring %v", list, h.Clock.Now().Add(auth.DefaultAPITokenTTL))
	}
	over := (auth.MaxAPITokenTTL + time.Hour).String()
	if _, err := c.CreateAPIToken(ctx, adminapi.APITokenRequest{Name: "ci", Role: "viewer", TTL: over}); !client.IsCode(err, "invalid") || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("api token beyond the maximum: %v", err)
	}
	// Join tokens have a maximum lifetime.
	over = (state.MaxJoinTokenTTL + time.Hour).String()
	if _, err := c.CreateJoinToken(ctx, adminapi.JoinTokenRequest{Namespace: "prod", TTL: over}); !client.IsCode(err, "invalid") || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("join token beyond the maximum: %v", err)
	}
	if _, err := c.CreateJoinToken(ctx, adminapi.JoinTokenRequest{Namespace: "prod", TTL: state.MaxJoinTokenTTL.String()}); err != nil {
		t.Fatalf("join token for the maximum: %v", err)
	}
}

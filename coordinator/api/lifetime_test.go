package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/state"
)

func TestTokenLifetimes(t *testing.T) {
	h := newHarness(t)
	// An API token without a ttl expires after the default.
	var tok api.APITokenResponse
	if code, body := h.AdminCall("POST", "/v1/admin/apitokens", `{"name":"ci","role":"viewer"}`, &tok); code != http.StatusOK {
		t.Fatalf("api token without ttl: %d %s", code, body)
	}
	var list []api.APITokenInfo
	h.AdminCall("GET", "/v1/admin/apitokens", "", &list)
	if len(list) != 1 || !list[0].ExpiresAt.Equal(h.Clock.Now().Add(auth.DefaultAPITokenTTL)) {
		t.Fatalf("api tokens: %+v, want one expiring %v", list, h.Clock.Now().Add(auth.DefaultAPITokenTTL))
	}
	over := (auth.MaxAPITokenTTL + time.Hour).String()
	if code, body := h.AdminCall("POST", "/v1/admin/apitokens", `{"name":"ci","role":"viewer","ttl":"`+over+`"}`, nil); code != http.StatusBadRequest || !strings.Contains(body, "at most") {
		t.Fatalf("api token beyond the maximum: %d %s", code, body)
	}
	// Join tokens have a maximum lifetime.
	over = (state.MaxJoinTokenTTL + time.Hour).String()
	if code, body := h.AdminCall("POST", "/v1/admin/tokens", `{"namespace":"prod","ttl":"`+over+`"}`, nil); code != http.StatusBadRequest || !strings.Contains(body, "at most") {
		t.Fatalf("join token beyond the maximum: %d %s", code, body)
	}
	if code, body := h.AdminCall("POST", "/v1/admin/tokens", `{"namespace":"prod","ttl":"`+state.MaxJoinTokenTTL.String()+`"}`, nil); code != http.StatusOK {
		t.Fatalf("join token for the maximum: %d %s", code, body)
	}
}

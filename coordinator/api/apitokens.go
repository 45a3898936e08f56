package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
)

// API tokens: bearer tokens with a role, for automation.

// listAPITokens lists the API tokens; the converter leaves out their
// secrets' hashes.
func (s *Server) listAPITokens(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		ts, err := tx.ListAPITokens()
		return list(ts, toAPIToken), err
	})
}

// createAPIToken creates a token and returns it once; a TTL of "" means
// auth.DefaultAPITokenTTL, and at most auth.MaxAPITokenTTL is allowed.
func (s *Server) createAPIToken(c echo.Context) error {
	var req adminapi.APITokenRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	ttl := auth.DefaultAPITokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return fail(http.StatusBadRequest, "invalid", "ttl %q: want a positive duration such as 720h, or nothing for the default, %s", req.TTL, state.Days(auth.DefaultAPITokenTTL))
		}
		if d > auth.MaxAPITokenTTL {
			return fail(http.StatusBadRequest, "invalid", "ttl %q: an API token is valid for at most %s: choose a shorter ttl, and create a new token before it expires", req.TTL, state.Days(auth.MaxAPITokenTTL))
		}
		ttl = d
	}
	expires := s.cfg.Now().Add(ttl)
	tok, id, secret := auth.NewAPIToken()
	err := s.cfg.State.AddAPIToken(c.Request().Context(), PrincipalOf(c).Name, store.APIToken{
		ID: id, Name: strings.TrimSpace(req.Name), Role: req.Role, SecretHash: auth.HashSecret(secret), ExpiresAt: expires})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, adminapi.APITokenCreated{ID: id, Token: tok})
}

func (s *Server) revokeAPIToken(c echo.Context) error {
	if err := s.cfg.State.RevokeAPIToken(c.Request().Context(), PrincipalOf(c).Name, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

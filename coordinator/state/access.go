package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/store"
)

// CreateUser adds a user with an already hashed password (auth.HashPassword).
// A user that exists is ErrConflict.
func (s *State) CreateUser(ctx context.Context, actor string, u store.User) error {
	if err := auth.CheckUserName(u.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := auth.CheckRole(u.Role); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if u.PasswordHash == "" {
		return fmt.Errorf("%w: user %s: no password", ErrInvalid, u.Name)
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = s.opts.Now()
	}
	return s.change(ctx, "user.create", actor, u.Name, map[string]any{"after": map[string]string{"name": u.Name, "role": u.Role}}, func(tx store.Tx) ([]string, error) {
		if _, err := tx.GetUser(u.Name); err == nil {
			return nil, fmt.Errorf("%w: user %q already exists: delete it first or choose another name", ErrConflict, u.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, tx.PutUser(u)
	})
}

// DeleteUser removes a user and its sessions. The last admin cannot be
// deleted, so that someone can always administer the coordinator.
func (s *State) DeleteUser(ctx context.Context, actor, name string) error {
	detail := map[string]any{}
	return s.change(ctx, "user.delete", actor, name, detail, func(tx store.Tx) ([]string, error) {
		u, err := tx.GetUser(name)
		if err != nil {
			return nil, err
		}
		detail["before"] = map[string]string{"name": u.Name, "role": u.Role}
		if u.Role == auth.RoleAdmin {
			us, err := tx.ListUsers()
			if err != nil {
				return nil, err
			}
			admins := 0
			for _, o := range us {
				if o.Role == auth.RoleAdmin {
					admins++
				}
			}
			if admins == 1 {
				return nil, fmt.Errorf("%w: %q is the last admin: create another admin before deleting it", ErrConflict, name)
			}
		}
		return nil, tx.DeleteUser(name)
	})
}

// Login records a new session for user (who has just proved their
// password) and drops expired sessions.
func (s *State) Login(ctx context.Context, sess store.Session) error {
	return s.change(ctx, "user.login", sess.User, sess.User, nil, func(tx store.Tx) ([]string, error) {
		if _, err := tx.DeleteExpiredSessions(s.opts.Now()); err != nil {
			return nil, err
		}
		return nil, tx.PutSession(sess)
	})
}

// Logout ends a session.
func (s *State) Logout(ctx context.Context, actor string, idHash []byte) error {
	return s.change(ctx, "user.logout", actor, actor, nil, func(tx store.Tx) ([]string, error) {
		return nil, tx.DeleteSession(idHash)
	})
}

// AddAPIToken stores an API token (its secret hashed with auth.HashSecret).
func (s *State) AddAPIToken(ctx context.Context, actor string, t store.APIToken) error {
	if err := auth.CheckRole(t.Role); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if t.Name == "" {
		return fmt.Errorf("%w: an API token needs a name that says what uses it", ErrInvalid)
	}
	if len(t.Name) > 100 {
		return fmt.Errorf("%w: API token name too long: use at most 100 characters", ErrInvalid)
	}
	now := s.opts.Now()
	switch {
	case t.ExpiresAt.IsZero():
		return fmt.Errorf("%w: an API token needs an expiry, at most %s from now", ErrInvalid, Days(auth.MaxAPITokenTTL))
	case !t.ExpiresAt.After(now):
		return fmt.Errorf("%w: the API token would expire at once: give it a positive lifetime", ErrInvalid)
	case t.ExpiresAt.Sub(now) > auth.MaxAPITokenTTL:
		return fmt.Errorf("%w: an API token may be valid for at most %s: choose a shorter lifetime, and create a new token before it expires", ErrInvalid, Days(auth.MaxAPITokenTTL))
	}
	t.CreatedBy = actor
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	return s.change(ctx, "apitoken.create", actor, t.ID, map[string]any{"after": map[string]any{"name": t.Name, "role": t.Role, "expires": t.ExpiresAt}}, func(tx store.Tx) ([]string, error) {
		return nil, tx.PutAPIToken(t)
	})
}

// RevokeAPIToken revokes an API token.
func (s *State) RevokeAPIToken(ctx context.Context, actor, id string) error {
	return s.change(ctx, "apitoken.revoke", actor, id, nil, func(tx store.Tx) ([]string, error) {
		return nil, tx.RevokeAPIToken(id)
	})
}

// Principal is who makes an admin request.
type Principal struct {
	// Name is the actor recorded in the audit log: a user name,
	// "apitoken:NAME" or "admin" (the admin token).
	Name string `json:"name"`
	Role string `json:"role"`
	// Via is "admin-token", "api-token" or "session".
	Via string `json:"via"`
	// CSRF is the session's CSRF token (sessions only).
	CSRF string `json:"csrf,omitempty"`
}

// Errors of Authenticate.
var (
	ErrNoSession = errors.New("no valid session")
	ErrBadToken  = errors.New("unknown, revoked or expired API token")
)

// SessionPrincipal returns the user of a live session.
func (s *State) SessionPrincipal(ctx context.Context, sessionID string) (Principal, error) {
	var p Principal
	err := s.st.View(ctx, func(tx store.Tx) error {
		sess, err := tx.GetSession(auth.HashSecret(sessionID))
		if err != nil {
			return ErrNoSession
		}
		if !s.opts.Now().Before(sess.ExpiresAt) {
			return ErrNoSession
		}
		u, err := tx.GetUser(sess.User)
		if err != nil {
			return ErrNoSession
		}
		p = Principal{Name: u.Name, Role: u.Role, Via: "session", CSRF: sess.CSRF}
		return nil
	})
	return p, err
}

// APITokenPrincipal checks an API token's secret, expiry and revocation.
func (s *State) APITokenPrincipal(ctx context.Context, id, secret string) (Principal, error) {
	var p Principal
	err := s.st.View(ctx, func(tx store.Tx) error {
		t, err := tx.GetAPIToken(id)
		if err != nil {
			return ErrBadToken // the id is not secret; only the secret is
		}
		expires := t.ExpiresAt
		if expires.IsZero() {
			// Stored before an expiry was required.
			expires = t.CreatedAt.Add(auth.MaxAPITokenTTL)
		}
		if !secretEqual(auth.HashSecret(secret), t.SecretHash) || t.Revoked || !s.opts.Now().Before(expires) {
			return ErrBadToken
		}
		p = Principal{Name: "apitoken:" + t.Name, Role: t.Role, Via: "api-token"}
		return nil
	})
	return p, err
}

// UserForLogin returns a user by name, for checking a password.
func (s *State) UserForLogin(ctx context.Context, name string) (store.User, error) {
	var u store.User
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		u, err = tx.GetUser(name)
		return err
	})
	return u, err
}

// HasUsers reports whether any user exists.
func (s *State) HasUsers(ctx context.Context) (bool, error) {
	var n int
	err := s.st.View(ctx, func(tx store.Tx) error {
		us, err := tx.ListUsers()
		n = len(us)
		return err
	})
	return n > 0, err
}

// Days formats a lifetime of whole days for messages: "720h (30 days)".
func Days(d time.Duration) string {
	return fmt.Sprintf("%dh (%d days)", int(d.Hours()), int(d.Hours())/24)
}

// SessionTTL is how long a console session lasts.
const SessionTTL = 12 * time.Hour

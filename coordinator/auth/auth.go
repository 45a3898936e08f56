// Package auth holds the credentials of people and automation on the
// coordinator: roles, argon2id password hashes, random secrets and their
// hashes, the API token format, and the names of the console's cookie and
// CSRF header. It does no I/O.
//
// Only packages cli (to create users), coordinator/api, coordinator/state
// and web import it.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// Roles.
const (
	// RoleAdmin may read and change everything.
	RoleAdmin = "admin"
	// RoleViewer may only read.
	RoleViewer = "viewer"
)

// CheckRole refuses a role other than admin and viewer.
func CheckRole(role string) error {
	if role != RoleAdmin && role != RoleViewer {
		return fmt.Errorf("role %q: must be admin or viewer", role)
	}
	return nil
}

// Console cookie and header names.
const (
	// SessionCookie holds the console session id.
	SessionCookie = "latch_session"
	// CSRFHeader must carry the session's CSRF token on every request that
	// changes something.
	CSRFHeader = "X-CSRF-Token"
)

// APITokenPrefix starts every API token: "latchapi.ID.SECRET".
const APITokenPrefix = "latchapi."

var userName = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// MaxUserNameLength is the longest user name.
const MaxUserNameLength = 63

// CheckUserName refuses names that are not short lowercase words. Its
// message quotes at most the start of a long name.
func CheckUserName(name string) error {
	if len(name) > MaxUserNameLength || !userName.MatchString(name) {
		shown := name
		if len(shown) > MaxUserNameLength+1 {
			shown = shown[:MaxUserNameLength+1] + "..."
		}
		return fmt.Errorf("user name %q: use 1 to %d lowercase letters, digits, '.', '_' or '-', starting with a letter", shown, MaxUserNameLength)
	}
	return nil
}

// MinPasswordLength is the shortest password accepted.
const MinPasswordLength = 12

// MaxPasswordLength is the longest password accepted.
const MaxPasswordLength = 1024

// CheckPassword refuses passwords that are too short or too long.
func CheckPassword(pw string) error {
	if len(pw) < MinPasswordLength {
		return fmt.Errorf("password too short: use at least %d characters (or leave it out to have one generated)", MinPasswordLength)
	}
	if len(pw) > MaxPasswordLength {
		return fmt.Errorf("password too long: use at most %d characters", MaxPasswordLength)
	}
	return nil
}

// argon2id parameters (OWASP's minimum: 19 MiB, 2 passes, 1 lane).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns pw's argon2id hash in the PHC string format,
// "$argon2id$v=19$m=...,t=...,p=...$SALT$HASH".
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrBadHash means a stored password hash cannot be read.
var ErrBadHash = errors.New("unreadable password hash")

// VerifyPassword reports whether pw matches the encoded hash, using the
// parameters recorded in it.
func VerifyPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, ErrBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 || t > 100 {
		return false, ErrBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, ErrBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 128 {
		return false, ErrBadHash
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is verified against when a user does not exist, so that an
// unknown name costs the same time as a wrong password.
var dummyHash, _ = HashPassword("latch-dummy-password")

// DummyHash is a valid hash of no user's password: verify against it
// when a user does not exist, so that an unknown name costs the same time
// as a wrong password.
func DummyHash() string { return dummyHash }

// BurnPasswordTime spends the time of one password verification.
func BurnPasswordTime(pw string) { _, _ = VerifyPassword(dummyHash, pw) }

// NewSecret returns 32 random bytes, base64url without padding.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewPassword returns a random password for a new user.
func NewPassword() string { return NewSecret()[:24] }

// HashSecret is the SHA-256 of a high-entropy secret (session ids, API
// token secrets): they need no slow hash.
func HashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// API token lifetimes: a token made without one expires after
// DefaultAPITokenTTL; none lives longer than MaxAPITokenTTL (a token
// stored without an expiry, before one was required, expires
// MaxAPITokenTTL after its creation).
const (
	DefaultAPITokenTTL = 90 * 24 * time.Hour
	MaxAPITokenTTL     = 365 * 24 * time.Hour
)

// NewAPIToken returns a new token string and its id and secret.
func NewAPIToken() (token, id, secret string) {
	id = NewSecret()[:12]
	secret = NewSecret()
	return APITokenPrefix + id + "." + secret, id, secret
}

// ParseAPIToken splits "latchapi.ID.SECRET". ok is false for anything
// else (such as the admin token).
func ParseAPIToken(s string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(s, APITokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, ".")
	if !ok || id == "" || secret == "" {
		return "", "", false
	}
	return id, secret, true
}

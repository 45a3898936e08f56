package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Join token layout: "latch1.<id>.<secret>.<ca-hash>".
const (
	tokenVersion   = "latch1"
	tokenIDLen     = 8  // base32 characters, 40 bits
	tokenSecretLen = 32 // base32 characters, 160 bits
	fingerprintLen = 64 // hex characters of SHA-256
	fingerprintPre = "sha256:"
	tokenFormat    = "latch1.<id>.<secret>.<ca-hash>"
)

// b32 is lowercase RFC 4648 base32 without padding.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token is a join token. The coordinator stores ID and the hash of Secret
// (never Secret itself); the node uses CAFingerprint to pin the coordinator
// (node/pin) before it sends Secret.
type Token struct {
	// ID names the token: 8 lowercase base32 characters. Not secret.
	ID string
	// Secret is 32 lowercase base32 characters (160 random bits).
	Secret string
	// CAFingerprint is the coordinator CA's fingerprint in the form
	// CA.Fingerprint returns: "sha256:" + 64 lowercase hex characters. In
	// the token text it appears without the "sha256:" prefix.
	CAFingerprint string
}

// NewToken makes a token with a random ID and secret for the CA whose
// fingerprint is given ("sha256:<hex>", as CA.Fingerprint returns, or bare
// hex). secretHash is HashSecret(tok.Secret), the only form of the secret
// the coordinator should keep.
func NewToken(fingerprint string) (tok Token, secretHash []byte, err error) {
	fp, err := normalizeFingerprint(fingerprint)
	if err != nil {
		return Token{}, nil, fmt.Errorf("token: %w", err)
	}
	raw := make([]byte, 5+20)
	if _, err := rand.Read(raw); err != nil {
		return Token{}, nil, fmt.Errorf("token: reading random bytes: %w", err)
	}
	tok = Token{
		ID:            b32.EncodeToString(raw[:5]),
		Secret:        b32.EncodeToString(raw[5:]),
		CAFingerprint: fp,
	}
	return tok, HashSecret(tok.Secret), nil
}

// String returns the token text "latch1.<id>.<secret>.<ca-hash>". It
// contains the secret: do not log it (slog gets the redacted LogValue).
func (t Token) String() string {
	return tokenVersion + "." + t.ID + "." + t.Secret + "." + strings.TrimPrefix(t.CAFingerprint, fingerprintPre)
}

// LogValue implements slog.LogValuer so that logging a Token shows only its
// ID.
func (t Token) LogValue() slog.Value {
	return slog.StringValue(tokenVersion + "." + t.ID + ".<redacted>")
}

// ParseToken parses token text made by Token.String. Surrounding white
// space is ignored. Errors never contain the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("token: want 4 dot-separated parts %s, got %d", tokenFormat, len(parts))
	}
	if parts[0] != tokenVersion {
		return Token{}, fmt.Errorf("token: starts with %q, want %q: this is not a Latch join token, or it is from a newer version of Latch", truncate(parts[0], 16), tokenVersion)
	}
	id, secret, fp := parts[1], parts[2], parts[3]
	if len(id) != tokenIDLen || !isBase32(id) {
		return Token{}, fmt.Errorf("token: id %q must be %d characters of a-z and 2-7 (%s)", truncate(id, 16), tokenIDLen, tokenFormat)
	}
	if len(secret) != tokenSecretLen || !isBase32(secret) {
		return Token{}, fmt.Errorf("token: secret must be %d characters of a-z and 2-7, got %d characters (%s); was the token copied completely?", tokenSecretLen, len(secret), tokenFormat)
	}
	nfp, err := normalizeFingerprint(fp)
	if err != nil {
		return Token{}, fmt.Errorf("token: ca-hash: %w (%s)", err, tokenFormat)
	}
	return Token{ID: id, Secret: secret, CAFingerprint: nfp}, nil
}

// HashSecret returns SHA-256 of the secret's text, the form in which the
// coordinator stores a token's secret.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// SecretMatches reports, in constant time, whether secret hashes to
// secretHash.
func SecretMatches(secret string, secretHash []byte) bool {
	return subtle.ConstantTimeCompare(HashSecret(secret), secretHash) == 1
}

// normalizeFingerprint accepts "sha256:<hex>" or "<hex>" (any case) and
// returns "sha256:<lowercase hex>".
func normalizeFingerprint(fp string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(fp), fingerprintPre))
	if len(h) != fingerprintLen {
		return "", fmt.Errorf("CA fingerprint must be %d hex characters (SHA-256), got %d", fingerprintLen, len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", errors.New("CA fingerprint is not hexadecimal")
	}
	return fingerprintPre + h, nil
}

func isBase32(s string) bool {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '2' && ch <= '7') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

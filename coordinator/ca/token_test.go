package ca_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/ca"
)

const fp = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestTokenRoundTrip(t *testing.T) {
	tok, hash, err := ca.NewToken(fp)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !regexp.MustCompile(`^latch1\.[a-z2-7]{8}\.[a-z2-7]{32}\.[0-9a-f]{64}$`).MatchString(s) {
		t.Fatalf("token %q has the wrong shape", s)
	}
	if !strings.HasSuffix(s, "."+strings.TrimPrefix(fp, "sha256:")) {
		t.Errorf("token %q does not end in the CA hash", s)
	}
	got, err := ca.ParseToken("  " + s + "\n")
	if err != nil {
		t.Fatalf("ParseToken(%q): %v", s, err)
	}
	if got != tok {
		t.Errorf("ParseToken = %+v, want %+v", got, tok)
	}
	if got.CAFingerprint != fp {
		t.Errorf("CAFingerprint = %q, want %q", got.CAFingerprint, fp)
	}
	sum := sha256.Sum256([]byte(tok.Secret))
	if !bytes.Equal(hash, sum[:]) || !bytes.Equal(ca.HashSecret(tok.Secret), hash) {
		t.Error("secret hash is not SHA-256 of the secret")
	}
	if !ca.SecretMatches(got.Secret, hash) || ca.SecretMatches(got.Secret+"x", hash) || ca.SecretMatches(got.Secret, nil) {
		t.Error("SecretMatches")
	}

	// Upper-case and prefixed hash forms are accepted and normalized.
	up := "latch1." + tok.ID + "." + tok.Secret + "." + strings.ToUpper(strings.TrimPrefix(fp, "sha256:"))
	if got, err := ca.ParseToken(up); err != nil || got.CAFingerprint != fp {
		t.Errorf("ParseToken(upper-case hash) = %+v, %v", got, err)
	}
	if tok2, _, err := ca.NewToken(strings.TrimPrefix(fp, "sha256:")); err != nil || tok2.CAFingerprint != fp {
		t.Errorf("NewToken(bare hex) = %+v, %v", tok2, err)
	}
}

func TestTokenWithRealCA(t *testing.T) {
	c := newCA(t, td, nil)
	tok, _, err := ca.NewToken(c.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ca.ParseToken(tok.String())
	if err != nil || got.CAFingerprint != c.Fingerprint() {
		t.Errorf("ParseToken = %+v, %v; want fingerprint %s", got, err, c.Fingerprint())
	}
}

func TestTokensAreDistinct(t *testing.T) {
	ids, secrets := map[string]bool{}, map[string]bool{}
	for range 1000 {
		tok, _, err := ca.NewToken(fp)
		if err != nil {
			t.Fatal(err)
		}
		if ids[tok.ID] || secrets[tok.Secret] {
			t.Fatalf("repeated id or secret: %+v", tok)
		}
		ids[tok.ID], secrets[tok.Secret] = true, true
	}
}

func TestParseTokenErrors(t *testing.T) {
	id, secret, hash := "abcdefgh", strings.Repeat("a2", 16), strings.TrimPrefix(fp, "sha256:")
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "want 4 dot-separated parts latch1.<id>.<secret>.<ca-hash>, got 1"},
		{"three parts", "latch1." + id + "." + secret, "want 4 dot-separated parts"},
		{"five parts", "latch1." + id + "." + secret + "." + hash + ".x", "got 5"},
		{"version", "latch2." + id + "." + secret + "." + hash, `starts with "latch2", want "latch1"`},
		{"short id", "latch1.abc." + secret + "." + hash, "id \"abc\" must be 8 characters"},
		{"upper id", "latch1.ABCDEFGH." + secret + "." + hash, "id"},
		{"id with 8", "latch1.abcdefg8." + secret + "." + hash, "id"},
		{"short secret", "latch1." + id + "." + secret[:31] + "." + hash, "secret must be 32 characters of a-z and 2-7, got 31"},
		{"bad secret char", "latch1." + id + "." + secret[:31] + "1." + hash, "secret must be"},
		{"short hash", "latch1." + id + "." + secret + "." + hash[:63], "ca-hash: CA fingerprint must be 64 hex characters"},
		{"non-hex hash", "latch1." + id + "." + secret + "." + strings.Repeat("g", 64), "not hexadecimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.ParseToken(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseToken(%q) = %v, want error containing %q", tc.in, err, tc.want)
			}
			if len(tc.in) > 50 && strings.Contains(err.Error(), secret[:20]) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
	if _, _, err := ca.NewToken("sha256:abc"); err == nil {
		t.Error("NewToken with a short fingerprint succeeded")
	}
}

func TestTokenLogValueRedacts(t *testing.T) {
	tok, _, err := ca.NewToken(fp)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("made", "token", tok)
	if strings.Contains(buf.String(), tok.Secret) || !strings.Contains(buf.String(), tok.ID) {
		t.Errorf("log line %q: want the id and not the secret", buf.String())
	}
	_ = fmt.Sprint(tok) // String is the full token by design
}

package agent

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzParseJoinToken: the node reads its join token from --join-token or
// LATCH_JOIN_TOKEN. parseToken never panics; an accepted token keeps the
// text it was given (trimmed), pins a "sha256:" + 64 hex fingerprint, and
// neither its String nor an error shows the secret.
// Seeds: testdata/fuzz/FuzzParseJoinToken.
func FuzzParseJoinToken(f *testing.F) {
	f.Add("latch1.abcdefgh.abcdefghijklmnopqrstuvwxyz234567." + strings.Repeat("0123456789abcdef", 4))
	f.Fuzz(func(t *testing.T, s string) {
		parts := strings.Split(strings.TrimSpace(s), ".")
		secret := ""
		if len(parts) == 4 && len(parts[2]) >= 8 && !strings.Contains(others(parts), parts[2]) {
			secret = parts[2]
		}
		tok, err := parseToken(s)
		if err != nil {
			if secret != "" && strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q shows the secret", err)
			}
			return
		}
		if tok.text != strings.TrimSpace(s) || len(tok.fingerprint) != len("sha256:")+64 || !strings.HasPrefix(tok.fingerprint, "sha256:") {
			t.Fatalf("parseToken(%q) = %+v", s, tok)
		}
		if secret != "" && strings.Contains(tok.String(), secret) {
			t.Fatalf("String() %q shows the secret", tok.String())
		}
	})
}

// others is the token's parts but the secret, as text and as quoted in
// messages: where the secret's characters may show without being the
// secret.
func others(parts []string) string {
	return fmt.Sprintf("%s.%s.%s %q %q %q", parts[0], parts[1], parts[3], parts[0], parts[1], parts[3])
}

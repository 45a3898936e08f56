package ca

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzParseToken: join token text comes from the command line, the
// environment and the enroll request. ParseToken never panics; a token it
// accepts prints back (String) to text it parses to the same token, with
// the documented shapes; its errors never contain the secret part.
// Seeds: testdata/fuzz/FuzzParseToken.
func FuzzParseToken(f *testing.F) {
	f.Add("latch1.abcdefgh.abcdefghijklmnopqrstuvwxyz234567." + strings.Repeat("0123456789abcdef", 4))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			parts := strings.Split(strings.TrimSpace(s), ".")
			if len(parts) == 4 && len(parts[2]) >= 8 && strings.Contains(err.Error(), parts[2]) &&
				!strings.Contains(others(parts), parts[2]) {
				t.Fatalf("error %q contains the secret %q", err, parts[2])
			}
			return
		}
		if len(tok.ID) != tokenIDLen || !isBase32(tok.ID) || len(tok.Secret) != tokenSecretLen || !isBase32(tok.Secret) ||
			len(tok.CAFingerprint) != len(fingerprintPre)+fingerprintLen || !strings.HasPrefix(tok.CAFingerprint, fingerprintPre) {
			t.Fatalf("accepted token %+v has the wrong shape", tok)
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("token %+v prints as %q, which parses to %+v, %v", tok, tok.String(), again, err)
		}
		if strings.Contains(tok.LogValue().String(), tok.Secret) {
			t.Fatalf("the log value %q shows the secret", tok.LogValue())
		}
	})
}

// others is the token's parts but the secret, as text and as quoted in
// messages: where the secret's characters may show without being the
// secret.
func others(parts []string) string {
	return fmt.Sprintf("%s.%s.%s %q %q %q", parts[0], parts[1], parts[3], parts[0], parts[1], parts[3])
}

package auth

import (
	"strings"
	"testing"
)

// FuzzParseAPIToken: API tokens come in the Authorization header of every
// admin request. ParseAPIToken never panics, and accepts exactly
// "latchapi.ID.SECRET" with a non-empty ID without dots and a non-empty
// secret, which it splits without loss.
// Seeds: testdata/fuzz/FuzzParseAPIToken.
func FuzzParseAPIToken(f *testing.F) {
	tok, _, _ := NewAPIToken()
	f.Add(tok)
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := ParseAPIToken(s)
		if !ok {
			if id != "" || secret != "" {
				t.Fatalf("refused %q but returned id %q, secret %q", s, id, secret)
			}
			rest, pre := strings.CutPrefix(s, APITokenPrefix)
			if i := strings.Index(rest, "."); pre && i > 0 && i < len(rest)-1 {
				t.Fatalf("refused %q, a well-formed token", s)
			}
			return
		}
		if id == "" || secret == "" || strings.Contains(id, ".") || APITokenPrefix+id+"."+secret != s {
			t.Fatalf("ParseAPIToken(%q) = %q, %q", s, id, secret)
		}
	})
}

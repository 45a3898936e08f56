package auth

import (
	"strings"
	"testing"
)

func TestPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not an argon2id PHC string", h)
	}
	h2, _ := HashPassword("correct horse battery")
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for pw, want := range map[string]bool{"correct horse battery": true, "correct horse batterY": false, "": false} {
		ok, err := VerifyPassword(h, pw)
		if err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=0,t=1,p=1$AA$AA", "$argon2id$v=19$m=8,t=1,p=1$!!$AA"} {
		if _, err := VerifyPassword(bad, "x"); err == nil {
			t.Errorf("VerifyPassword(%q) accepted a bad hash", bad)
		}
	}
}

func TestChecks(t *testing.T) {
	for _, ok := range []string{"admin", "alice.b", "ops-1"} {
		if err := CheckUserName(ok); err != nil {
			t.Errorf("CheckUserName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Admin", "1abc", "a b", "a/b", strings.Repeat("a", 64)} {
		if err := CheckUserName(bad); err == nil {
			t.Errorf("CheckUserName(%q) accepted", bad)
		}
	}
	if CheckRole("admin") != nil || CheckRole("viewer") != nil || CheckRole("root") == nil {
		t.Error("CheckRole accepts the wrong roles")
	}
	if CheckPassword("short") == nil || CheckPassword("long enough password") != nil {
		t.Error("CheckPassword")
	}
}

func TestAPIToken(t *testing.T) {
	tok, id, secret := NewAPIToken()
	gid, gsecret, ok := ParseAPIToken(tok)
	if !ok || gid != id || gsecret != secret {
		t.Errorf("ParseAPIToken(%q) = %q, %q, %v", tok, gid, gsecret, ok)
	}
	for _, bad := range []string{NewSecret(), "latchapi.", "latchapi.id", "latchapi..s", "latchapi.id."} {
		if _, _, ok := ParseAPIToken(bad); ok {
			t.Errorf("ParseAPIToken(%q) accepted", bad)
		}
	}
}

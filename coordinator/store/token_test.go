package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testToken(id string, uses int) Token {
	return Token{ID: id, SecretHash: []byte("hash-" + id), Namespace: "prod", Labels: map[string]string{"role": "web"},
		UsesLeft: uses, ExpiresAt: t1, CreatedAt: t0}
}

func TestTokens(t *testing.T) {
	s, _ := openTest(t)
	tests := []struct {
		name string
		tok  Token
		want error
	}{
		{"single use", testToken("bbb", 1), nil},
		{"five uses", testToken("aaa", 5), nil},
		{"replace", testToken("aaa", 3), nil},
		{"used up", testToken("ccc", 0), nil},
		{"empty id", testToken("", 1), errAny},
		{"negative uses", testToken("x", -1), errAny},
		{"no expiry", func() Token { tok := testToken("x", 1); tok.ExpiresAt = time.Time{}; return tok }(), errAny},
		{"no secret", func() Token { tok := testToken("x", 1); tok.SecretHash = nil; return tok }(), errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErrAny(t, s.Update(context.Background(), func(tx Tx) error { return tx.PutToken(tc.tok) }), tc.want)
		})
	}
	update(t, s, func(tx Tx) error { return tx.RevokeToken("ccc") })
	err := s.Update(context.Background(), func(tx Tx) error { return tx.RevokeToken("nope") })
	checkErr(t, err, ErrNotFound)
	revoked := testToken("ccc", 0)
	revoked.Revoked = true
	view(t, s, func(tx Tx) error {
		got, err := tx.ListTokens()
		if d := cmp.Diff([]Token{testToken("aaa", 3), testToken("bbb", 1), revoked}, got, cmpOpts); d != "" {
			t.Errorf("ListTokens (-want +got):\n%s", d)
		}
		return err
	})
}

func TestConsumeToken(t *testing.T) {
	s, _ := openTest(t)
	revoked := testToken("revoked", 3)
	revoked.Revoked = true
	update(t, s, func(tx Tx) error {
		return errors.Join(tx.PutToken(testToken("once", 1)), tx.PutToken(testToken("twice", 2)), tx.PutToken(revoked))
	})
	hash := func(id string) []byte { return []byte("hash-" + id) }
	before := t1.Add(-time.Nanosecond)
	tests := []struct {
		name     string
		id       string
		hash     []byte
		now      time.Time
		want     error
		wantUses int // UsesLeft of the token returned
		msg      string
	}{
		{"unknown", "nope", hash("nope"), t0, ErrNotFound, 0, "does not exist or its secret is wrong"},
		{"wrong secret", "once", hash("other"), t0, ErrNotFound, 0, "does not exist or its secret is wrong"},
		{"wrong secret, short", "once", []byte("h"), t0, ErrNotFound, 0, ""},
		{"wrong secret on a revoked token", "revoked", hash("x"), t0, ErrNotFound, 0, ""},
		{"expired", "once", hash("once"), t1, ErrTokenExpired, 0, "has expired at 2026-03-01T13:00:00Z: create a new one with `latch admin token create`"},
		{"revoked", "revoked", hash("revoked"), t0, ErrTokenRevoked, 0, "latch admin token create"},
		{"single use", "once", hash("once"), before, nil, 1, ""},
		{"single use again", "once", hash("once"), t0, ErrTokenUsed, 0, "already been used"},
		{"two uses: 1", "twice", hash("twice"), t0, nil, 2, ""},
		{"two uses: 2", "twice", hash("twice"), t0, nil, 1, ""},
		{"two uses: 3", "twice", hash("twice"), t0, ErrTokenUsed, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Token
			err := s.Update(context.Background(), func(tx Tx) (err error) {
				got, err = tx.ConsumeToken(tc.id, tc.hash, tc.now)
				return err
			})
			checkErr(t, err, tc.want)
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			if got.UsesLeft != tc.wantUses {
				t.Errorf("returned token has %d uses left, want %d", got.UsesLeft, tc.wantUses)
			}
			if err == nil && (got.ID != tc.id || got.Namespace != "prod" || got.Labels["role"] != "web") {
				t.Errorf("returned token %+v", got)
			}
		})
	}
	view(t, s, func(tx Tx) error {
		toks, err := tx.ListTokens()
		for _, tok := range toks {
			if tok.ID != "revoked" && tok.UsesLeft != 0 {
				t.Errorf("token %s has %d uses left, want 0", tok.ID, tok.UsesLeft)
			}
		}
		return err
	})
	// ConsumeToken writes, so it fails in a View.
	if err := s.View(context.Background(), func(tx Tx) error {
		_, err := tx.ConsumeToken("nope", nil, t0)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("ConsumeToken of unknown token in View: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestConsumeTokenConcurrent(t *testing.T) {
	const uses, workers = 5, 20
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error { return tx.PutToken(testToken("multi", uses)) })
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		ok, used, another int
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Update(context.Background(), func(tx Tx) error {
				_, err := tx.ConsumeToken("multi", []byte("hash-multi"), t0)
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrTokenUsed):
				used++
			default:
				another++
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != uses || used != workers-uses || another != 0 {
		t.Errorf("%d successes, %d ErrTokenUsed, %d other errors; want %d, %d, 0", ok, used, another, uses, workers-uses)
	}
}

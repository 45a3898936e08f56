package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestUsersSessionsAPITokens(t *testing.T) {
	s, _ := openTest(t)
	alice := User{Name: "alice", Role: "admin", PasswordHash: "$argon2id$x", CreatedAt: t0}
	bob := User{Name: "bob", Role: "viewer", PasswordHash: "$argon2id$y", CreatedAt: t0}
	update(t, s, func(tx Tx) error {
		if err := tx.PutUser(bob); err != nil {
			return err
		}
		return tx.PutUser(alice)
	})
	for _, bad := range []User{{Role: "admin", PasswordHash: "h"}, {Name: "x", PasswordHash: "h"}, {Name: "x", Role: "admin"}} {
		checkErrAny(t, s.Update(context.Background(), func(tx Tx) error { return tx.PutUser(bad) }), errAny)
	}
	view(t, s, func(tx Tx) error {
		got, err := tx.ListUsers()
		if d := cmp.Diff([]User{alice, bob}, got, cmpOpts); d != "" {
			t.Errorf("ListUsers (-want +got):\n%s", d)
		}
		return err
	})

	sess := Session{IDHash: []byte("hash-1"), User: "bob", CSRF: "c1", CreatedAt: t0, ExpiresAt: t1}
	old := Session{IDHash: []byte("hash-0"), User: "alice", CSRF: "c0", CreatedAt: t0, ExpiresAt: t0.Add(time.Second)}
	update(t, s, func(tx Tx) error {
		if err := tx.PutSession(sess); err != nil {
			return err
		}
		return tx.PutSession(old)
	})
	checkErr(t, s.Update(context.Background(), func(tx Tx) error {
		return tx.PutSession(Session{IDHash: []byte("h"), User: "nobody", CSRF: "c", ExpiresAt: t1})
	}), ErrNotFound)
	checkErrAny(t, s.Update(context.Background(), func(tx Tx) error {
		return tx.PutSession(Session{IDHash: []byte("h"), User: "bob", CSRF: "c"})
	}), errAny)
	view(t, s, func(tx Tx) error {
		got, err := tx.GetSession([]byte("hash-1"))
		if d := cmp.Diff(sess, got, cmpOpts); d != "" {
			t.Errorf("GetSession (-want +got):\n%s", d)
		}
		return err
	})
	update(t, s, func(tx Tx) error {
		n, err := tx.DeleteExpiredSessions(t0.Add(2 * time.Second))
		if n != 1 {
			t.Errorf("DeleteExpiredSessions removed %d, want 1", n)
		}
		return err
	})
	// Deleting a user deletes its sessions.
	update(t, s, func(tx Tx) error { return tx.DeleteUser("bob") })
	view(t, s, func(tx Tx) error {
		_, err := tx.GetSession([]byte("hash-1"))
		checkErr(t, err, ErrNotFound)
		_, err = tx.GetUser("bob")
		checkErr(t, err, ErrNotFound)
		return nil
	})
	checkErr(t, s.Update(context.Background(), func(tx Tx) error { return tx.DeleteSession([]byte("hash-1")) }), ErrNotFound)

	tok := APIToken{ID: "t1", Name: "ci", Role: "viewer", SecretHash: []byte("s"), CreatedBy: "alice", CreatedAt: t0}
	update(t, s, func(tx Tx) error { return tx.PutAPIToken(tok) })
	checkErrAny(t, s.Update(context.Background(), func(tx Tx) error { return tx.PutAPIToken(APIToken{ID: "t2", Role: "admin"}) }), errAny)
	update(t, s, func(tx Tx) error { return tx.RevokeAPIToken("t1") })
	checkErr(t, s.Update(context.Background(), func(tx Tx) error { return tx.RevokeAPIToken("nope") }), ErrNotFound)
	tok.Revoked = true
	view(t, s, func(tx Tx) error {
		got, err := tx.ListAPITokens()
		if d := cmp.Diff([]APIToken{tok}, got, cmpOpts); d != "" {
			t.Errorf("ListAPITokens (-want +got):\n%s", d)
		}
		return err
	})
}

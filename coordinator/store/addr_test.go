package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
)

func alloc(t testing.TB, s Store, owner, pool string) netip.Addr {
	t.Helper()
	var a netip.Addr
	update(t, s, func(tx Tx) (err error) {
		a, err = tx.AllocateAddr(owner, netip.MustParsePrefix(pool))
		return err
	})
	return a
}

func TestAllocateAddr(t *testing.T) {
	s, path := openTest(t)
	const pool = "100.64.0.0/10"
	tests := []struct {
		owner, pool, want string
	}{
		{"a", pool, "100.64.0.2"},
		{"b", pool, "100.64.0.3"},
		{"a", pool, "100.64.0.2"},            // same owner, same address
		{"c", "100.64.5.6/10", "100.64.0.4"}, // pool given unmasked
		{"d", "fd7a:115c:a1e0::/48", "fd7a:115c:a1e0::2"},
		{"e", "fd7a:115c:a1e0::/48", "fd7a:115c:a1e0::3"},
		{"f", "fd00::/8", "fd00::2"}, // more host bits than an INTEGER holds
		{"g", "10.1.0.0/16", "10.1.0.2"},
		{"h", pool, "100.64.0.5"},
	}
	for _, tc := range tests {
		if got := alloc(t, s, tc.owner, tc.pool); got != netip.MustParseAddr(tc.want) {
			t.Errorf("AllocateAddr(%q, %s) = %v, want %s", tc.owner, tc.pool, got, tc.want)
		}
	}

	// Errors.
	for _, tc := range []struct {
		name, owner, pool string
		want              error
	}{
		{"owner holds an address in another pool", "g", pool, ErrConflict},
		{"empty owner", "", pool, errAny},
		{"pool too small", "x", "10.0.0.0/31", errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(context.Background(), func(tx Tx) error {
				_, err := tx.AllocateAddr(tc.owner, netip.MustParsePrefix(tc.pool))
				return err
			})
			checkErrAny(t, err, tc.want)
		})
	}
	err := s.Update(context.Background(), func(tx Tx) error { _, err := tx.AllocateAddr("x", netip.Prefix{}); return err })
	checkErrAny(t, err, errAny)

	// Stable across Close and Open.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range tests {
		if got := alloc(t, s, tc.owner, tc.pool); got != netip.MustParseAddr(tc.want) {
			t.Errorf("after reopen, AllocateAddr(%q, %s) = %v, want %s", tc.owner, tc.pool, got, tc.want)
		}
	}

	// Release and reuse: the lowest free address goes first.
	update(t, s, func(tx Tx) error { return errors.Join(tx.ReleaseAddr("b"), tx.ReleaseAddr("a")) })
	err = s.Update(context.Background(), func(tx Tx) error { return tx.ReleaseAddr("a") })
	checkErr(t, err, ErrNotFound)
	for _, tc := range []struct{ owner, want string }{
		{"i", "100.64.0.2"},
		{"j", "100.64.0.3"},
		{"k", "100.64.0.6"},
		{"a", "100.64.0.7"}, // a released its address: it gets a new one
	} {
		if got := alloc(t, s, tc.owner, pool); got != netip.MustParseAddr(tc.want) {
			t.Errorf("AllocateAddr(%q) = %v, want %s", tc.owner, got, tc.want)
		}
	}
	// After release, the owner may move to another pool.
	update(t, s, func(tx Tx) error { return tx.ReleaseAddr("g") })
	if got := alloc(t, s, "g", pool); got != netip.MustParseAddr("100.64.0.8") {
		t.Errorf("AllocateAddr(g) after release = %v", got)
	}
}

func TestAllocateAddrExhausted(t *testing.T) {
	s, _ := openTest(t)
	const pool = "198.19.0.0/30"
	if a, b := alloc(t, s, "a", pool), alloc(t, s, "b", pool); a != netip.MustParseAddr("198.19.0.2") || b != netip.MustParseAddr("198.19.0.3") {
		t.Fatalf("allocated %v and %v", a, b)
	}
	allocErr := func(owner string) error {
		return s.Update(context.Background(), func(tx Tx) error {
			_, err := tx.AllocateAddr(owner, netip.MustParsePrefix(pool))
			return err
		})
	}
	err := allocErr("c")
	checkErr(t, err, ErrPoolExhausted)
	t.Logf("exhausted: %v", err)
	// Existing owners still get their address.
	if got := alloc(t, s, "b", pool); got != netip.MustParseAddr("198.19.0.3") {
		t.Errorf("AllocateAddr(b) = %v", got)
	}
	update(t, s, func(tx Tx) error { return tx.ReleaseAddr("a") })
	if got := alloc(t, s, "c", pool); got != netip.MustParseAddr("198.19.0.2") {
		t.Errorf("AllocateAddr(c) after release = %v", got)
	}
	checkErr(t, allocErr("d"), ErrPoolExhausted)
}

func TestAllocateAddrOverlappingPools(t *testing.T) {
	s, _ := openTest(t)
	alloc(t, s, "a", "10.0.0.0/24")
	err := s.Update(context.Background(), func(tx Tx) error {
		_, err := tx.AllocateAddr("b", netip.MustParsePrefix("10.0.0.0/16"))
		return err
	})
	checkErr(t, err, ErrConflict)
}

func TestAllocateAddrUnique(t *testing.T) {
	s, path := openTest(t)
	const n = 1000
	pool := netip.MustParsePrefix("100.64.0.0/10")
	seen := map[netip.Addr]string{}
	byOwner := map[string]netip.Addr{}
	update(t, s, func(tx Tx) error {
		for i := range n {
			owner := fmt.Sprintf("node-%d", i)
			a, err := tx.AllocateAddr(owner, pool)
			if err != nil {
				return err
			}
			if prev, ok := seen[a]; ok {
				t.Fatalf("%v given to %s and %s", a, prev, owner)
			}
			seen[a] = owner
			byOwner[owner] = a
		}
		// Free every third address, then allocate again: the freed ones
		// are reused, lowest first, before any new one.
		for i := 0; i < n; i += 3 {
			if err := tx.ReleaseAddr(fmt.Sprintf("node-%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	s.Close()
	s, err := OpenSQLite(filepath.Clean(path))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	update(t, s, func(tx Tx) error {
		for i := 0; i < n; i += 3 {
			a, err := tx.AllocateAddr(fmt.Sprintf("new-%d", i), pool)
			if err != nil {
				return err
			}
			if want := byOwner[fmt.Sprintf("node-%d", i)]; a != want {
				t.Fatalf("new-%d got %v, want the freed %v", i, a, want)
			}
		}
		a, err := tx.AllocateAddr("last", pool)
		if want := netip.MustParseAddr("100.64.3.234"); a != want { // offset 2+1000
			t.Errorf("next new address %v, want %v", a, want)
		}
		return err
	})
}

package store

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// firstOffset is the first offset in a pool that is handed out: the
// network address (.0) and the first usable one (.1) are reserved.
const firstOffset = 2

// maxHostBits caps the offsets of very large (IPv6) pools so that they fit
// an INTEGER column; 2^62 addresses is more than enough.
const maxHostBits = 62

// poolRange returns the canonical key of pool and its highest offset.
func poolRange(pool netip.Prefix) (key string, maxOff int64, err error) {
	if !pool.IsValid() {
		return "", 0, fmt.Errorf("address pool %s is not a valid prefix", pool)
	}
	pool = pool.Masked()
	host := pool.Addr().BitLen() - pool.Bits()
	if host < 2 {
		return "", 0, fmt.Errorf("address pool %s is too small: it needs at least 4 addresses (a /30 for IPv4)", pool)
	}
	host = min(host, maxHostBits)
	return pool.String(), 1<<host - 1, nil
}

// offsetAddr returns the address at offset off from pool's first address.
// off is below 2^(host bits), so it only fills host bits that are zero.
func offsetAddr(pool netip.Prefix, off int64) netip.Addr {
	base := pool.Masked().Addr()
	if base.Is4() {
		b := base.As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])|uint32(off))
		return netip.AddrFrom4(b)
	}
	b := base.As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])|uint64(off))
	return netip.AddrFrom16(b)
}

// AllocateAddr implements Tx. Cost: a few index lookups, whatever the
// number of allocations. A released address is kept as a row with no
// owner, so the lowest free address is the lowest such row or, when there
// is none, the one after the highest row of the pool.
func (t *sqlTx) AllocateAddr(owner string, pool netip.Prefix) (netip.Addr, error) {
	if owner == "" {
		return netip.Addr{}, errors.New("allocating address: owner is empty")
	}
	what := fmt.Sprintf("allocating address for %q in pool %s", owner, pool)
	key, maxOff, err := poolRange(pool)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("allocating address for %q: %w", owner, err)
	}

	var havePool, haveAddr string
	err = t.queryRow(`SELECT pool, addr FROM addrs WHERE owner = ?`, owner).Scan(&havePool, &haveAddr)
	switch {
	case err == nil:
		a, err := decAddr(what, haveAddr)
		if err != nil {
			return netip.Addr{}, err
		}
		if havePool != key && !pool.Contains(a) {
			return netip.Addr{}, fmt.Errorf("%s: it already holds %s from pool %s: release it first: %w", what, a, havePool, ErrConflict)
		}
		return a, nil
	case !errors.Is(err, sql.ErrNoRows):
		return netip.Addr{}, fmt.Errorf("%s: %w", what, err)
	}

	var off int64
	var addr string
	err = t.queryRow(`SELECT off, addr FROM addrs WHERE pool = ? AND owner IS NULL ORDER BY off LIMIT 1`, key).Scan(&off, &addr)
	switch {
	case err == nil:
		_, err = t.exec(`UPDATE addrs SET owner = ? WHERE pool = ? AND off = ?`, owner, key, off)
	case errors.Is(err, sql.ErrNoRows):
		var last int64
		err = t.queryRow(`SELECT off FROM addrs WHERE pool = ? ORDER BY off DESC LIMIT 1`, key).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			off = firstOffset
		case err != nil:
			return netip.Addr{}, fmt.Errorf("%s: %w", what, err)
		default:
			off = last + 1
		}
		if off > maxOff {
			return netip.Addr{}, fmt.Errorf("%s: all %d addresses are in use: release some or use a larger pool: %w",
				what, maxOff-firstOffset+1, ErrPoolExhausted)
		}
		addr = offsetAddr(pool, off).String()
		_, err = t.exec(`INSERT INTO addrs (pool, off, addr, owner) VALUES (?, ?, ?, ?)`, key, off, addr, owner)
	default:
		return netip.Addr{}, fmt.Errorf("%s: %w", what, err)
	}
	if isUniqueViolation(err, "addrs.addr") {
		return netip.Addr{}, fmt.Errorf("%s: %s is held in another pool: pools must not overlap: %w", what, addr, ErrConflict)
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %w", what, err)
	}
	return decAddr(what, addr)
}

// ReleaseAddr implements Tx.
func (t *sqlTx) ReleaseAddr(owner string) error {
	res, err := t.exec(`UPDATE addrs SET owner = NULL WHERE owner = ?`, owner)
	return deleted(fmt.Sprintf("releasing address of %q", owner), res, err)
}

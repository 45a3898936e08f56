package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// busyTimeoutMS is how long a connection waits for a lock another process
// holds before it fails with SQLITE_BUSY.
const busyTimeoutMS = 10000

// maxReaders bounds the read connection pool.
const maxReaders = 8

// SQLite is the embedded Store: one database file in WAL mode with
// synchronous=FULL, so a committed Update survives a crash of the process
// or of the machine. Writes go through one connection, serialized by mu;
// reads use a separate pool of read-only connections.
type SQLite struct {
	path string
	// mu serializes Update; must be held while using w.
	mu sync.Mutex
	w  *sql.DB // exactly one connection
	r  *sql.DB // read-only connections

	ws, rs *stmtCache // prepared statements of w and r
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the database at path, creating it (mode 0600) if it does
// not exist, and brings its schema up to date. A database whose schema is
// newer than this code is refused with ErrConflict.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("opening store: %q is not a usable database path: give a file path without '?' or '#'", path)
	}
	// Create the file ourselves so that it, and the -wal and -shm files
	// SQLite derives from it, are private: it holds token hashes.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(fi.Mode().Perm() &^ 0o077)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}

	common := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)", path, busyTimeoutMS)
	w, err := sql.Open("sqlite", common+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &SQLite{path: path, w: w}
	if err := s.checkPragmas(); err != nil {
		w.Close()
		return nil, err
	}
	if err := migrate(context.Background(), w, path, migrations); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	r.SetMaxOpenConns(maxReaders)
	r.SetMaxIdleConns(maxReaders)
	s.r = r
	s.ws, s.rs = newStmtCache(w), newStmtCache(r)
	return s, nil
}

// checkPragmas verifies that the settings durability depends on took
// effect on the write connection.
func (s *SQLite) checkPragmas() error {
	ctx := context.Background()
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("opening store %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("opening store %s: journal mode is %q, not WAL: the file system may not support WAL (use a local disk)", s.path, mode)
	}
	var syncMode, fk int
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("opening store %s: %w", s.path, err)
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("opening store %s: %w", s.path, err)
	}
	if syncMode != 2 || fk != 1 {
		return fmt.Errorf("opening store %s: synchronous=%d foreign_keys=%d, want 2 and 1", s.path, syncMode, fk)
	}
	return nil
}

// Update implements Store.
func (s *SQLite) Update(ctx context.Context, fn func(Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return runTx(ctx, s.w, s.ws, nil, fn)
}

// View implements Store.
func (s *SQLite) View(ctx context.Context, fn func(Tx) error) error {
	return runTx(ctx, s.r, s.rs, &sql.TxOptions{ReadOnly: true}, fn)
}

// Close implements Store.
func (s *SQLite) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := []error{s.ws.close(), s.rs.close(), s.r.Close(), s.w.Close()}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing store %s: %w", s.path, err)
	}
	return nil
}

// runTx runs fn in a transaction on db, committing if fn returns nil and
// rolling back otherwise, including when fn panics. Once the transaction
// has ended, it prepares into stmts the queries fn ran unprepared.
func runTx(ctx context.Context, db *sql.DB, stmts *stmtCache, opts *sql.TxOptions, fn func(Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store: beginning transaction: %w", err)
	}
	stx := &sqlTx{ctx: ctx, tx: tx, stmts: stmts}
	err = endTx(tx, callFn(tx, stx, fn))
	if len(stx.misses) > 0 && stmts != nil && ctx.Err() == nil {
		stmts.prepare(ctx, stx.misses)
	}
	return err
}

// callFn calls fn, rolling tx back if fn panics; the panic goes on.
func callFn(tx *sql.Tx, stx *sqlTx, fn func(Tx) error) error {
	ok := false
	defer func() {
		if !ok {
			tx.Rollback()
		}
	}()
	err := fn(stx)
	ok = true
	return err
}

// endTx commits tx if ferr is nil and rolls it back otherwise.
func endTx(tx *sql.Tx, ferr error) error {
	if ferr != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(ferr, fmt.Errorf("store: rolling back: %w", rerr))
		}
		return ferr
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing: %w", err)
	}
	return nil
}

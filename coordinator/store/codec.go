package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Times are stored as unix nanoseconds, which cover 1678 to 2262.
var (
	minTime = time.Unix(0, -1<<63+1)
	maxTime = time.Unix(0, 1<<63-1)
)

// encTime encodes t for a time column: NULL for the zero time, otherwise
// unix nanoseconds.
func encTime(what string, t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("%s: time %s is outside the storable range (years 1678 to 2262)", what, t.Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

func decTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// encJSON encodes a map or slice for a JSON column; nil and empty encode
// the same way, as "null".
func encJSON(what string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("%s: encoding: %w", what, err)
	}
	switch string(b) {
	case "{}", "[]":
		return "null", nil
	}
	return string(b), nil
}

// decJSON decodes a JSON column into v (a pointer to a map or slice).
func decJSON(what, s string, v any) error {
	if s == "" || s == "null" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("%s: stored value is corrupt: %w", what, err)
	}
	return nil
}

func encAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func decAddr(what, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: stored address is corrupt: %w", what, err)
	}
	return a, nil
}

// SQLite extended result codes this package tells apart.
const (
	sqliteConstraintForeignKey = 787
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

func sqliteCode(err error) int {
	var ce interface{ Code() int }
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure; if index is not empty, only one naming that index or
// column list.
func isUniqueViolation(err error, index string) bool {
	c := sqliteCode(err)
	if c != sqliteConstraintUnique && c != sqliteConstraintPrimaryKey {
		return false
	}
	return index == "" || strings.Contains(err.Error(), index)
}

func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqliteConstraintForeignKey
}

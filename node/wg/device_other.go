//go:build !linux

package wg

import "log/slog"

// Open returns ErrUnsupported: only Linux is supported for now.
func Open(cfg Config, log *slog.Logger) (Device, Impl, error) {
	if _, err := cfg.check(); err != nil {
		return nil, "", err
	}
	return nil, "", ErrUnsupported
}

package spiffetrust

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FileSource is an x509bundle.Source for one trust domain read from a PEM
// file of CA certificates (what `spire-server bundle show` prints). Watch
// reloads it when its modification time or size changes; a file that fails
// to load keeps the last good bundle and is logged.
type FileSource struct {
	td   spiffeid.TrustDomain
	path string
	log  *slog.Logger

	mu     sync.RWMutex
	bundle *x509bundle.Bundle // guarded by mu
	stamp  fileStamp          // of the loaded file; guarded by mu
}

var _ x509bundle.Source = (*FileSource)(nil)

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewFileSource loads the bundle of td from path; it fails if the file
// cannot be read or holds no certificate.
func NewFileSource(td spiffeid.TrustDomain, path string, log *slog.Logger) (*FileSource, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &FileSource{td: td, path: path, log: log}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// reload loads the file if it changed since the last load; it reports
// whether it loaded a new bundle.
func (s *FileSource) reload() (bool, error) {
	st, err := stampOf(s.path)
	if err != nil {
		return false, fmt.Errorf("trust bundle %s: %w", s.path, err)
	}
	s.mu.RLock()
	same := s.bundle != nil && st == s.stamp
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	b, err := x509bundle.Load(s.td, s.path)
	if err != nil {
		return false, fmt.Errorf("trust bundle %s: %w (want PEM CA certificates, e.g. from `spire-server bundle show`)", s.path, err)
	}
	if len(b.X509Authorities()) == 0 {
		return false, fmt.Errorf("trust bundle %s holds no certificate", s.path)
	}
	s.mu.Lock()
	s.bundle, s.stamp = b, st
	s.mu.Unlock()
	return true, nil
}

// Watch checks the file every interval until ctx ends and reloads it when
// it changed.
func (s *FileSource) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := s.reload()
		switch {
		case err != nil:
			s.log.Warn("keeping the last SPIRE trust bundle", "err", err)
		case changed:
			s.log.Info("reloaded the SPIRE trust bundle", "path", s.path, "authorities", len(s.current().X509Authorities()))
		}
	}
}

func (s *FileSource) current() *x509bundle.Bundle {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bundle
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != s.td {
		return nil, fmt.Errorf("no trust bundle for trust domain %q (the file %s is for %q)", td.Name(), s.path, s.td.Name())
	}
	return s.current(), nil
}

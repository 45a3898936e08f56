package web

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Limiter counts failed logins per key (user name and client address) and
// blocks a key after max failures within window, until the window that
// began with its first failure ends. It holds at most size keys, each as
// its SHA-256 (so a long key costs no more than a short one): when full
// it forgets expired keys, then the oldest.
type Limiter struct {
	max    int
	window time.Duration
	size   int
	now    func() time.Time

	mu   sync.Mutex
	keys map[[sha256.Size]byte]*attempts // guarded by mu
}

type attempts struct {
	first    time.Time
	failures int
}

// NewLimiter returns a limiter; now is the clock.
func NewLimiter(max int, window time.Duration, size int, now func() time.Time) *Limiter {
	return &Limiter{max: max, window: window, size: size, now: now, keys: map[[sha256.Size]byte]*attempts{}}
}

// Blocked returns how long key must still wait, or 0.
func (l *Limiter) Blocked(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sha256.Sum256([]byte(key))
	a := l.keys[k]
	if a == nil {
		return 0
	}
	left := a.first.Add(l.window).Sub(l.now())
	if left <= 0 {
		delete(l.keys, k)
		return 0
	}
	if a.failures >= l.max {
		return left
	}
	return 0
}

// Fail records a failed login.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := sha256.Sum256([]byte(key))
	a := l.keys[k]
	if a != nil && now.Sub(a.first) >= l.window {
		a = nil
	}
	if a == nil {
		if len(l.keys) >= l.size {
			l.evictLocked(now)
		}
		a = &attempts{first: now}
		l.keys[k] = a
	}
	a.failures++
}

// Reset forgets key (after a successful login).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, sha256.Sum256([]byte(key)))
}

// Len returns how many keys are held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// evictLocked makes room for one key. Must hold l.mu.
func (l *Limiter) evictLocked(now time.Time) {
	var oldest [sha256.Size]byte
	var oldestT time.Time
	found := false
	for k, a := range l.keys {
		if now.Sub(a.first) >= l.window {
			delete(l.keys, k)
			continue
		}
		if !found || a.first.Before(oldestT) {
			oldest, oldestT, found = k, a.first, true
		}
	}
	if len(l.keys) >= l.size && found {
		delete(l.keys, oldest)
	}
}

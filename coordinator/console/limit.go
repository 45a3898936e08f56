package console

import (
	"sync"
	"time"
)

// Limiter counts failed logins per key (user name and client address) and
// blocks a key after max failures within window, until the window that
// began with its first failure ends. It holds at most size keys: when
// full it forgets expired keys, then the oldest.
type Limiter struct {
	max    int
	window time.Duration
	size   int
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*attempts // guarded by mu
}

type attempts struct {
	first    time.Time
	failures int
}

// NewLimiter returns a limiter; now is the clock.
func NewLimiter(max int, window time.Duration, size int, now func() time.Time) *Limiter {
	return &Limiter{max: max, window: window, size: size, now: now, keys: map[string]*attempts{}}
}

// Blocked returns how long key must still wait, or 0.
func (l *Limiter) Blocked(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.keys[key]
	if a == nil {
		return 0
	}
	left := a.first.Add(l.window).Sub(l.now())
	if left <= 0 {
		delete(l.keys, key)
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
	a := l.keys[key]
	if a != nil && now.Sub(a.first) >= l.window {
		a = nil
	}
	if a == nil {
		if len(l.keys) >= l.size {
			l.evictLocked(now)
		}
		a = &attempts{first: now}
		l.keys[key] = a
	}
	a.failures++
}

// Reset forgets key (after a successful login).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// Len returns how many keys are held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// evictLocked makes room for one key. Must hold l.mu.
func (l *Limiter) evictLocked(now time.Time) {
	var oldest string
	var oldestT time.Time
	for k, a := range l.keys {
		if now.Sub(a.first) >= l.window {
			delete(l.keys, k)
			continue
		}
		if oldest == "" || a.first.Before(oldestT) {
			oldest, oldestT = k, a.first
		}
	}
	if len(l.keys) >= l.size && oldest != "" {
		delete(l.keys, oldest)
	}
}

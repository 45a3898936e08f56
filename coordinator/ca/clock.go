package ca

import (
	"sync"
	"time"
)

// Clock tells the CA what time it is. Issuing (NotBefore, NotAfter) and
// verifying (VerifyNode) read it, so tests can move time without sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// FakeClock is a Clock for tests that moves only when told to. It is safe
// for concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

var (
	_ Clock = SystemClock{}
	_ Clock = (*FakeClock)(nil)
)

// NewFakeClock returns a FakeClock stopped at now.
func NewFakeClock(now time.Time) *FakeClock { return &FakeClock{now: now} }

// Now returns the clock's current time.
func (f *FakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d (backward if d is negative).
func (f *FakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// Set moves the clock to t.
func (f *FakeClock) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

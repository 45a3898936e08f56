package netlab

import (
	"testing"
	"time"
)

// Poll intervals of Eventually: the first retry comes quickly, later ones
// back off up to maxPollInterval so a slow condition is not hammered.
const (
	minPollInterval = 10 * time.Millisecond
	maxPollInterval = 250 * time.Millisecond
)

// Eventually calls cond until it returns nil or timeout has passed, then fails
// the test with cond's last error. It waits between calls (10 ms at first,
// backing off to 250 ms) and always calls cond at least once. cond must bound
// its own run time (dial and command timeouts shorter than timeout), since
// Eventually cannot interrupt it. Use it instead of sleeping to wait for a
// condition. Like t.Fatal, it must be called from the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	interval := minPollInterval
	for tries := 1; ; tries++ {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("condition not met after %v (%d tries): %v", time.Since(start).Round(time.Millisecond), tries, err)
			return
		}
		time.Sleep(min(interval, left))
		interval = min(2*interval, maxPollInterval)
	}
}

package netlab

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestEventuallySucceedsAfterRetries(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("not yet (%d)", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
}

// fatalTB records Fatalf and stops the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventuallyFailsWithLastError(t *testing.T) {
	fake := &fatalTB{}
	calls := 0
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(fake, 100*time.Millisecond, func() error {
			calls++
			return fmt.Errorf("attempt %d: %w", calls, errors.ErrUnsupported)
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Eventually did not give up within 5s of a 100ms timeout")
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("gave up after %v, before the 100ms timeout", elapsed)
	}
	want := fmt.Sprintf("attempt %d:", calls)
	if fake.msg == "" || !strings.Contains(fake.msg, want) {
		t.Errorf("Fatalf message %q does not carry the last error %q", fake.msg, want)
	}
	if calls < 2 {
		t.Errorf("cond called %d times in 100ms, want retries", calls)
	}
}

package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestBurstThenRate(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(2, 3, 10, func() time.Time { return now })
	src := Source("192.0.2.1:5555")
	for i := range 3 {
		if ok, _ := l.Allow(src); !ok {
			t.Fatalf("attempt %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow(src)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("after the burst: %v, wait %v; want refused with a wait of at most 1s", ok, wait)
	}
	// Another source has its own bucket.
	if ok, _ := l.Allow(Source("192.0.2.2:5555")); !ok {
		t.Error("another source refused")
	}
	now = now.Add(wait)
	if ok, _ := l.Allow(src); !ok {
		t.Error("refused after waiting the time it said")
	}
	if ok, _ := l.Allow(src); ok {
		t.Error("a second attempt allowed without waiting")
	}
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:443":                  "192.0.2.1/32",
		"[::ffff:192.0.2.1]:443":         "192.0.2.1/32",
		"[2001:db8:1:2:3:4:5:6]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1%eth0]:80": "2001:db8:1:2::/64",
		"192.0.2.9":                      "192.0.2.9/32",
		"not an address":                 "invalid Prefix",
	} {
		if got := Source(in).String(); got != want {
			t.Errorf("Source(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestBounded: however many sources try, the table holds at most its
// size, and a source that keeps trying is not forgotten before idle ones.
func TestBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(0.001, 1, 100, func() time.Time { return now })
	busy := Source("198.51.100.7:1")
	l.Allow(busy)
	for i := range 10000 {
		now = now.Add(time.Millisecond)
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(netip.PrefixFrom(a, 32))
		if i%10 == 0 {
			l.Allow(busy)
		}
		if l.Len() > 100 {
			t.Fatalf("after %d sources the limiter holds %d, bound is 100", i+1, l.Len())
		}
	}
	if ok, _ := l.Allow(busy); ok {
		t.Error("the busy source was forgotten (its bucket refilled) while idle ones were kept")
	}
}

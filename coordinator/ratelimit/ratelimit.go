// Package ratelimit bounds how often one source may try something costly
// (enroll a node, log in to the console): a token bucket per source
// address, in a table of bounded size. It does no I/O.
//
// Only packages coordinator/api (the node API), coordinator/stun (STUN
// answers) and web (the console's login) import it.
package ratelimit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limiter lets each source do Burst attempts at once, then Rate attempts
// per second. It holds at most Size sources: when full it forgets the
// sources whose bucket has refilled (they are as if never seen), then the
// one seen longest ago. Safe for concurrent use.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	size  int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket // guarded by mu
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
	last   time.Time // the last attempt
}

// New returns a limiter of burst attempts at once and rate per second per
// source, holding at most size sources; now is the clock (nil: time.Now).
func New(rate float64, burst, size int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if burst < 1 {
		burst = 1
	}
	if size < 1 {
		size = 1
	}
	return &Limiter{rate: rate, burst: float64(burst), size: size, now: now, buckets: map[netip.Prefix]*bucket{}}
}

// Source is the key of a request's peer address ("IP:port" or an IP): the
// IPv4 address, or the /64 of an IPv6 address, since one host usually
// holds a whole /64. An unreadable address is one source of its own.
func Source(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Allow takes one attempt for src. When src has none left, it returns
// false and how long until it has one.
func (l *Limiter) Allow(src netip.Prefix) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[src]
	if b == nil {
		if len(l.buckets) >= l.size {
			l.evictLocked(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[src] = b
	}
	b.refill(now, l.rate, l.burst)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.rate <= 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// Len returns how many sources are held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
}

// evictLocked makes room for one source. Must hold l.mu.
func (l *Limiter) evictLocked(now time.Time) {
	var oldest netip.Prefix
	var oldestAt time.Time
	found := false
	for k, b := range l.buckets {
		b.refill(now, l.rate, l.burst)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
			continue
		}
		if !found || b.last.Before(oldestAt) {
			oldest, oldestAt, found = k, b.last, true
		}
	}
	if len(l.buckets) >= l.size && found {
		delete(l.buckets, oldest)
	}
}

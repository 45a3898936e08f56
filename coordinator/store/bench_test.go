package store

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAllocateAddr10k allocates 10,000 addresses in one pool, 100 per
// transaction, into a fresh store; ns/op is for all 10,000.
func BenchmarkAllocateAddr10k(b *testing.B) {
	const total, batch = 10000, 100
	pool := netip.MustParsePrefix("100.64.0.0/10")
	var lastBatch time.Duration
	for b.Loop() {
		b.StopTimer()
		s, _ := openTest(b)
		b.StartTimer()
		for i := 0; i < total; i += batch {
			start := time.Now()
			update(b, s, func(tx Tx) error {
				for j := i; j < i+batch; j++ {
					if _, err := tx.AllocateAddr(fmt.Sprintf("node-%05d", j), pool); err != nil {
						return err
					}
				}
				return nil
			})
			lastBatch = time.Since(start)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/addr")
	b.ReportMetric(float64(lastBatch.Nanoseconds())/batch, "ns/addr-at-10k")
}

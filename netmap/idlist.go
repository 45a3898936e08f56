package netmap

import (
	"net/netip"
	"runtime"
	"slices"
	"sync"

	networkingv1 "k8s.io/api/networking/v1"
)

type (
	networkingPeer = networkingv1.NetworkPolicyPeer
	networkingPort = networkingv1.NetworkPolicyPort
)

// idlist is a sorted set of workload ids.
type idlist []int32

func (l *idlist) add(id int32) {
	if n := len(*l); n == 0 || (*l)[n-1] < id {
		*l = append(*l, id)
		return
	}
	i, found := slices.BinarySearch(*l, id)
	if !found {
		*l = slices.Insert(*l, i, id)
	}
}

func (l *idlist) remove(id int32) {
	if i, found := slices.BinarySearch(*l, id); found {
		*l = slices.Delete(*l, i, i+1)
	}
}

func (l idlist) has(id int32) bool {
	_, found := slices.BinarySearch(l, id)
	return found
}

type netipAddr = netip.Addr

func parallelism() int { return runtime.GOMAXPROCS(0) }

// splitRange cuts [0, n) into k contiguous chunks; chunk i is
// [bounds[i], bounds[i+1]).
func splitRange(n, k int) []int {
	b := make([]int, k+1)
	for i := 0; i <= k; i++ {
		b[i] = n * i / k
	}
	return b
}

// runWorkers runs f(0..k-1) concurrently and waits.
func runWorkers(k int, f func(int)) {
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

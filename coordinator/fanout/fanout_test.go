package fanout

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/view"
)

func v(node string, version uint64, peers ...string) *view.View {
	out := &view.View{Node: node, Version: version}
	for _, p := range peers {
		out.Peers = append(out.Peers, view.Peer{Node: p})
	}
	return out
}

func TestFullThenDelta(t *testing.T) {
	h := New()
	ctx := context.Background()
	h.Publish(v("a", 1, "b"))
	u, err := h.Next(ctx, "a", 0)
	if err != nil || u.Full == nil || u.Full.Version != 1 {
		t.Fatalf("first update = %+v, %v; want full v1", u, err)
	}
	h.Publish(v("a", 2, "b", "c"))
	u, err = h.Next(ctx, "a", 1)
	if err != nil || u.Delta == nil || u.Delta.Base != 1 || u.Delta.Version != 2 || len(u.Delta.UpsertPeers) != 1 {
		t.Fatalf("second update = %+v, %v; want delta 1→2 adding c", u, err)
	}
	// A node holding a version the hub no longer has gets a full view.
	u, err = h.Next(ctx, "a", 77)
	if err != nil || u.Full == nil || u.Full.Version != 2 {
		t.Fatalf("unknown base: %+v, %v; want full v2", u, err)
	}
}

func TestLatestWins(t *testing.T) {
	h := New()
	for i := uint64(1); i <= 100; i++ {
		h.Publish(v("a", i))
	}
	h.Publish(v("a", 50)) // stale: ignored
	u, err := h.Next(context.Background(), "a", 0)
	if err != nil || u.Version() != 100 {
		t.Fatalf("got %+v, %v; want the newest (100) at once", u, err)
	}
	if len(h.boxes["a"].history) != History {
		t.Errorf("history holds %d views, want %d", len(h.boxes["a"].history), History)
	}
}

// A node that never reads does not hold back the others.
func TestSlowNodeDoesNotBlockOthers(t *testing.T) {
	h := New()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	got := make(chan uint64, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		have := uint64(0)
		for have < 1000 {
			u, err := h.Next(ctx, "fast", have)
			if err != nil {
				t.Error(err)
				return
			}
			have = u.Version()
		}
		got <- have
	}()
	for i := uint64(1); i <= 1000; i++ {
		h.Publish(v("slow", i)) // nobody reads "slow"
		h.Publish(v("fast", i))
	}
	wg.Wait()
	if have := <-got; have != 1000 {
		t.Fatalf("fast node reached %d", have)
	}
}

func TestRemoveWakesWaiter(t *testing.T) {
	h := New()
	h.Publish(v("a", 1))
	errc := make(chan error, 1)
	go func() {
		_, err := h.Next(context.Background(), "a", 1)
		errc <- err
	}()
	deadline := time.After(5 * time.Second)
	for h.Waiting("a") == 0 {
		select {
		case <-deadline:
			t.Fatal("waiter never registered")
		case <-time.After(time.Millisecond):
		}
	}
	h.Remove("a")
	select {
	case err := <-errc:
		if !errors.Is(err, ErrGone) {
			t.Fatalf("err = %v, want ErrGone", err)
		}
	case <-deadline:
		t.Fatal("waiter not woken by Remove")
	}
}

func TestContextCancel(t *testing.T) {
	h := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Next(ctx, "a", 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

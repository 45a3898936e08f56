package enforce

import (
	"maps"
	"slices"
	"sync"

	"github.com/latchnet/latch/view"
)

// Fake is an Enforcer for tests of the code around one (the node agent):
// it records the views applied, refuses them while told to, delivers the
// events a test sends and reports the counters a test sets. It decides no
// packet.
type Fake struct {
	events chan Event

	mu       sync.Mutex
	applied  []*view.View // every view Apply took, oldest first; guarded by mu
	attempts int          // Apply calls, failed ones included; guarded by mu
	applyErr error        // what Apply returns while non-nil; guarded by mu
	stats    Stats        // guarded by mu
	statsErr error        // guarded by mu
	lost     uint64       // events Send could not queue; guarded by mu
	closed   bool         // guarded by mu
}

var _ Enforcer = (*Fake)(nil)

// NewFake returns a Fake with no view and room for 64 queued events.
func NewFake() *Fake {
	return &Fake{events: make(chan Event, 64)}
}

// Apply records v, or returns the error of FailApply and keeps the view it
// had.
func (f *Fake) Apply(v *view.View) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.applyErr != nil {
		return f.applyErr
	}
	f.applied = append(f.applied, v)
	return nil
}

// Events delivers what Send queued; Close closes it.
func (f *Fake) Events() <-chan Event { return f.events }

// Stats returns the counters SetStats set, with ViewVersion the version of
// the view applied last, and EventsLost increased by the events Send
// could not queue.
func (f *Fake) Stats() (Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statsErr != nil {
		return Stats{}, f.statsErr
	}
	st := f.stats
	st.Packets = maps.Clone(st.Packets)
	st.Dropping = maps.Clone(st.Dropping)
	st.EventsLost += f.lost
	if n := len(f.applied); n > 0 {
		st.ViewVersion = f.applied[n-1].Version
	}
	return st, nil
}

// Close closes the Events channel.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.events)
	}
	return nil
}

// FailApply makes later Apply calls return err and keep the view in force;
// nil lets them succeed again.
func (f *Fake) FailApply(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applyErr = err
}

// SetStats sets the counters Stats reports; a non-nil err makes Stats fail
// with it instead.
func (f *Fake) SetStats(st Stats, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats, f.statsErr = st, err
}

// Send queues ev for Events without waiting, as an enforcer does: when the
// queue is full (or the Fake is closed) ev is counted in EventsLost.
func (f *Fake) Send(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		f.lost++
		return
	}
	select {
	case f.events <- ev:
	default:
		f.lost++
	}
}

// Applied returns the views Apply took, oldest first.
func (f *Fake) Applied() []*view.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied)
}

// Attempts counts the Apply calls, failed ones included.
func (f *Fake) Attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

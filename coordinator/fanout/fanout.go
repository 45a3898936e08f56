// Package fanout hands each node the newest version of its view. Every
// node has a latest-wins mailbox: publishing replaces what is pending, so a
// slow or absent node never delays or drops another node's update, and a
// node that falls behind skips straight to the newest view. Each mailbox
// keeps the last few versions so that a reconnecting node can be sent a
// delta from the version it holds instead of a full view.
//
// It does no I/O. Only packages coordinator (which makes the mailboxes),
// coordinator/state (which publishes) and coordinator/api (which streams),
// and tests, import it.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/latchnet/latch/view"
)

// History is how many past versions of each view are kept for deltas.
const History = 8

// ErrGone is returned to a waiter whose node was removed.
var ErrGone = errors.New("node removed")

// Hub holds one mailbox per node.
type Hub struct {
	mu    sync.Mutex
	boxes map[string]*box // guarded by mu
}

type box struct {
	history []*view.View  // oldest first; the last is the newest; guarded by Hub.mu
	at      time.Time     // when the newest was published; guarded by Hub.mu
	wake    chan struct{} // closed and replaced on every publish
	gone    bool
	waiters int // streams blocked in Next
}

// New returns an empty hub.
func New() *Hub { return &Hub{boxes: map[string]*box{}} }

func (h *Hub) boxLocked(node string) *box {
	b := h.boxes[node]
	if b == nil {
		b = &box{wake: make(chan struct{})}
		h.boxes[node] = b
	}
	return b
}

// Publish makes v the newest view of v.Node. Views must be immutable
// after publishing, and versions must increase.
func (h *Hub) Publish(v *view.View) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.boxLocked(v.Node)
	if n := len(b.history); n > 0 && b.history[n-1].Version >= v.Version {
		return // an older or repeated version: keep the newest
	}
	b.gone = false
	b.at = time.Now()
	b.history = append(b.history, v)
	if len(b.history) > History {
		b.history = append(b.history[:0], b.history[len(b.history)-History:]...)
	}
	close(b.wake)
	b.wake = make(chan struct{})
}

// Remove drops a node's mailbox; its waiters get ErrGone.
func (h *Hub) Remove(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.boxes[node]; ok {
		b.gone = true
		b.history = nil
		close(b.wake)
		delete(h.boxes, node)
	}
}

// Waiting returns how many streams wait for node's next view.
func (h *Hub) Waiting(node string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.boxes[node]; ok {
		return b.waiters
	}
	return 0
}

// Latest returns the newest view of node, or nil.
func (h *Hub) Latest(node string) *view.View {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.boxes[node]; ok && len(b.history) > 0 {
		return b.history[len(b.history)-1]
	}
	return nil
}

// Update is what a stream sends next: a full view, or a delta from the
// version the node holds.
type Update struct {
	Full  *view.View
	Delta *view.Delta
	// Published is when the view was published (for stream lag).
	Published time.Time
}

// Version is the version the update brings the node to.
func (u Update) Version() uint64 {
	if u.Full != nil {
		return u.Full.Version
	}
	return u.Delta.Version
}

// Next waits until node has a view other than version have and returns
// the newest: as a delta from have when that version is still in the
// history, else in full. have is 0 for a node that holds nothing. A node
// holding a version the hub never had (say, from before a coordinator
// restart) gets a full view at once; the state layer makes versions unique
// across restarts (netmap.Input.VersionBase) so that an old version can
// never be mistaken for the current one.
func (h *Hub) Next(ctx context.Context, node string, have uint64) (Update, error) {
	for {
		h.mu.Lock()
		b := h.boxLocked(node)
		if b.gone {
			h.mu.Unlock()
			return Update{}, fmt.Errorf("%s: %w", node, ErrGone)
		}
		if n := len(b.history); n > 0 && b.history[n-1].Version != have {
			latest, at := b.history[n-1], b.at
			var base *view.View
			for _, old := range b.history {
				if old.Version == have {
					base = old
				}
			}
			h.mu.Unlock()
			if base == nil {
				return Update{Full: latest, Published: at}, nil
			}
			d := view.Diff(base, latest)
			return Update{Delta: &d, Published: at}, nil
		}
		wake := b.wake
		b.waiters++
		h.mu.Unlock()
		var err error
		select {
		case <-wake:
		case <-ctx.Done():
			err = ctx.Err()
		}
		h.mu.Lock()
		b.waiters--
		gone := b.gone
		h.mu.Unlock()
		if err != nil {
			return Update{}, err
		}
		if gone {
			return Update{}, fmt.Errorf("%s: %w", node, ErrGone)
		}
	}
}

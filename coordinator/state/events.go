package state

import (
	"context"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

func secretEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Event tells watchers (the web console) that something changed: every
// committed change, and a node's view stream connecting ("node.connect")
// or disconnecting ("node.disconnect").
type Event struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Object string    `json:"object"`
	Actor  string    `json:"actor,omitempty"`
}

// eventBuffer is how many events a slow watcher may fall behind before
// it misses some; a watcher that missed events is told so (Lost).
const eventBuffer = 256

type events struct {
	mu   sync.Mutex
	subs map[*Watcher]struct{} // guarded by mu
	// streams counts the open view streams of each node; guarded by mu.
	streams map[string]int
}

func newEvents() events {
	return events{subs: map[*Watcher]struct{}{}, streams: map[string]int{}}
}

// Watcher receives events.
type Watcher struct {
	C    chan Event
	mu   sync.Mutex
	lost bool // guarded by mu
}

// Lost reports, and clears, whether events were dropped because the
// watcher fell behind; it should then reload everything.
func (w *Watcher) Lost() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lost
	w.lost = false
	return l
}

func (e *events) publish(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for w := range e.subs {
		select {
		case w.C <- ev:
		default:
			w.mu.Lock()
			w.lost = true
			w.mu.Unlock()
		}
	}
}

// Watch returns a watcher of every event from now on; call the returned
// function to stop.
func (s *State) Watch() (*Watcher, func()) {
	w := &Watcher{C: make(chan Event, eventBuffer)}
	s.ev.mu.Lock()
	s.ev.subs[w] = struct{}{}
	s.ev.mu.Unlock()
	return w, func() {
		s.ev.mu.Lock()
		delete(s.ev.subs, w)
		s.ev.mu.Unlock()
	}
}

// StreamOpened records that a node's view stream connected; the node is
// online while it has one, and the views follow (failover.go). Call
// StreamClosed when it ends.
func (s *State) StreamOpened(node string) {
	s.ev.mu.Lock()
	s.ev.streams[node]++
	first := s.ev.streams[node] == 1
	s.ev.mu.Unlock()
	s.streamChanged(node, true)
	if first {
		s.ev.publish(Event{Time: s.opts.Now(), Action: "node.connect", Object: node})
	}
}

// StreamClosed records that a node's view stream ended.
func (s *State) StreamClosed(node string) {
	s.ev.mu.Lock()
	s.ev.streams[node]--
	last := s.ev.streams[node] <= 0
	if last {
		delete(s.ev.streams, node)
	}
	s.ev.mu.Unlock()
	s.streamChanged(node, false)
	if last {
		s.ev.publish(Event{Time: s.opts.Now(), Action: "node.disconnect", Object: node})
	}
}

// Online returns the nodes with an open view stream.
func (s *State) Online() map[string]bool {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	out := make(map[string]bool, len(s.ev.streams))
	for n := range s.ev.streams {
		out[n] = true
	}
	return out
}

// Baseline is the decision for directions no policy isolates.
func (s *State) Baseline() policy.Baseline { return s.opts.Baseline }

// Evaluator returns the reference policy evaluator over the stored
// namespaces and policies, and every workload (nodes included, each as
// the workload that stands for it), for "what if" questions and the
// connectivity graph.
func (s *State) Evaluator(ctx context.Context) (*policy.Evaluator, []inventory.Workload, error) {
	ev, ws, _, err := s.SiteEvaluator(ctx)
	return ev, ws, err
}

// SiteEvaluator is Evaluator with the stored sites, read from the same
// snapshot, for "what if" questions about site addresses.
func (s *State) SiteEvaluator(ctx context.Context) (*policy.Evaluator, []inventory.Workload, []inventory.Site, error) {
	var (
		inv inventory.Inventory
		ps  []*policy.Policy
	)
	err := s.st.View(ctx, func(tx store.Tx) error {
		nss, err := tx.ListNamespaces()
		if err != nil {
			return err
		}
		for _, ns := range nss {
			inv.Namespaces = append(inv.Namespaces, inventory.Namespace{Name: ns.Name, Labels: ns.Labels})
		}
		nodes, err := tx.ListNodes()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			inv.Nodes = append(inv.Nodes, toInventory(n))
		}
		if inv.Workloads, err = tx.ListWorkloads(); err != nil {
			return err
		}
		if inv.Sites, err = tx.ListSites(); err != nil {
			return err
		}
		stored, err := tx.ListPolicies()
		if err != nil {
			return err
		}
		for _, p := range stored {
			parsed, err := policy.Parse("stored policy "+p.Namespace+"/"+p.Name, []byte(p.YAML))
			if err != nil {
				return err
			}
			ps = append(ps, parsed...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return policy.NewEvaluator(inv.Namespaces, ps, s.opts.Baseline), inv.AllWorkloads(), inv.Sites, nil
}

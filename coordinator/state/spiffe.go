package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/wire"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Errors of SPIFFE admission, for the API to answer with.
var (
	// ErrPending: the SPIFFE ID matched no mapping and waits for approval.
	ErrPending = errors.New("waiting for approval")
	// ErrRejected: an admin rejected the SPIFFE ID.
	ErrRejected = errors.New("rejected")
)

// SpiffeName is the node name of a SPIFFE ID from SPIRE: the last segment
// of its path, which must be a valid node name (wire.CheckNodeName).
func SpiffeName(id string) (string, error) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	_, p, _ := strings.Cut(rest, "/")
	if !ok || p == "" {
		return "", fmt.Errorf("%w: %q is not a SPIFFE ID with a path", ErrInvalid, id)
	}
	name := p[strings.LastIndex(p, "/")+1:]
	if err := wire.CheckNodeName(name); err != nil {
		return "", fmt.Errorf("%w: the node name is the last path segment of the SPIFFE ID %s: %v; register the node in SPIRE under an ID that ends in a valid name", ErrInvalid, id, err)
	}
	return name, nil
}

// SpiffeNode returns the node that the SPIFFE ID id (already verified
// against a trusted SPIRE bundle) is. An ID seen for the first time is
// admitted if Options.SpiffeMap maps it, with the mapping's namespace and
// labels and a new overlay address; otherwise it is recorded as pending
// and ErrPending is returned until an admin approves it
// (ApproveSpiffeNode). A rejected ID gets ErrRejected.
func (s *State) SpiffeNode(ctx context.Context, id string) (store.Node, error) {
	name, err := SpiffeName(id)
	if err != nil {
		return store.Node{}, err
	}
	var (
		rec   store.SpiffeNode
		node  store.Node
		found bool
	)
	err = s.st.View(ctx, func(tx store.Tx) error {
		var err error
		rec, err = tx.GetSpiffeNode(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		found = true
		if rec.Status == store.SpiffeAdmitted {
			node, err = tx.GetNode(rec.Name)
		}
		return err
	})
	if err != nil {
		return store.Node{}, err
	}
	if found && rec.Status != store.SpiffeAdmitted {
		if err := s.sawSpiffeNode(ctx, rec); err != nil {
			return store.Node{}, err
		}
	}
	switch {
	case found && rec.Status == store.SpiffeAdmitted:
		return node, nil
	case found && rec.Status == store.SpiffeRejected:
		return store.Node{}, fmt.Errorf("%w: an admin rejected node %s (%s); `latch admin node approve %s --namespace NS` admits it", ErrRejected, name, id, name)
	}
	if e, ok := s.opts.SpiffeMap.Match(id); ok {
		// The entry's grants are not copied: they are read from the
		// mapping at every registration (grantsOf).
		return s.admit(ctx, "spiffe-map", id, name, e.Namespace, e.Labels, grant.Set{})
	}
	if !found {
		now := s.opts.Now()
		err := s.change(ctx, "node.spiffe.pending", "node:"+id, name, map[string]string{"spiffe_id": id}, func(tx store.Tx) ([]string, error) {
			return nil, tx.PutSpiffeNode(store.SpiffeNode{ID: id, Name: name, Status: store.SpiffePending, FirstSeen: now, LastSeen: now})
		})
		if err != nil {
			return store.Node{}, err
		}
	}
	return store.Node{}, fmt.Errorf("%w: node %s (%s) matches no --spiffe-map entry; an admin approves it with `latch admin node approve %s --namespace NS [--label k=v]`", ErrPending, name, id, name)
}

// SpiffeSeenEvery is how often, at most, the last sighting of a pending
// or rejected SPIFFE ID is written: its node retries every few seconds.
const SpiffeSeenEvery = time.Minute

// sawSpiffeNode records that the pending or rejected SPIFFE ID of rec
// presented itself again (its LastSeen, for the admin deciding on it), at
// most every SpiffeSeenEvery. Like a flow record, a sighting is telemetry,
// not a change: no audit entry, no event. An admin's decision made in the
// meantime is kept.
func (s *State) sawSpiffeNode(ctx context.Context, rec store.SpiffeNode) error {
	now := s.opts.Now()
	if now.Sub(rec.LastSeen) < SpiffeSeenEvery {
		return nil
	}
	return s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetSpiffeNode(rec.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || cur.Status != rec.Status {
			return err
		}
		cur.LastSeen = now
		return tx.PutSpiffeNode(cur)
	})
}

// CheckSpiffeNode reports, without side effects, whether the SPIFFE ID id
// (already verified) is still admitted as the node name and the node
// exists: open streams check it again and again.
func (s *State) CheckSpiffeNode(ctx context.Context, id, name string) error {
	return s.st.View(ctx, func(tx store.Tx) error {
		rec, err := tx.GetSpiffeNode(id)
		if err != nil {
			return fmt.Errorf("%w: the node was deleted", err) // it names the ID
		}
		if rec.Status != store.SpiffeAdmitted || rec.Name != name {
			return fmt.Errorf("SPIFFE ID %s is %s, no longer admitted as node %q", id, rec.Status, name)
		}
		if _, err := tx.GetNode(name); err != nil {
			return fmt.Errorf("%w: it was deleted", err) // it names the node
		}
		return nil
	})
}

// admit makes the SPIFFE ID the node name in namespace ns with labels,
// granted g.
func (s *State) admit(ctx context.Context, actor, id, name, ns string, labels map[string]string, g grant.Set) (store.Node, error) {
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return store.Node{}, fmt.Errorf("%w: namespace %q: %s", ErrInvalid, ns, errs[0])
	}
	if err := grant.CheckLabels("the node's labels", labels); err != nil {
		return store.Node{}, errGrantInvalid(err)
	}
	if err := g.Check(); err != nil {
		return store.Node{}, errGrantInvalid(err)
	}
	var node store.Node
	detail := map[string]any{"spiffe_id": id, "namespace": ns, "labels": labels}
	if !g.Empty() {
		detail["grants"] = g
	}
	err := s.change(ctx, "node.spiffe.admit", actor, name, detail, func(tx store.Tx) ([]string, error) {
		if rec, err := tx.GetSpiffeNode(id); err == nil && rec.Status == store.SpiffeAdmitted && actor == "spiffe-map" {
			// A concurrent request of the same node admitted it first.
			var err error
			node, err = tx.GetNode(rec.Name)
			return nil, err
		}
		if _, err := tx.GetNode(name); err == nil {
			return nil, fmt.Errorf("%w: a node named %q already exists (enrolled with a token, or another SPIFFE ID ending in /%s): delete it with `latch admin node delete %s`, or give the SPIRE entry another last path segment", ErrConflict, name, name, name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		now := s.opts.Now()
		rec, err := tx.GetSpiffeNode(id)
		if errors.Is(err, store.ErrNotFound) {
			rec = store.SpiffeNode{ID: id, Name: name, FirstSeen: now}
		} else if err != nil {
			return nil, err
		}
		rec.Status, rec.LastSeen = store.SpiffeAdmitted, now
		if err := tx.PutSpiffeNode(rec); err != nil {
			return nil, err
		}
		if err := s.ensureNamespace(tx, ns); err != nil {
			return nil, err
		}
		ip, err := tx.AllocateAddr("node/"+name, s.opts.Pool)
		if err != nil {
			return nil, err
		}
		node = store.Node{Name: name, Namespace: ns, Labels: maps.Clone(labels), IP: ip, CreatedAt: now, LastSeen: now}
		if err := tx.PutNode(node); err != nil {
			return nil, err
		}
		if err := tx.PutGrants(name, g); err != nil {
			return nil, err
		}
		return s.eng.UpsertNode(toInventory(node))
	})
	return node, err
}

// findSpiffe returns the record that key names: a SPIFFE ID, or a node
// name that exactly one record has.
func findSpiffe(tx store.Tx, key string) (store.SpiffeNode, error) {
	if strings.HasPrefix(key, "spiffe://") {
		return tx.GetSpiffeNode(key)
	}
	all, err := tx.ListSpiffeNodes()
	if err != nil {
		return store.SpiffeNode{}, err
	}
	var hits []store.SpiffeNode
	for _, r := range all {
		if r.Name == key {
			hits = append(hits, r)
		}
	}
	switch len(hits) {
	case 0:
		return store.SpiffeNode{}, fmt.Errorf("no SPIFFE node named %q: see `latch admin node pending`: %w", key, store.ErrNotFound)
	case 1:
		return hits[0], nil
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	return store.SpiffeNode{}, fmt.Errorf("%w: several SPIFFE IDs end in %q (%s): name the one you mean by its SPIFFE ID", ErrInvalid, key, strings.Join(ids, ", "))
}

// ApproveSpiffeNode admits the pending (or rejected) SPIFFE node key (its
// name or SPIFFE ID) into namespace ns with labels, granted g.
func (s *State) ApproveSpiffeNode(ctx context.Context, actor, key, ns string, labels map[string]string, g grant.Set) (store.Node, error) {
	var rec store.SpiffeNode
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		rec, err = findSpiffe(tx, key)
		return err
	})
	if err != nil {
		return store.Node{}, err
	}
	if rec.Status == store.SpiffeAdmitted {
		return store.Node{}, fmt.Errorf("%w: %s is already admitted as node %s", ErrConflict, rec.ID, rec.Name)
	}
	return s.admit(ctx, actor, rec.ID, rec.Name, ns, labels, g)
}

// RejectSpiffeNode refuses the SPIFFE node key (its name or SPIFFE ID)
// from now on; an admitted one is removed with its workloads, and its
// peers drop it.
func (s *State) RejectSpiffeNode(ctx context.Context, actor, key string) error {
	return s.change(ctx, "node.spiffe.reject", actor, key, nil, func(tx store.Tx) ([]string, error) {
		rec, err := findSpiffe(tx, key)
		if err != nil {
			return nil, err
		}
		var changed []string
		if rec.Status == store.SpiffeAdmitted {
			if changed, err = s.deleteNode(tx, rec.Name); err != nil {
				return nil, err
			}
		}
		rec.Status, rec.LastSeen = store.SpiffeRejected, s.opts.Now()
		return changed, tx.PutSpiffeNode(rec)
	})
}

// forgetSpiffeNode deletes the admitted record of node name, if any, so
// that a deleted node's SPIFFE ID is admitted afresh (by the mapping) or
// waits for approval when it comes back.
func (s *State) forgetSpiffeNode(tx store.Tx, name string) error {
	all, err := tx.ListSpiffeNodes()
	if err != nil {
		return err
	}
	for _, r := range all {
		if r.Name == name && r.Status == store.SpiffeAdmitted {
			return tx.DeleteSpiffeNode(r.ID)
		}
	}
	return nil
}

// IsSpiffeNode reports whether node name was admitted through SPIRE.
func (s *State) IsSpiffeNode(ctx context.Context, name string) (string, bool, error) {
	var id string
	err := s.st.View(ctx, func(tx store.Tx) error {
		all, err := tx.ListSpiffeNodes()
		for _, r := range all {
			if r.Name == name && r.Status == store.SpiffeAdmitted {
				id = r.ID
			}
		}
		return err
	})
	return id, id != "", err
}

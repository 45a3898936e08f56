package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

// RefusalAuditEvery is how often, at most, the same refusal of the same
// node is written to the audit log: a refused node retries every few
// seconds, and one entry per retry would flood the log.
const RefusalAuditEvery = time.Minute

type refusal struct {
	msg string
	at  time.Time
}

// grantsOf is what node name may host: its stored grants, plus those of
// the --spiffe-map entry its SPIFFE ID (spiffeID, "" for a node enrolled
// with a token) matches.
func (s *State) grantsOf(tx store.Tx, name, spiffeID string) (grant.Set, error) {
	g, err := tx.GetGrants(name)
	if err != nil {
		return grant.Set{}, err
	}
	if spiffeID != "" {
		if e, ok := s.opts.SpiffeMap.Match(spiffeID); ok {
			g = g.Union(e.Grants())
		}
	}
	return g, nil
}

// checkGranted refuses a declared workload w (with the SPIFFE ID id, or
// "") that granted does not cover, naming the grant it lacks.
func checkGranted(node string, granted grant.Set, w inventory.Workload, id string) error {
	if _, ok := granted.Find(w); !ok {
		held := "none"
		if len(granted.Workloads) > 0 {
			held = ""
			for i, g := range granted.Workloads {
				if i > 0 {
					held += " | "
				}
				held += g.String()
			}
		}
		return fmt.Errorf("%w: node %s may not host workload %s with labels {%s}: no grant of the node has namespace %s and exactly these labels (its grants: %s); an admin grants it with `latch admin node grant %s --workload '%s'`, or on the join token (`latch admin token create --workload ...`)",
			ErrNotGranted, node, w.Key(), labelString(w.Labels), w.Namespace, held, node, grant.Suggest(w))
	}
	if id != "" && !granted.AllowsID(id) {
		return fmt.Errorf("%w: node %s may not declare the SPIFFE ID %s for workload %s: no workload ID pattern of the node matches it (its patterns: %v); list it under workloadIDs in the node's --spiffe-map entry, or `latch admin node grant %s --workload-id PATTERN`",
			ErrNotGranted, node, id, w.Key(), granted.WorkloadIDs, node)
	}
	return nil
}

// auditRefusal records that node's registration was refused, at most
// once per RefusalAuditEvery for the same reason.
func (s *State) auditRefusal(ctx context.Context, node string, cause error) {
	now := s.opts.Now()
	s.refusalMu.Lock()
	last, ok := s.refusals[node]
	if ok && last.msg == cause.Error() && now.Sub(last.at) < RefusalAuditEvery {
		s.refusalMu.Unlock()
		return
	}
	s.refusals[node] = refusal{msg: cause.Error(), at: now}
	s.refusalMu.Unlock()
	d, _ := json.Marshal(map[string]string{"error": cause.Error()})
	err := s.st.Update(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(store.AuditEntry{Time: now, Actor: "node:" + node, Action: "node.register.refused", Object: node, Detail: string(d)})
		return err
	})
	if err != nil {
		s.opts.Log.Warn("recording a refused registration", logNode, node, logErr, err)
		return
	}
	s.opts.Log.Warn("registration refused", logNode, node, logErr, cause)
	s.ev.publish(Event{Time: now, Action: "node.register.refused", Object: node, Actor: "node:" + node})
}

// NodeGrants is what a node may host: Granted (its own, from its join
// token, its approval or an admin; GrantNode and RevokeNode change them)
// and Mapped (from the --spiffe-map entry its SPIFFE ID matches; changed
// in the mapping file).
type NodeGrants struct {
	Node     string    `json:"node"`
	Granted  grant.Set `json:"granted"`
	SpiffeID string    `json:"spiffeID,omitempty"`
	Mapped   grant.Set `json:"mapped"`
}

// Grants returns what node name may host.
func (s *State) Grants(ctx context.Context, name string) (NodeGrants, error) {
	out := NodeGrants{Node: name}
	err := s.st.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNode(name); err != nil {
			return err
		}
		var err error
		if out.Granted, err = tx.GetGrants(name); err != nil {
			return err
		}
		if out.SpiffeID, err = spiffeIDOf(tx, name); err != nil {
			return err
		}
		if e, ok := s.opts.SpiffeMap.Match(out.SpiffeID); ok && out.SpiffeID != "" {
			out.Mapped = e.Grants()
		}
		return nil
	})
	return out, err
}

// spiffeIDOf is the SPIFFE ID node name was admitted with, or "".
func spiffeIDOf(tx store.Tx, name string) (string, error) {
	all, err := tx.ListSpiffeNodes()
	for _, r := range all {
		if r.Name == name && r.Status == store.SpiffeAdmitted {
			return r.ID, err
		}
	}
	return "", err
}

// GrantNode adds grants to node name.
func (s *State) GrantNode(ctx context.Context, actor, name string, add grant.Set) (grant.Set, error) {
	if err := add.Check(); err != nil {
		return grant.Set{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if add.Empty() {
		return grant.Set{}, fmt.Errorf("%w: nothing to grant: give --workload namespace=NS,labels=k=v or --workload-id spiffe://TD/PATH", ErrInvalid)
	}
	return s.editGrants(ctx, "node.grant", actor, name, func(cur grant.Set) (grant.Set, error) { return cur.Union(add), nil })
}

// RevokeNode removes grants from node name. Its registered workloads that
// no grant covers any more are removed at once (with their addresses);
// a revoked workload ID pattern takes effect at the node's next
// registration.
func (s *State) RevokeNode(ctx context.Context, actor, name string, remove grant.Set) (grant.Set, error) {
	if remove.Empty() {
		return grant.Set{}, fmt.Errorf("%w: nothing to revoke: give --workload namespace=NS,labels=k=v or --workload-id spiffe://TD/PATH", ErrInvalid)
	}
	return s.editGrants(ctx, "node.revoke", actor, name, func(cur grant.Set) (grant.Set, error) {
		out, err := cur.Without(remove)
		if err != nil {
			return grant.Set{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return out, nil
	})
}

func (s *State) editGrants(ctx context.Context, what, actor, name string, edit func(grant.Set) (grant.Set, error)) (grant.Set, error) {
	var after grant.Set
	detail := map[string]any{}
	err := s.change(ctx, what, actor, name, detail, func(tx store.Tx) ([]string, error) {
		node, err := tx.GetNode(name)
		if err != nil {
			return nil, err
		}
		before, err := tx.GetGrants(name)
		if err != nil {
			return nil, err
		}
		if after, err = edit(before); err != nil {
			return nil, err
		}
		if err := after.Check(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		detail["before"], detail["after"] = before, after
		if err := tx.PutGrants(name, after); err != nil {
			return nil, err
		}
		return s.pruneUngranted(tx, node)
	})
	return after, err
}

// pruneUngranted removes the workloads of node that its grants no longer
// cover. Must hold s.mu (inside change).
func (s *State) pruneUngranted(tx store.Tx, node store.Node) ([]string, error) {
	id, err := spiffeIDOf(tx, node.Name)
	if err != nil {
		return nil, err
	}
	granted, err := s.grantsOf(tx, node.Name, id)
	if err != nil {
		return nil, err
	}
	all, err := tx.ListWorkloads()
	if err != nil {
		return nil, err
	}
	var keep []inventory.Workload
	dropped := false
	for _, w := range all {
		if w.Node != node.Name {
			continue
		}
		declared := w
		declared.Labels = withoutReserved(w.Labels)
		if _, ok := granted.Find(declared); ok {
			keep = append(keep, w)
			continue
		}
		dropped = true
		if err := tx.ReleaseAddr("wl/" + w.Key()); err != nil {
			return nil, err
		}
	}
	if !dropped {
		return nil, nil
	}
	if err := tx.SetWorkloads(node.Name, keep); err != nil {
		return nil, err
	}
	s.touched = true
	return s.eng.SetNode(toInventory(node), keep)
}

func withoutReserved(l map[string]string) map[string]string {
	var out map[string]string
	for k, v := range l {
		if policy.IsReservedLabel(k) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// errGrantInvalid wraps a grant validation error as ErrInvalid.
func errGrantInvalid(err error) error {
	if err == nil || errors.Is(err, ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

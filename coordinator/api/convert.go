package api

import (
	"net/http"
	"net/netip"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/netmap"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

// This file converts the coordinator's records to the admin API's types
// (package adminapi) and its requests back: the admin handlers answer only
// adminapi types, so that a field added to a record reaches no client
// unless it is added here.

// list converts a slice; never nil, so that an empty list is [] in JSON.
func list[T, U any](in []T, conv func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, x := range in {
		out = append(out, conv(x))
	}
	return out
}

func toPorts(ps []inventory.Port) []adminapi.Port {
	if ps == nil {
		return nil
	}
	return list(ps, func(p inventory.Port) adminapi.Port {
		return adminapi.Port{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)}
	})
}

// toNode converts a node record; the identity fields are set by
// nodeStatuses.
func toNode(n store.Node) adminapi.Node {
	return adminapi.Node{Name: n.Name, Namespace: n.Namespace, Labels: n.Labels, IP: n.IP, PublicKey: n.PublicKey,
		Endpoints: n.Endpoints, Ports: toPorts(n.Ports), CertSerial: n.CertSerial, CreatedAt: n.CreatedAt,
		LastSeen: n.LastSeen, CertExpires: n.CertExpires}
}

func toNamespace(n store.Namespace) adminapi.Namespace {
	return adminapi.Namespace{Name: n.Name, Labels: n.Labels, Mode: n.Mode}
}

func toWorkload(w store.Workload) adminapi.Workload {
	return adminapi.Workload{Name: w.Name, Namespace: w.Namespace, Labels: w.Labels, Node: w.Node, IP: w.IP, Ports: toPorts(w.Ports)}
}

func toPolicy(p store.Policy) adminapi.Policy {
	return adminapi.Policy{Namespace: p.Namespace, Name: p.Name, YAML: p.YAML, UpdatedAt: p.UpdatedAt}
}

func toGrant(g grant.Workload) adminapi.Grant {
	return adminapi.Grant{Namespace: g.Namespace, Labels: g.Labels, Name: g.Name}
}

func toGrants(ws []grant.Workload) []adminapi.Grant {
	if ws == nil {
		return nil
	}
	return list(ws, toGrant)
}

func toGrantSet(s grant.Set) adminapi.GrantSet {
	return adminapi.GrantSet{Workloads: toGrants(s.Workloads), WorkloadIDs: s.WorkloadIDs}
}

// fromGrants reads the grants of a request: objects as they are (package
// state checks them), strings in the syntax of grant.Parse.
func fromGrants(gs []adminapi.Grant) ([]grant.Workload, error) {
	if gs == nil {
		return nil, nil
	}
	out := make([]grant.Workload, 0, len(gs))
	for _, g := range gs {
		if spec := g.Spec(); spec != "" {
			w, err := grant.Parse(spec)
			if err != nil {
				return nil, fail(http.StatusBadRequest, "bad_request", "reading the request body: %v", err)
			}
			out = append(out, w)
			continue
		}
		out = append(out, grant.Workload{Namespace: g.Namespace, Labels: g.Labels, Name: g.Name})
	}
	return out, nil
}

func fromGrantSet(s adminapi.GrantSet) (grant.Set, error) {
	ws, err := fromGrants(s.Workloads)
	return grant.Set{Workloads: ws, WorkloadIDs: s.WorkloadIDs}, err
}

func toNodeGrants(g state.NodeGrants) adminapi.NodeGrants {
	return adminapi.NodeGrants{Node: g.Node, Granted: toGrantSet(g.Granted), SpiffeID: g.SpiffeID, Mapped: toGrantSet(g.Mapped)}
}

func toJoinToken(t store.Token) adminapi.JoinToken {
	return adminapi.JoinToken{ID: t.ID, Namespace: t.Namespace, Labels: t.Labels, Workloads: toGrants(t.Workloads),
		UsesLeft: t.UsesLeft, ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt, Revoked: t.Revoked}
}

func toAPIToken(t store.APIToken) adminapi.APIToken {
	return adminapi.APIToken{ID: t.ID, Name: t.Name, Role: t.Role, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, Revoked: t.Revoked}
}

func toUser(u store.User) adminapi.User {
	return adminapi.User{Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt}
}

func toAuditEntry(e store.AuditEntry) adminapi.AuditEntry {
	return adminapi.AuditEntry{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Object: e.Object, Detail: e.Detail}
}

func toSpiffeNode(r store.SpiffeNode) adminapi.SpiffeNode {
	return adminapi.SpiffeNode{ID: r.ID, Name: r.Name, Status: r.Status, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen}
}

func toSite(s store.Site) adminapi.Site {
	return adminapi.Site{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels, CIDRs: s.CIDRs, Ports: toPorts(s.Ports)}
}

func toSubnetRoute(r store.Route) adminapi.SubnetRoute {
	return adminapi.SubnetRoute{Node: r.Node, Prefix: r.Prefix, SNAT: r.SNAT, Status: r.Status,
		AdvertisedAt: r.AdvertisedAt, DecidedAt: r.DecidedAt, DecidedBy: r.DecidedBy}
}

func toFlowEnd(e store.FlowEnd) adminapi.FlowEnd {
	return adminapi.FlowEnd{Namespace: e.Namespace, Workload: e.Workload, Node: e.Node, IP: e.IP}
}

// toFlow converts a stored flow record.
func toFlow(f store.Flow) adminapi.Flow {
	return adminapi.Flow{ID: f.ID, Time: f.Time, End: f.End, Reporter: f.Reporter, Direction: f.Direction,
		Src: toFlowEnd(f.Src), Dst: toFlowEnd(f.Dst), Protocol: f.Protocol, Port: f.Port, Verdict: f.Verdict,
		Reason: f.Reason, Packets: f.Packets, Bytes: f.Bytes}
}

func toPrincipal(p state.Principal) adminapi.Principal {
	return adminapi.Principal{Name: p.Name, Role: p.Role, Via: p.Via, CSRF: p.CSRF}
}

func toEvent(e state.Event) adminapi.Event {
	return adminapi.Event{Time: e.Time, Action: e.Action, Object: e.Object, Actor: e.Actor}
}

func toSide(s policy.Side) *adminapi.Side {
	return &adminapi.Side{Isolated: s.Isolated, Allowed: s.Allowed, Policies: s.Policies}
}

func toGraph(g netmap.Graph) adminapi.Graph {
	return adminapi.Graph{
		Nodes: list(g.Nodes, func(n netmap.GraphNode) adminapi.GraphNode {
			return adminapi.GraphNode{Key: n.Key, Namespace: n.Namespace, Name: n.Name, Node: n.Node, IsNode: n.IsNode}
		}),
		Edges: list(g.Edges, func(e netmap.GraphEdge) adminapi.GraphEdge {
			return adminapi.GraphEdge{From: e.From, To: e.To, Ports: e.Ports}
		}),
	}
}

func toPortRanges(ps []view.PortRange) []adminapi.PortRange {
	if ps == nil {
		return nil
	}
	return list(ps, func(p view.PortRange) adminapi.PortRange {
		return adminapi.PortRange{Protocol: string(p.Protocol), First: p.First, Last: p.Last}
	})
}

func toRules(r view.Rules) adminapi.Rules {
	out := adminapi.Rules{Isolated: r.Isolated, AllowAll: r.AllowAll, Any: toPortRanges(r.Any)}
	if r.Identities != nil {
		out.Identities = list(r.Identities, func(i view.IdentityRule) adminapi.IdentityRule {
			return adminapi.IdentityRule{Identity: uint32(i.Identity), Ports: toPortRanges(i.Ports)}
		})
	}
	if r.CIDRs != nil {
		out.CIDRs = list(r.CIDRs, func(c view.CIDRRule) adminapi.CIDRRule {
			return adminapi.CIDRRule{Prefix: c.Prefix.Netip(), Ports: toPortRanges(c.Ports)}
		})
	}
	return out
}

func toNodeView(v *view.View) adminapi.NodeView {
	out := adminapi.NodeView{Node: v.Node, Version: v.Version}
	if v.Peers != nil {
		out.Peers = list(v.Peers, func(p view.Peer) adminapi.Peer {
			var ips []netip.Prefix
			if p.AllowedIPs != nil {
				ips = list(p.AllowedIPs, view.Prefix.Netip)
			}
			return adminapi.Peer{Node: p.Node, PublicKey: p.PublicKey, Endpoints: p.Endpoints, AllowedIPs: ips}
		})
	}
	if v.Identities != nil {
		out.Identities = list(v.Identities, func(e view.IdentityEntry) adminapi.IdentityEntry {
			return adminapi.IdentityEntry{IP: e.IP.Netip(), Identity: uint32(e.Identity)}
		})
	}
	if v.Workloads != nil {
		out.Workloads = list(v.Workloads, func(w view.WorkloadRules) adminapi.WorkloadRules {
			return adminapi.WorkloadRules{Workload: w.Workload, IP: w.IP.Netip(), Identity: uint32(w.Identity),
				Ingress: toRules(w.Ingress), Egress: toRules(w.Egress), Monitor: w.Monitor}
		})
	}
	return out
}

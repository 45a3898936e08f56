// Package adminapi defines the admin API of the coordinator: the JSON
// requests and answers of every route under /v1/admin, the error body, and
// Routes, the list of routes that the OpenAPI description (openapi.json,
// served at /v1/openapi.json) is generated from. It is the admin API's
// contract, as package wire is the node API's: the coordinator converts its
// records to these types at its edge, so that a field added to a stored
// record never reaches a client by accident. Pure data: it imports nothing
// of the coordinator.
//
// The coordinator (coordinator/api), its typed client (adminapi/client),
// the CLI and the web console's server code use it. Anything may import it.
package adminapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Prefix is where the admin API's routes are; Routes' paths are below it.
const Prefix = "/v1/admin"

// OpenAPIPath serves the OpenAPI description of the admin API, without
// authentication (it holds no data, only the routes and their types).
const OpenAPIPath = "/v1/openapi.json"

// Error is the body of every answer that is not a success, and the last
// line (or "end" event) of a stream whose credential no longer holds.
type Error struct {
	// Error says what is wrong and what to do.
	Error string `json:"error"`
	// Code is a stable machine-readable reason, such as "not_found",
	// "invalid", "conflict", "unauthorized" or "read_only".
	Code string `json:"code,omitempty"`
}

// Where a node's identity comes from (Node.Identity).
const (
	// IdentityCA: the node enrolled with a join token; its SVID is from
	// the coordinator's embedded CA.
	IdentityCA = "ca"
	// IdentitySPIRE: the node's SVID is from the trusted SPIRE deployment
	// (admitted by the SPIFFE mapping or by an admin).
	IdentitySPIRE = "spire"
)

// Port is a port a node or a workload serves.
type Port struct {
	// Name is the port's name, which policies may use instead of its number.
	Name string `json:"name,omitempty"`
	Port uint16 `json:"port"`
	// Protocol is TCP, UDP or SCTP; empty means TCP.
	Protocol string `json:"protocol,omitempty"`
}

// Node is a machine in the overlay: what the coordinator knows of it, its
// SPIFFE ID, where that identity comes from, and whether its view stream
// is connected.
type Node struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// IP is the node's overlay address.
	IP netip.Addr `json:"ip"`
	// PublicKey is the node's WireGuard public key, base64; "" until the
	// node registers.
	PublicKey string `json:"publicKey,omitempty"`
	// Endpoints are the node's underlay addresses.
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Ports are the ports the node itself serves.
	Ports []Port `json:"ports,omitempty"`
	// CertSerial is the serial (hex) of the node's current SVID from the
	// embedded CA.
	CertSerial string    `json:"certSerial,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	// LastSeen is when the node last called the coordinator.
	LastSeen time.Time `json:"lastSeen"`
	// CertExpires is when the node's current SVID expires; zero
	// (0001-01-01T00:00:00Z) if unknown or rotated by SPIRE.
	CertExpires time.Time `json:"certExpires"`
	// SpiffeID is the node's SPIFFE ID: from SPIRE for a SPIRE node, else
	// the one the embedded CA issues.
	SpiffeID string `json:"spiffeID"`
	// Identity is IdentityCA or IdentitySPIRE.
	Identity string `json:"identity"`
	// Online is true while the node's view stream is connected.
	Online bool `json:"online"`
}

// NodeView is what a node is told: its peers, the identities of the
// addresses it exchanges traffic with and the compiled rules of its own
// workloads. It names no node, key or address beyond those.
type NodeView struct {
	Node    string `json:"node"`
	Version uint64 `json:"version"`
	// Peers are the nodes hosting at least one workload with an allowed
	// flow to or from a workload of this node, sorted by name.
	Peers []Peer `json:"peers,omitempty"`
	// Identities maps addresses to their numeric identities, sorted by
	// address.
	Identities []IdentityEntry `json:"identities,omitempty"`
	// Workloads are the rule tables of this node's own workloads (the node
	// itself included), sorted by key.
	Workloads []WorkloadRules `json:"workloads,omitempty"`
}

// Peer is a remote node and the addresses this node may reach through it.
type Peer struct {
	Node       string           `json:"node"`
	PublicKey  string           `json:"publicKey,omitempty"`
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"`
	AllowedIPs []netip.Prefix   `json:"allowedIPs"`
}

// IdentityEntry gives the numeric identity of one overlay address.
type IdentityEntry struct {
	IP       netip.Addr `json:"ip"`
	Identity uint32     `json:"identity"`
}

// WorkloadRules are the compiled rules of one of the node's workloads.
type WorkloadRules struct {
	// Workload is namespace/name.
	Workload string     `json:"workload"`
	IP       netip.Addr `json:"ip"`
	Identity uint32     `json:"identity"`
	Ingress  Rules      `json:"ingress"`
	Egress   Rules      `json:"egress"`
	// Monitor is true when the workload's namespace is in monitor mode.
	Monitor bool `json:"monitor,omitempty"`
}

// Rules decide one direction of one workload's traffic: allowed iff
// AllowAll, or the protocol and port are in Any, in the ports of the
// remote address's identity, or in the ports of the longest CIDR prefix
// containing the remote address.
type Rules struct {
	// Isolated is true when a policy selects the workload for this
	// direction; when false the baseline decided and AllowAll says how.
	Isolated   bool           `json:"isolated"`
	AllowAll   bool           `json:"allowAll,omitempty"`
	Any        []PortRange    `json:"any,omitempty"`
	Identities []IdentityRule `json:"identities,omitempty"`
	CIDRs      []CIDRRule     `json:"cidrs,omitempty"`
}

// PortRange is an inclusive range of destination ports of one protocol.
type PortRange struct {
	Protocol string `json:"protocol"`
	First    uint16 `json:"first"`
	Last     uint16 `json:"last"`
}

// IdentityRule allows ports to or from one identity.
type IdentityRule struct {
	Identity uint32      `json:"identity"`
	Ports    []PortRange `json:"ports"`
}

// CIDRRule allows ports to or from a prefix.
type CIDRRule struct {
	Prefix netip.Prefix `json:"prefix"`
	Ports  []PortRange  `json:"ports"`
}

// Grant admits workloads a node may host: in Namespace, carrying exactly
// Labels (no more, no fewer), with a name matching the pattern Name
// (path.Match syntax; empty matches any name). In a request a grant may
// also be a string in the syntax namespace=NS,labels=k=v;k=v,name=PATTERN.
type Grant struct {
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	Name      string            `json:"name,omitempty"`

	spec string // the string form, when the request gave one
}

// Spec returns the string form a request gave for the grant ("" if it gave
// an object); the coordinator parses it.
func (g Grant) Spec() string { return g.spec }

// GrantSpec returns a grant given in its string form, as a request may
// carry it.
func GrantSpec(spec string) Grant { return Grant{spec: spec} }

// MarshalJSON writes the string form if the grant has one, else the object.
func (g Grant) MarshalJSON() ([]byte, error) {
	if g.spec != "" {
		return json.Marshal(g.spec)
	}
	type plain Grant
	return json.Marshal(plain(g))
}

// UnmarshalJSON takes an object {namespace, labels, name} (no other field)
// or a string in the grant syntax.
func (g *Grant) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*g = Grant{spec: s}
		return nil
	}
	type plain Grant
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("%v (a grant has the fields namespace, labels and name)", err)
	}
	*g = Grant(p)
	return nil
}

// GrantSet is what a node may host.
type GrantSet struct {
	Workloads []Grant `json:"workloads,omitempty"`
	// WorkloadIDs are SPIFFE ID patterns (spiffe://TD/PATH, path.Match
	// wildcards in the path) of the workload IDs a SPIRE node may declare.
	WorkloadIDs []string `json:"workloadIDs,omitempty"`
}

// NodeGrants is what a node may host: Granted by its join token, its
// approval or an admin (changed with the grant and revoke routes), and
// Mapped by the --spiffe-map entry its SPIFFE ID matches.
type NodeGrants struct {
	Node    string   `json:"node"`
	Granted GrantSet `json:"granted"`
	// SpiffeID is the SPIRE SPIFFE ID of a SPIRE node.
	SpiffeID string   `json:"spiffeID,omitempty"`
	Mapped   GrantSet `json:"mapped"`
}

// Namespace modes (Namespace.Mode).
const (
	// ModeEnforce drops traffic that policy denies.
	ModeEnforce = "enforce"
	// ModeMonitor drops nothing and reports would-be drops.
	ModeMonitor = "monitor"
)

// Namespace groups nodes, workloads and policies. In a PUT request the
// name comes from the path; a name in the body is ignored.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Mode is ModeEnforce or ModeMonitor.
	Mode string `json:"mode"`
}

// Workload is a workload a node declared: it plays the role of a pod.
type Workload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Node is the name of the node hosting it.
	Node string `json:"node,omitempty"`
	// IP is its overlay address.
	IP    netip.Addr `json:"ip"`
	Ports []Port     `json:"ports,omitempty"`
}

// Policy is one NetworkPolicy as applied.
type Policy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// YAML is the policy as stored (normalized YAML).
	YAML      string    `json:"yaml"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// PolicyApplied answers an apply: the keys (namespace/name) of the
// policies applied.
type PolicyApplied struct {
	Applied []string `json:"applied"`
}

// PolicyProblem is one validation error, at its line of the request.
type PolicyProblem struct {
	// Document is the YAML document's number, from 1.
	Document int    `json:"document,omitempty"`
	Line     int    `json:"line,omitempty"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
	// Message is the whole message, with its place.
	Message string `json:"message"`
}

// PolicyChange is one policy as stored now (Before, "" if new) and as it
// would be stored (After).
type PolicyChange struct {
	// Key is namespace/name.
	Key    string `json:"key"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// Validation answers policies/validate: Valid with the changes an apply
// would make, or the problems found.
type Validation struct {
	Valid    bool            `json:"valid"`
	Problems []PolicyProblem `json:"problems,omitempty"`
	Changes  []PolicyChange  `json:"changes,omitempty"`
}

// JoinToken is a join token without its secret.
type JoinToken struct {
	ID string `json:"id"`
	// Namespace and Labels are given to the nodes that enroll with it.
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Workloads are what the enrolled nodes may host.
	Workloads []Grant `json:"workloads,omitempty"`
	// UsesLeft is how many more nodes may enroll with it; 0 means used up.
	UsesLeft  int       `json:"usesLeft"`
	ExpiresAt time.Time `json:"expiresAt"`
	CreatedAt time.Time `json:"createdAt"`
	Revoked   bool      `json:"revoked"`
}

// JoinTokenRequest asks for a join token.
type JoinTokenRequest struct {
	// Namespace of the nodes that enroll with it (default "default").
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Workloads are what the enrolled nodes may host.
	Workloads []Grant `json:"workloads,omitempty"`
	// Uses is how many nodes may enroll with it; default 1.
	Uses int `json:"uses,omitempty"`
	// TTL is how long it is valid, a Go duration such as 30m or 24h;
	// default 1h, at most 720h.
	TTL string `json:"ttl,omitempty"`
}

// JoinTokenCreated carries a new join token, shown once.
type JoinTokenCreated struct {
	// Token is the secret token to give the node (latch node --token).
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// AuditEntry is one record of the audit log: who changed what and when.
type AuditEntry struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Object string    `json:"object"`
	Detail string    `json:"detail,omitempty"`
}

// Flow verdicts (Flow.Verdict).
const (
	VerdictAllowed   = "allowed"
	VerdictDenied    = "denied"
	VerdictWouldDeny = "would-deny"
)

// FlowEnd is one end of a flow: the workload the coordinator resolved its
// address to (Workload empty when the address is no known workload).
type FlowEnd struct {
	Namespace string `json:"namespace,omitempty"`
	// Workload is the workload's name within Namespace.
	Workload string `json:"workload,omitempty"`
	// Node is the node hosting the workload.
	Node string     `json:"node,omitempty"`
	IP   netip.Addr `json:"ip"`
}

// Flow is a flow record: one flow (source, destination, protocol,
// destination port, verdict) in one reporting interval of one node.
type Flow struct {
	ID int64 `json:"id"`
	// Time is the interval's start, End its end.
	Time time.Time `json:"time"`
	End  time.Time `json:"end"`
	// Reporter is the node that reported it.
	Reporter string `json:"reporter"`
	// Direction is ingress or egress at the reporter.
	Direction string  `json:"direction"`
	Src       FlowEnd `json:"src"`
	Dst       FlowEnd `json:"dst"`
	Protocol  string  `json:"protocol"`
	Port      uint16  `json:"port"`
	// Verdict is VerdictAllowed, VerdictDenied or VerdictWouldDeny.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// DeniedFlow is a recent denied (or would-deny) flow on the console's
// overview.
type DeniedFlow struct {
	Time time.Time `json:"time"`
	// From and To are namespace/workload, or an address outside the
	// overlay's workloads.
	From     string `json:"from"`
	To       string `json:"to"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	// Node is the node that reported it.
	Node string `json:"node,omitempty"`
	// Monitor is true when the namespace is in monitor mode (the flow
	// would have been dropped but was let through).
	Monitor bool `json:"monitor,omitempty"`
}

// DeniedFlows answers flows/denied; Available says whether flow data
// exists at all, so that "none denied" differs from "no telemetry".
type DeniedFlows struct {
	Available bool         `json:"available"`
	Flows     []DeniedFlow `json:"flows"`
}

// Principal is who makes a request.
type Principal struct {
	// Name is the actor recorded in the audit log: a user name,
	// "apitoken:NAME" or "admin" (the admin token).
	Name string `json:"name"`
	// Role is "admin" (may change things) or "viewer" (reads only).
	Role string `json:"role"`
	// Via is "admin-token", "api-token" or "session".
	Via string `json:"via"`
	// CSRF is the session's CSRF token, which the console sends back on
	// every change (sessions only: the caller's own).
	CSRF string `json:"csrf,omitempty"`
}

// User is a console user, without its password.
type User struct {
	Name string `json:"name"`
	// Role is "admin" or "viewer".
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
}

// UserRequest creates a user. An empty Password has one generated and
// returned once.
type UserRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password,omitempty"`
}

// UserCreated answers the creation of a user; Password is set only when
// the coordinator generated it (shown once).
type UserCreated struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password,omitempty"`
}

// APIToken is an API token without its secret.
type APIToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	Revoked   bool      `json:"revoked"`
}

// APITokenRequest creates an API token.
type APITokenRequest struct {
	Name string `json:"name"`
	// Role is "admin" or "viewer".
	Role string `json:"role"`
	// TTL is a Go duration such as 720h; empty means 2160h (90 days), at
	// most 8760h (365 days).
	TTL string `json:"ttl,omitempty"`
}

// APITokenCreated carries a new API token, shown once.
type APITokenCreated struct {
	ID string `json:"id"`
	// Token is the secret, sent as "Authorization: Bearer TOKEN".
	Token string `json:"token"`
}

// Status is the overview: nodes, namespaces, the baseline.
type Status struct {
	Now time.Time `json:"now"`
	// Baseline decides the traffic no policy selects: deny or allow.
	Baseline string `json:"baseline"`
	// SvidTTL is the lifetime of the SVIDs the embedded CA issues, a Go
	// duration.
	SvidTTL    string      `json:"svidTTL"`
	Nodes      []Node      `json:"nodes"`
	Namespaces []Namespace `json:"namespaces"`
}

// Side is one direction's decision.
type Side struct {
	// Isolated is true when some policy selects the workload for this
	// direction; otherwise the baseline decided.
	Isolated bool `json:"isolated"`
	Allowed  bool `json:"allowed"`
	// Policies are the policies that allowed the traffic, or, when an
	// isolated side denies it, the policies that isolate it.
	Policies []string `json:"policies,omitempty"`
}

// WhatIf answers whatif: would traffic from one workload to another on a
// port pass, and which policies decide it. It passes iff the source's
// egress and the destination's ingress both allow it.
//
// When an end is a site, a part of one or a site address, Allowed is true
// when every address pair is allowed, Verdict says allow, partial or deny,
// and AllowedRanges lists the allowed address pairs; Egress and Ingress
// are set only when both ends are single addresses (a workload, a node or
// one site address).
type WhatIf struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	Baseline string `json:"baseline"`
	Allowed  bool   `json:"allowed"`
	Egress   *Side  `json:"egress,omitempty"`
	Ingress  *Side  `json:"ingress,omitempty"`
	// Verdict is set when an end is a site: allow (every address pair),
	// partial or deny.
	Verdict string `json:"verdict,omitempty"`
	// AllowedRanges are the allowed address pairs when an end is a site:
	// minimal prefix sets, with every ipBlock except cut out.
	AllowedRanges []AddrRange `json:"allowedRanges,omitempty"`
}

// GraphNode is a workload (or a node, standing for itself) in the graph.
type GraphNode struct {
	// Key is namespace/name.
	Key       string `json:"key"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Node is the hosting node.
	Node string `json:"node,omitempty"`
	// IsNode is true for a node standing for itself.
	IsNode bool `json:"isNode,omitempty"`
}

// GraphEdge says From may reach To on Ports (such as "80/TCP").
type GraphEdge struct {
	From  string   `json:"from"`
	To    string   `json:"to"`
	Ports []string `json:"ports"`
}

// Graph is who may talk to whom on the ports destinations declare.
type Graph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
}

// Event is a change of the coordinator's state, the data of a "change"
// event of the event stream.
type Event struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Object string    `json:"object"`
	Actor  string    `json:"actor,omitempty"`
}

// Statuses of a SpiffeNode.
const (
	// SpiffePending: the ID matched no mapping; it waits for an admin.
	SpiffePending = "pending"
	// SpiffeRejected: an admin rejected the ID; it is refused.
	SpiffeRejected = "rejected"
	// SpiffeAdmitted: the ID is the node Name.
	SpiffeAdmitted = "admitted"
)

// SpiffeNode is a SPIFFE ID from the trusted SPIRE deployment that
// presented itself as a node.
type SpiffeNode struct {
	// ID is the SPIFFE ID, spiffe://td/path.
	ID string `json:"id"`
	// Name is the node name the ID maps to (its last path segment).
	Name string `json:"name"`
	// Status is SpiffePending, SpiffeRejected or SpiffeAdmitted.
	Status    string    `json:"status"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// SpiffeApproval approves a pending SPIFFE node into a namespace with
// labels.
type SpiffeApproval struct {
	// Node is its name or its SPIFFE ID.
	Node      string            `json:"node"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Workloads and WorkloadIDs are what the node may host; none by
	// default.
	Workloads   []Grant  `json:"workloads,omitempty"`
	WorkloadIDs []string `json:"workloadIDs,omitempty"`
}

// SpiffeRejection rejects a SPIFFE node from then on.
type SpiffeRejection struct {
	// Node is its name or its SPIFFE ID.
	Node string `json:"node"`
}

// Statuses of a SubnetRoute.
const (
	// RouteAdvertised: the node advertises the route; it waits for an
	// admin and carries nothing.
	RouteAdvertised = "advertised"
	// RouteApproved: an admin approved it.
	RouteApproved = "approved"
	// RouteRejected: an admin rejected it; it stays rejected while the
	// node advertises it, until an admin approves it.
	RouteRejected = "rejected"
)

// SubnetRoute is a subnet a node advertises as a gateway, and what an
// admin decided about it.
type SubnetRoute struct {
	Node   string       `json:"node"`
	Prefix netip.Prefix `json:"prefix"`
	// SNAT is whether the gateway rewrites the overlay source address of
	// the traffic it forwards into the prefix to its own address there.
	SNAT bool `json:"snat"`
	// Status is RouteAdvertised, RouteApproved or RouteRejected.
	Status string `json:"status"`
	// AdvertisedAt is when the node first advertised the route.
	AdvertisedAt time.Time `json:"advertisedAt"`
	// DecidedAt is when an admin last approved or rejected it (the zero
	// time, 0001-01-01T00:00:00Z, while it waits); DecidedBy is who.
	DecidedAt time.Time `json:"decidedAt"`
	DecidedBy string    `json:"decidedBy,omitempty"`
	// Primary is true when the route is approved and the node is the
	// primary gateway for some site address in it: the lowest-named
	// online gateway with an approved route containing the address.
	Primary bool `json:"primary"`
	// Online is true while the node has a view stream open to the
	// coordinator.
	Online bool `json:"online"`
}

// Site is a network of agentless hosts an admin declared: a VPC subnet, a
// data-centre subnet, an office LAN. For policy, the host at each address
// of its CIDRs is a pod of Namespace with Labels (and that address for
// ipBlock). Sites, workloads and nodes share the NAMESPACE/NAME names.
type Site struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
	// CIDRs are the site's IPv4 prefixes, network addresses, overlapping
	// no other site's and outside the overlay.
	CIDRs []netip.Prefix `json:"cidrs"`
	// Ports are the ports the site's hosts serve: the names a policy's
	// named ports resolve against.
	Ports []Port `json:"ports,omitempty"`
}

// SiteRequest declares or replaces a site; its namespace and name are in
// the path.
type SiteRequest struct {
	Labels map[string]string `json:"labels,omitempty"`
	// CIDRs are IPv4 prefixes such as 198.19.1.0/24.
	CIDRs []string `json:"cidrs"`
	Ports []Port   `json:"ports,omitempty"`
}

// AddrRange is a set of allowed flows: every address of From may reach
// every address of To.
type AddrRange struct {
	From []netip.Prefix `json:"from"`
	To   []netip.Prefix `json:"to"`
}

// RouteDecision names a route to approve or reject.
type RouteDecision struct {
	// Node is the node that advertises it.
	Node string `json:"node"`
	// Prefix is the route as the node advertises it, 198.19.1.0/24.
	Prefix string `json:"prefix"`
}

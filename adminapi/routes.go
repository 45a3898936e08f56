package adminapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.0 description of the admin API, generated from
// Routes and the types of this package (a test keeps it current).
//
//go:embed openapi.json
var OpenAPI []byte

// Media types of the bodies that are not JSON.
const (
	MediaYAML   = "application/yaml"
	MediaNDJSON = "application/x-ndjson"
	MediaSSE    = "text/event-stream"
)

// Route is one route of the admin API.
type Route struct {
	Method string
	// Path is below Prefix, with its parameters in braces: /nodes/{name}.
	Path string
	// Name is the operation's name: the OpenAPI operationId and the
	// method of adminapi/client that calls it.
	Name    string
	Summary string
	// Query lists the query parameters.
	Query []Param
	// Request is a zero value of the JSON body's type, or nil for none;
	// RequestMedia, if set, is the media type of a body that is not JSON
	// (a string).
	Request      any
	RequestMedia string
	// Response is a zero value of the answer's type, nil for 204 No
	// Content; ResponseMedia, if set, is the media type of an answer that
	// is not JSON: Response is then the type of its items (of each line of
	// JSON lines, of each event's data), or "" for text.
	Response      any
	ResponseMedia string
	// Stream, if set, is a second media type of the answer, JSON lines of
	// the element type of Response (a slice), chosen by query parameters.
	Stream string
}

// Param is a query parameter, a string.
type Param struct {
	Name, Description string
}

// Routes lists every route of the admin API. Each needs a credential: the
// admin token, an API token ("Authorization: Bearer TOKEN"), or a console
// session cookie (with the X-CSRF-Token header on changes); the role viewer
// may only GET.
var Routes = []Route{
	{Method: http.MethodGet, Path: "/nodes", Name: "Nodes", Summary: "List the nodes with their identities and whether they are online",
		Response: []Node{}},
	{Method: http.MethodGet, Path: "/nodes/{name}", Name: "Node", Summary: "Show one node",
		Response: Node{}},
	{Method: http.MethodDelete, Path: "/nodes/{name}", Name: "DeleteNode", Summary: "Delete a node: revoke its certificate and remove it from every peer"},
	{Method: http.MethodGet, Path: "/nodes/{name}/view", Name: "NodeView", Summary: "Show the view the node is told: its peers, identities and rules",
		Response: NodeView{}},
	{Method: http.MethodGet, Path: "/nodes/{name}/grants", Name: "NodeGrants", Summary: "Show the workloads a node may host",
		Response: NodeGrants{}},
	{Method: http.MethodPost, Path: "/nodes/{name}/grants", Name: "GrantNode", Summary: "Let a node host more workloads; answers its grants after the change",
		Request: GrantSet{}, Response: NodeGrants{}},
	{Method: http.MethodPost, Path: "/nodes/{name}/grants/revoke", Name: "RevokeNodeGrants", Summary: "Take grants from a node; its workloads no grant covers any more are removed",
		Request: GrantSet{}, Response: NodeGrants{}},
	{Method: http.MethodGet, Path: "/namespaces", Name: "Namespaces", Summary: "List the namespaces",
		Response: []Namespace{}},
	{Method: http.MethodPut, Path: "/namespaces/{name}", Name: "PutNamespace", Summary: "Create a namespace or change its labels and mode",
		Request: Namespace{}, Response: Namespace{}},
	{Method: http.MethodGet, Path: "/namespaces/{name}/suggest", Name: "Suggest", Summary: "Suggest the NetworkPolicy YAML that allows exactly the traffic observed in the namespace",
		Query:    []Param{{"since", "learn from the flows since then: a Go duration back from now (default 24h) or an RFC 3339 time"}},
		Response: "", ResponseMedia: MediaYAML},
	{Method: http.MethodGet, Path: "/workloads", Name: "Workloads", Summary: "List the workloads the nodes declared",
		Response: []Workload{}},
	{Method: http.MethodGet, Path: "/policies", Name: "Policies", Summary: "List the applied policies",
		Response: []Policy{}},
	{Method: http.MethodPost, Path: "/policies", Name: "ApplyPolicies", Summary: "Apply NetworkPolicy YAML (multi-document): all or nothing",
		Query: []Param{{"filename", "the file name used in messages"},
			{"namespace", "the namespace of the policies that name none (kubectl's -n); without it every policy must name its namespace"}},
		Request: "", RequestMedia: MediaYAML, Response: PolicyApplied{}},
	{Method: http.MethodDelete, Path: "/policies/{namespace}/{name}", Name: "DeletePolicy", Summary: "Delete a policy"},
	{Method: http.MethodPost, Path: "/policies/validate", Name: "ValidatePolicies", Summary: "Check NetworkPolicy YAML without applying it: its problems, or the changes it would make",
		Query:   []Param{{"namespace", "the namespace of the policies that name none (kubectl's -n); without it every policy must name its namespace"}},
		Request: "", RequestMedia: MediaYAML, Response: Validation{}},
	{Method: http.MethodGet, Path: "/tokens", Name: "JoinTokens", Summary: "List the join tokens (never their secrets)",
		Response: []JoinToken{}},
	{Method: http.MethodPost, Path: "/tokens", Name: "CreateJoinToken", Summary: "Create a join token; the answer carries it, shown once",
		Request: JoinTokenRequest{}, Response: JoinTokenCreated{}},
	{Method: http.MethodDelete, Path: "/tokens/{id}", Name: "RevokeJoinToken", Summary: "Revoke a join token"},
	{Method: http.MethodGet, Path: "/audit", Name: "Audit", Summary: "List the newest audit entries (200)",
		Response: []AuditEntry{}},
	{Method: http.MethodGet, Path: "/flows", Name: "Flows", Summary: "List the flows the nodes reported, oldest first; JSON lines with format=jsonl (a download) or follow=true (then every new flow as it is stored)",
		Query: []Param{
			{"namespace", "only flows with either end in this namespace"},
			{"verdict", "only flows with this verdict: allowed, denied or would-deny"},
			{"since", "only flows since then: a Go duration back from now or an RFC 3339 time"},
			{"after", "only flows with a greater id"},
			{"limit", "at most this many flows (the newest)"},
			{"format", "json (an array, the default) or jsonl (JSON lines)"},
			{"follow", "true: stream JSON lines until the client goes away; the last line is an Error if the credential no longer holds"},
		},
		Response: []Flow{}, Stream: MediaNDJSON},
	{Method: http.MethodGet, Path: "/flows/denied", Name: "DeniedFlows", Summary: "The newest denied and would-deny flows (the console's overview)",
		Response: DeniedFlows{}},
	{Method: http.MethodGet, Path: "/whoami", Name: "WhoAmI", Summary: "Who the credential stands for",
		Response: Principal{}},
	{Method: http.MethodGet, Path: "/users", Name: "Users", Summary: "List the console users",
		Response: []User{}},
	{Method: http.MethodPost, Path: "/users", Name: "CreateUser", Summary: "Create a console user; a generated password is returned once",
		Request: UserRequest{}, Response: UserCreated{}},
	{Method: http.MethodDelete, Path: "/users/{name}", Name: "DeleteUser", Summary: "Delete a console user and end its sessions"},
	{Method: http.MethodGet, Path: "/apitokens", Name: "APITokens", Summary: "List the API tokens (never their secrets)",
		Response: []APIToken{}},
	{Method: http.MethodPost, Path: "/apitokens", Name: "CreateAPIToken", Summary: "Create an API token; the answer carries it, shown once",
		Request: APITokenRequest{}, Response: APITokenCreated{}},
	{Method: http.MethodDelete, Path: "/apitokens/{id}", Name: "RevokeAPIToken", Summary: "Revoke an API token"},
	{Method: http.MethodGet, Path: "/status", Name: "Status", Summary: "The overview: nodes, namespaces, the baseline",
		Response: Status{}},
	{Method: http.MethodGet, Path: "/whatif", Name: "WhatIf", Summary: "Would traffic from one workload, node or site address to another on a port pass, and which policies decide it",
		Query: []Param{
			{"from", "the source: a workload, node or site NAMESPACE/NAME, part of a site NAMESPACE/SITE@198.19.1.5 or @198.19.1.0/25, or a site address"},
			{"to", "the destination, given as from is"},
			{"port", "the destination port, 1 to 65535"},
			{"protocol", "TCP (the default), UDP or SCTP"},
		},
		Response: WhatIf{}},
	{Method: http.MethodGet, Path: "/graph", Name: "Graph", Summary: "Who may talk to whom on the ports destinations declare",
		Query:    []Param{{"namespace", "only the workloads of this namespace and the edges that touch them"}},
		Response: Graph{}},
	{Method: http.MethodGet, Path: "/events", Name: "Events", Summary: "Server-sent events: \"change\" with an Event as data, \"resync\" when events were lost, \"end\" with an Error when the credential no longer holds",
		Response: Event{}, ResponseMedia: MediaSSE},
	{Method: http.MethodGet, Path: "/spiffe/nodes", Name: "SpiffeNodes", Summary: "List the SPIFFE IDs from SPIRE that presented themselves as nodes",
		Query:    []Param{{"status", "only those with this status: pending, rejected or admitted"}},
		Response: []SpiffeNode{}},
	{Method: http.MethodPost, Path: "/spiffe/nodes/approve", Name: "ApproveSpiffeNode", Summary: "Admit a pending SPIRE node into a namespace with labels",
		Request: SpiffeApproval{}, Response: Node{}},
	{Method: http.MethodPost, Path: "/spiffe/nodes/reject", Name: "RejectSpiffeNode", Summary: "Refuse a SPIRE node from then on (an admitted one is removed)",
		Request: SpiffeRejection{}},
	{Method: http.MethodGet, Path: "/routes", Name: "SubnetRoutes", Summary: "List the subnet routes the nodes advertise as gateways, with what an admin decided",
		Query:    []Param{{"node", "only the routes of this node"}},
		Response: []SubnetRoute{}},
	{Method: http.MethodPost, Path: "/routes/approve", Name: "ApproveRoute", Summary: "Approve a subnet route a node advertises",
		Request: RouteDecision{}, Response: SubnetRoute{}},
	{Method: http.MethodPost, Path: "/routes/reject", Name: "RejectRoute", Summary: "Reject a subnet route a node advertises (it stays rejected while the node advertises it)",
		Request: RouteDecision{}, Response: SubnetRoute{}},
	{Method: http.MethodGet, Path: "/sites", Name: "Sites", Summary: "List the sites: networks of agentless hosts, with their namespaces, labels and CIDRs",
		Response: []Site{}},
	{Method: http.MethodPut, Path: "/sites/{namespace}/{name}", Name: "PutSite", Summary: "Declare a site or replace one; its CIDRs may overlap no other site's nor the overlay",
		Request: SiteRequest{}, Response: Site{}},
	{Method: http.MethodDelete, Path: "/sites/{namespace}/{name}", Name: "DeleteSite", Summary: "Delete a site"},
}

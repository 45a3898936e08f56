// Package client is the typed Go client of the coordinator's admin API:
// one method per route of adminapi.Routes, answering adminapi types, and
// *Error for an answer that is not a success. The caller makes the
// *http.Client (TLS, trust, timeouts); the CLI trusts only the
// coordinator's CA and checks its SPIFFE ID.
//
// The CLI, tests and programs automating Latch use it. Anything may
// import it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchnet/latch/adminapi"
)

// MaxAnswer bounds the body of an answer the client reads.
const MaxAnswer = 32 << 20

// Error is an answer of the admin API that is not a success.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the API's stable reason, such as "not_found" ("" when the
	// answer carried none).
	Code string
	// Message says what is wrong and what to do.
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsCode reports whether err is an *Error with the code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Client calls the admin API of one coordinator.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the coordinator at baseURL (https://HOST:PORT)
// that authenticates with token (the admin token or an API token) and
// sends its requests with hc (http.DefaultClient if nil).
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: strings.TrimSpace(token), http: hc}
}

func esc(s string) string { return url.PathEscape(s) }

// do sends a request and returns the answer (open, for streams) or an
// *Error; ctype is the body's media type.
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, query url.Values, ctype string, body []byte) (*http.Response, error) {
	u := c.base + adminapi.Prefix + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling the coordinator: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func readError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e adminapi.Error
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
	}
	return &Error{Status: resp.StatusCode, Message: "coordinator answered " + resp.Status}
}

// call sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, ctype string, body []byte, out any) error {
	resp, err := c.do(ctx, c.http, method, path, query, ctype, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return fmt.Errorf("reading the coordinator's answer: %w", err)
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("reading the coordinator's answer: %w", err)
	}
	return nil
}

// json sends in (if not nil) as JSON and decodes the answer into out.
func (c *Client) json(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	ctype := ""
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
		ctype = "application/json"
	}
	return c.call(ctx, method, path, nil, ctype, body, out)
}

func get[T any](ctx context.Context, c *Client, path string, query url.Values) (T, error) {
	var out T
	err := c.call(ctx, http.MethodGet, path, query, "", nil, &out)
	return out, err
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]adminapi.Node, error) {
	return get[[]adminapi.Node](ctx, c, "/nodes", nil)
}

// Node shows one node.
func (c *Client) Node(ctx context.Context, name string) (adminapi.Node, error) {
	return get[adminapi.Node](ctx, c, "/nodes/"+esc(name), nil)
}

// DeleteNode deletes a node: its certificate is revoked and every peer
// drops it.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	return c.json(ctx, http.MethodDelete, "/nodes/"+esc(name), nil, nil)
}

// NodeView shows the view a node is told.
func (c *Client) NodeView(ctx context.Context, name string) (adminapi.NodeView, error) {
	return get[adminapi.NodeView](ctx, c, "/nodes/"+esc(name)+"/view", nil)
}

// NodeGrants shows what a node may host.
func (c *Client) NodeGrants(ctx context.Context, name string) (adminapi.NodeGrants, error) {
	return get[adminapi.NodeGrants](ctx, c, "/nodes/"+esc(name)+"/grants", nil)
}

// GrantNode lets a node host more workloads.
func (c *Client) GrantNode(ctx context.Context, name string, g adminapi.GrantSet) (adminapi.NodeGrants, error) {
	var out adminapi.NodeGrants
	err := c.json(ctx, http.MethodPost, "/nodes/"+esc(name)+"/grants", g, &out)
	return out, err
}

// RevokeNodeGrants takes grants from a node.
func (c *Client) RevokeNodeGrants(ctx context.Context, name string, g adminapi.GrantSet) (adminapi.NodeGrants, error) {
	var out adminapi.NodeGrants
	err := c.json(ctx, http.MethodPost, "/nodes/"+esc(name)+"/grants/revoke", g, &out)
	return out, err
}

// Namespaces lists the namespaces.
func (c *Client) Namespaces(ctx context.Context) ([]adminapi.Namespace, error) {
	return get[[]adminapi.Namespace](ctx, c, "/namespaces", nil)
}

// PutNamespace creates the namespace name or changes its labels and mode.
func (c *Client) PutNamespace(ctx context.Context, name string, ns adminapi.Namespace) (adminapi.Namespace, error) {
	var out adminapi.Namespace
	err := c.json(ctx, http.MethodPut, "/namespaces/"+esc(name), ns, &out)
	return out, err
}

// Suggest returns the NetworkPolicy YAML that allows exactly the traffic
// observed in a namespace since (a Go duration back from now, or an RFC
// 3339 time; "" for the default, 24h).
func (c *Client) Suggest(ctx context.Context, namespace, since string) ([]byte, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	resp, err := c.do(ctx, c.http, http.MethodGet, "/namespaces/"+esc(namespace)+"/suggest", q, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
}

// Workloads lists the workloads the nodes declared.
func (c *Client) Workloads(ctx context.Context) ([]adminapi.Workload, error) {
	return get[[]adminapi.Workload](ctx, c, "/workloads", nil)
}

// Policies lists the applied policies.
func (c *Client) Policies(ctx context.Context) ([]adminapi.Policy, error) {
	return get[[]adminapi.Policy](ctx, c, "/policies", nil)
}

// ApplyPolicies applies NetworkPolicy YAML (multi-document), all or
// nothing; filename names it in messages, and namespace is the namespace
// of the policies that name none (kubectl's -n; "" requires every policy
// to name its namespace).
func (c *Client) ApplyPolicies(ctx context.Context, filename, namespace string, yaml []byte) (adminapi.PolicyApplied, error) {
	var out adminapi.PolicyApplied
	err := c.call(ctx, http.MethodPost, "/policies", policyQuery(filename, namespace), adminapi.MediaYAML, yaml, &out)
	return out, err
}

func policyQuery(filename, namespace string) url.Values {
	q := url.Values{}
	if filename != "" {
		q.Set("filename", filename)
	}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	return q
}

// DeletePolicy deletes a policy.
func (c *Client) DeletePolicy(ctx context.Context, namespace, name string) error {
	return c.json(ctx, http.MethodDelete, "/policies/"+esc(namespace)+"/"+esc(name), nil, nil)
}

// ValidatePolicies checks NetworkPolicy YAML without applying it: its
// problems, or the changes applying it would make; namespace as for
// ApplyPolicies.
func (c *Client) ValidatePolicies(ctx context.Context, namespace string, yaml []byte) (adminapi.Validation, error) {
	var out adminapi.Validation
	err := c.call(ctx, http.MethodPost, "/policies/validate", policyQuery("", namespace), adminapi.MediaYAML, yaml, &out)
	return out, err
}

// JoinTokens lists the join tokens.
func (c *Client) JoinTokens(ctx context.Context) ([]adminapi.JoinToken, error) {
	return get[[]adminapi.JoinToken](ctx, c, "/tokens", nil)
}

// CreateJoinToken creates a join token.
func (c *Client) CreateJoinToken(ctx context.Context, req adminapi.JoinTokenRequest) (adminapi.JoinTokenCreated, error) {
	var out adminapi.JoinTokenCreated
	err := c.json(ctx, http.MethodPost, "/tokens", req, &out)
	return out, err
}

// RevokeJoinToken revokes a join token.
func (c *Client) RevokeJoinToken(ctx context.Context, id string) error {
	return c.json(ctx, http.MethodDelete, "/tokens/"+esc(id), nil, nil)
}

// Audit lists the newest audit entries.
func (c *Client) Audit(ctx context.Context) ([]adminapi.AuditEntry, error) {
	return get[[]adminapi.AuditEntry](ctx, c, "/audit", nil)
}

// FlowQuery filters Flows and FollowFlows; zero fields do not filter.
type FlowQuery struct {
	Namespace string
	// Verdict is adminapi.VerdictAllowed, VerdictDenied or
	// VerdictWouldDeny.
	Verdict string
	// Since is a Go duration back from now or an RFC 3339 time.
	Since string
	// After keeps flows with a greater id.
	After int64
	// Limit keeps the newest few.
	Limit int
}

func (q FlowQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("namespace", q.Namespace)
	set("verdict", q.Verdict)
	set("since", q.Since)
	if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Flows lists the flows the nodes reported, oldest first.
func (c *Client) Flows(ctx context.Context, q FlowQuery) ([]adminapi.Flow, error) {
	return get[[]adminapi.Flow](ctx, c, "/flows", q.values())
}

// FollowFlows calls fn with the matching flows, then with every new one
// as it is stored, until ctx ends (it then returns nil), fn fails, or the
// coordinator ends the stream (an error saying why).
func (c *Client) FollowFlows(ctx context.Context, q FlowQuery, fn func(adminapi.Flow) error) error {
	v := q.values()
	v.Set("follow", "true")
	return c.lines(ctx, "/flows", v, func(line []byte) error {
		var f adminapi.Flow
		if err := json.Unmarshal(line, &f); err != nil {
			return fmt.Errorf("reading the coordinator's flow stream: %w", err)
		}
		return fn(f)
	})
}

// stream returns a copy of the HTTP client without its timeout, for
// answers that last.
func (c *Client) stream() *http.Client {
	hc := *c.http
	hc.Timeout = 0
	return &hc
}

// lines reads a JSON-lines stream until ctx ends or the coordinator closes
// it; a line that is an adminapi.Error ends it with that error.
func (c *Client) lines(ctx context.Context, path string, query url.Values, fn func([]byte) error) error {
	resp, err := c.do(ctx, c.stream(), http.MethodGet, path, query, "", nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if err := streamEnd(sc.Bytes()); err != nil {
			return err
		}
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the coordinator's stream: %w", err)
	}
	return fmt.Errorf("the coordinator ended the stream")
}

// streamEnd returns the error of a stream's last message, when the
// coordinator ends it because its credential no longer holds.
func streamEnd(data []byte) error {
	var end adminapi.Error
	if json.Unmarshal(data, &end) == nil && end.Error != "" {
		return &Error{Status: http.StatusUnauthorized, Code: end.Code, Message: "the coordinator ended the stream: " + end.Error}
	}
	return nil
}

// DeniedFlows returns the newest denied and would-deny flows.
func (c *Client) DeniedFlows(ctx context.Context) (adminapi.DeniedFlows, error) {
	return get[adminapi.DeniedFlows](ctx, c, "/flows/denied", nil)
}

// WhoAmI tells who the client's token stands for.
func (c *Client) WhoAmI(ctx context.Context) (adminapi.Principal, error) {
	return get[adminapi.Principal](ctx, c, "/whoami", nil)
}

// Users lists the console users.
func (c *Client) Users(ctx context.Context) ([]adminapi.User, error) {
	return get[[]adminapi.User](ctx, c, "/users", nil)
}

// CreateUser creates a console user.
func (c *Client) CreateUser(ctx context.Context, req adminapi.UserRequest) (adminapi.UserCreated, error) {
	var out adminapi.UserCreated
	err := c.json(ctx, http.MethodPost, "/users", req, &out)
	return out, err
}

// DeleteUser deletes a console user and ends its sessions.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.json(ctx, http.MethodDelete, "/users/"+esc(name), nil, nil)
}

// APITokens lists the API tokens.
func (c *Client) APITokens(ctx context.Context) ([]adminapi.APIToken, error) {
	return get[[]adminapi.APIToken](ctx, c, "/apitokens", nil)
}

// CreateAPIToken creates an API token.
func (c *Client) CreateAPIToken(ctx context.Context, req adminapi.APITokenRequest) (adminapi.APITokenCreated, error) {
	var out adminapi.APITokenCreated
	err := c.json(ctx, http.MethodPost, "/apitokens", req, &out)
	return out, err
}

// RevokeAPIToken revokes an API token.
func (c *Client) RevokeAPIToken(ctx context.Context, id string) error {
	return c.json(ctx, http.MethodDelete, "/apitokens/"+esc(id), nil, nil)
}

// Status returns the overview.
func (c *Client) Status(ctx context.Context) (adminapi.Status, error) {
	return get[adminapi.Status](ctx, c, "/status", nil)
}

// WhatIf tells whether traffic from one workload or node (NAMESPACE/NAME)
// to another on a port would pass; protocol "" is TCP.
func (c *Client) WhatIf(ctx context.Context, from, to string, port uint16, protocol string) (adminapi.WhatIf, error) {
	q := url.Values{"from": {from}, "to": {to}, "port": {strconv.Itoa(int(port))}}
	if protocol != "" {
		q.Set("protocol", protocol)
	}
	return get[adminapi.WhatIf](ctx, c, "/whatif", q)
}

// Graph returns who may talk to whom; namespace "" for all.
func (c *Client) Graph(ctx context.Context, namespace string) (adminapi.Graph, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	return get[adminapi.Graph](ctx, c, "/graph", q)
}

// ErrResync is given to the callback of Events when events were lost: read
// the state again.
var ErrResync = errors.New("events were lost: read the state again")

// Events calls fn with every change of the coordinator's state until ctx
// ends (it then returns nil), fn fails, or the coordinator ends the stream
// (an error saying why). When events were lost, fn gets ErrResync first.
func (c *Client) Events(ctx context.Context, fn func(adminapi.Event, error) error) error {
	resp, err := c.do(ctx, c.stream(), http.MethodGet, "/events", nil, "", nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := []byte(strings.TrimPrefix(line, "data: "))
			switch event {
			case "end":
				if err := streamEnd(data); err != nil {
					return err
				}
				return fmt.Errorf("the coordinator ended the stream")
			case "resync":
				if err := fn(adminapi.Event{}, ErrResync); err != nil {
					return err
				}
			case "change":
				var ev adminapi.Event
				if err := json.Unmarshal(data, &ev); err != nil {
					return fmt.Errorf("reading the coordinator's event stream: %w", err)
				}
				if err := fn(ev, nil); err != nil {
					return err
				}
			}
		case line == "":
			event = ""
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the coordinator's stream: %w", err)
	}
	return fmt.Errorf("the coordinator ended the stream")
}

// SpiffeNodes lists the SPIFFE IDs from SPIRE that presented themselves
// as nodes; status "" for all, else adminapi.SpiffePending, SpiffeRejected
// or SpiffeAdmitted.
func (c *Client) SpiffeNodes(ctx context.Context, status string) ([]adminapi.SpiffeNode, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	return get[[]adminapi.SpiffeNode](ctx, c, "/spiffe/nodes", q)
}

// ApproveSpiffeNode admits a pending SPIRE node.
func (c *Client) ApproveSpiffeNode(ctx context.Context, req adminapi.SpiffeApproval) (adminapi.Node, error) {
	var out adminapi.Node
	err := c.json(ctx, http.MethodPost, "/spiffe/nodes/approve", req, &out)
	return out, err
}

// RejectSpiffeNode refuses a SPIRE node from then on.
func (c *Client) RejectSpiffeNode(ctx context.Context, node string) error {
	return c.json(ctx, http.MethodPost, "/spiffe/nodes/reject", adminapi.SpiffeRejection{Node: node}, nil)
}

// SubnetRoutes lists the subnet routes the nodes advertise; node "" for
// all nodes.
func (c *Client) SubnetRoutes(ctx context.Context, node string) ([]adminapi.SubnetRoute, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	return get[[]adminapi.SubnetRoute](ctx, c, "/routes", q)
}

// ApproveRoute approves the route prefix that node advertises.
func (c *Client) ApproveRoute(ctx context.Context, node, prefix string) (adminapi.SubnetRoute, error) {
	var out adminapi.SubnetRoute
	err := c.json(ctx, http.MethodPost, "/routes/approve", adminapi.RouteDecision{Node: node, Prefix: prefix}, &out)
	return out, err
}

// RejectRoute rejects the route prefix that node advertises.
func (c *Client) RejectRoute(ctx context.Context, node, prefix string) (adminapi.SubnetRoute, error) {
	var out adminapi.SubnetRoute
	err := c.json(ctx, http.MethodPost, "/routes/reject", adminapi.RouteDecision{Node: node, Prefix: prefix}, &out)
	return out, err
}

// Sites lists the sites.
func (c *Client) Sites(ctx context.Context) ([]adminapi.Site, error) {
	return get[[]adminapi.Site](ctx, c, "/sites", nil)
}

// PutSite declares the site namespace/name, or replaces it.
func (c *Client) PutSite(ctx context.Context, namespace, name string, req adminapi.SiteRequest) (adminapi.Site, error) {
	var out adminapi.Site
	err := c.json(ctx, http.MethodPut, "/sites/"+esc(namespace)+"/"+esc(name), req, &out)
	return out, err
}

// DeleteSite deletes the site namespace/name.
func (c *Client) DeleteSite(ctx context.Context, namespace, name string) error {
	return c.json(ctx, http.MethodDelete, "/sites/"+esc(namespace)+"/"+esc(name), nil, nil)
}

// OpenAPI returns the coordinator's OpenAPI description of the admin API.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+adminapi.OpenAPIPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling the coordinator: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, readError(resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
}

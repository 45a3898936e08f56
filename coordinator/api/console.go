package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/netmap"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
)

// This file holds the admin endpoints the web console added: users, API
// tokens, node status, policy validation with the diff, "what if", the
// connectivity graph and the event stream. The CLI may use them too.

func (s *Server) whoami(c echo.Context) error { return c.JSON(http.StatusOK, PrincipalOf(c)) }

// UserInfo is a user without its password hash.
type UserInfo struct {
	Name      string    `json:"name"`
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

func (s *Server) listUsers(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		us, err := tx.ListUsers()
		out := make([]UserInfo, 0, len(us))
		for _, u := range us {
			out = append(out, UserInfo{u.Name, u.Role, u.CreatedAt})
		}
		return out, err
	})
}

func (s *Server) createUser(c echo.Context) error {
	var req UserRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := auth.CheckUserName(req.Name); err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	if err := auth.CheckRole(req.Role); err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	generated := req.Password == ""
	if generated {
		req.Password = auth.NewPassword()
	}
	if err := auth.CheckPassword(req.Password); err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		return err
	}
	if err := s.cfg.State.CreateUser(c.Request().Context(), PrincipalOf(c).Name, store.User{Name: req.Name, Role: req.Role, PasswordHash: hash}); err != nil {
		return err
	}
	out := UserRequest{Name: req.Name, Role: req.Role}
	if generated {
		out.Password = req.Password
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deleteUser(c echo.Context) error {
	if err := s.cfg.State.DeleteUser(c.Request().Context(), PrincipalOf(c).Name, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// APITokenInfo is an API token without its secret.
type APITokenInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	Revoked   bool      `json:"revoked"`
}

// APITokenRequest creates an API token; TTL "" means
// auth.DefaultAPITokenTTL, and at most auth.MaxAPITokenTTL is allowed.
type APITokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	TTL  string `json:"ttl,omitempty"`
}

// APITokenResponse carries the token, shown once.
type APITokenResponse struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

func (s *Server) listAPITokens(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		ts, err := tx.ListAPITokens()
		out := make([]APITokenInfo, 0, len(ts))
		for _, t := range ts {
			out = append(out, APITokenInfo{t.ID, t.Name, t.Role, t.CreatedBy, t.CreatedAt, t.ExpiresAt, t.Revoked})
		}
		return out, err
	})
}

func (s *Server) createAPIToken(c echo.Context) error {
	var req APITokenRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	ttl := auth.DefaultAPITokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return fail(http.StatusBadRequest, "invalid", "ttl %q: want a positive duration such as 720h, or nothing for the default, %s", req.TTL, state.Days(auth.DefaultAPITokenTTL))
		}
		if d > auth.MaxAPITokenTTL {
			return fail(http.StatusBadRequest, "invalid", "ttl %q: an API token is valid for at most %s: choose a shorter ttl, and create a new token before it expires", req.TTL, state.Days(auth.MaxAPITokenTTL))
		}
		ttl = d
	}
	expires := s.cfg.Now().Add(ttl)
	tok, id, secret := auth.NewAPIToken()
	err := s.cfg.State.AddAPIToken(c.Request().Context(), PrincipalOf(c).Name, store.APIToken{
		ID: id, Name: strings.TrimSpace(req.Name), Role: req.Role, SecretHash: auth.HashSecret(secret), ExpiresAt: expires})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, APITokenResponse{ID: id, Token: tok})
}

func (s *Server) revokeAPIToken(c echo.Context) error {
	if err := s.cfg.State.RevokeAPIToken(c.Request().Context(), PrincipalOf(c).Name, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// Where a node's identity comes from (NodeStatus.Identity).
const (
	// IdentityCA: the node enrolled with a join token; its SVID is from
	// the coordinator's embedded CA.
	IdentityCA = "ca"
	// IdentitySPIRE: the node's SVID is from the trusted SPIRE deployment
	// (admitted by the SPIFFE mapping or by an admin).
	IdentitySPIRE = "spire"
)

// NodeStatus is a node with its SPIFFE ID, where that identity comes
// from, and whether its view stream is connected.
type NodeStatus struct {
	store.Node
	SPIFFEID string `json:"spiffeID"`
	Identity string `json:"identity"`
	Online   bool   `json:"online"`
}

// nodeStatuses lists the nodes with their identities: the SPIRE SPIFFE ID
// of a node admitted through SPIRE, else the ID the embedded CA issues.
func (s *Server) nodeStatuses(tx store.Tx) ([]NodeStatus, error) {
	nodes, err := tx.ListNodes()
	if err != nil {
		return nil, err
	}
	recs, err := tx.ListSpiffeNodes()
	if err != nil {
		return nil, err
	}
	spire := map[string]string{}
	for _, r := range recs {
		if r.Status == store.SpiffeAdmitted {
			spire[r.Name] = r.ID
		}
	}
	online := s.cfg.State.Online()
	out := make([]NodeStatus, 0, len(nodes))
	for _, n := range nodes {
		ns := NodeStatus{Node: n, Online: online[n.Name], Identity: IdentityCA}
		if id, ok := spire[n.Name]; ok {
			ns.SPIFFEID, ns.Identity = id, IdentitySPIRE
		} else if id, err := s.cfg.CA.NodeID(n.Name); err == nil {
			ns.SPIFFEID = id.String()
		}
		out = append(out, ns)
	}
	return out, nil
}

// Status is the overview: nodes, namespaces, the baseline.
type Status struct {
	Now        time.Time         `json:"now"`
	Baseline   policy.Baseline   `json:"baseline"`
	SVIDTTL    string            `json:"svidTTL"`
	Nodes      []NodeStatus      `json:"nodes"`
	Namespaces []store.Namespace `json:"namespaces"`
}

func (s *Server) status(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		nodes, err := s.nodeStatuses(tx)
		if err != nil {
			return nil, err
		}
		nss, err := tx.ListNamespaces()
		if err != nil {
			return nil, err
		}
		return Status{Now: s.cfg.Now(), Baseline: s.cfg.State.Baseline(), SVIDTTL: s.cfg.SVIDTTL.String(),
			Nodes: nodes, Namespaces: append([]store.Namespace{}, nss...)}, nil
	})
}

// PolicyProblem is one validation error, at its line of the request.
type PolicyProblem struct {
	Document int    `json:"document,omitempty"`
	Line     int    `json:"line,omitempty"`
	Field    string `json:"field,omitempty"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// PolicyChange is one policy as stored now (Before, "" if new) and as it
// would be stored (After).
type PolicyChange struct {
	Key    string `json:"key"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// Validation is the answer of policies/validate.
type Validation struct {
	Valid    bool            `json:"valid"`
	Problems []PolicyProblem `json:"problems,omitempty"`
	Changes  []PolicyChange  `json:"changes,omitempty"`
}

// validatePolicies checks policy YAML without applying it and returns
// the validator's problems with their lines, or the change it would make.
func (s *Server) validatePolicies(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	ps, err := policy.ParseFiles(policy.File{Name: "editor", Data: body})
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		out := Validation{}
		for _, fe := range ve.Errors {
			out.Problems = append(out.Problems, PolicyProblem{Document: fe.Document, Line: fe.Line, Field: fe.Field, Reason: fe.Reason, Message: fe.Error()})
		}
		return c.JSON(http.StatusOK, out)
	}
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return c.JSON(http.StatusOK, Validation{Problems: []PolicyProblem{{Reason: "no NetworkPolicy documents found", Message: "no NetworkPolicy documents found: paste at least one"}}})
	}
	return s.read(c, func(tx store.Tx) (any, error) {
		stored, err := tx.ListPolicies()
		if err != nil {
			return nil, err
		}
		out := Validation{Valid: true}
		for _, p := range ps {
			after, err := state.PolicyYAML(p)
			if err != nil {
				return nil, err
			}
			ch := PolicyChange{Key: p.Key(), After: after}
			for _, sp := range stored {
				if sp.Namespace == p.Namespace && sp.Name == p.Name {
					ch.Before = sp.YAML
				}
			}
			out.Changes = append(out.Changes, ch)
		}
		return out, nil
	})
}

// WhatIf is the answer of whatif: the verdict and the policies deciding it.
type WhatIf struct {
	From     string             `json:"from"`
	To       string             `json:"to"`
	Port     uint16             `json:"port"`
	Protocol inventory.Protocol `json:"protocol"`
	Baseline policy.Baseline    `json:"baseline"`
	policy.Verdict
}

func (s *Server) whatIf(c echo.Context) error {
	from, to := c.QueryParam("from"), c.QueryParam("to")
	port, err := strconv.ParseUint(c.QueryParam("port"), 10, 16)
	if err != nil || port == 0 {
		return fail(http.StatusBadRequest, "invalid", "port %q: want a port number from 1 to 65535", c.QueryParam("port"))
	}
	proto := inventory.Protocol(strings.ToUpper(c.QueryParam("protocol")))
	if proto == "" {
		proto = inventory.TCP
	}
	if !proto.Valid() {
		return fail(http.StatusBadRequest, "invalid", "protocol %q: want TCP, UDP or SCTP", proto)
	}
	ev, ws, err := s.cfg.State.Evaluator(c.Request().Context())
	if err != nil {
		return err
	}
	v, err := ev.WhatIf(ws, from, to, proto, uint16(port))
	if errors.Is(err, policy.ErrNoWorkload) {
		return fail(http.StatusNotFound, "not_found", "%v", err)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, WhatIf{From: from, To: to, Port: uint16(port), Protocol: proto, Baseline: ev.Baseline(), Verdict: v})
}

// GraphNode is a workload (or a node, standing for itself) in the graph.
type GraphNode struct {
	Key       string `json:"key"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node,omitempty"`
	IsNode    bool   `json:"isNode,omitempty"`
}

// GraphEdge says From may reach To on Ports.
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

// graph returns the connectivity graph; with ?namespace=NS only the
// workloads of NS and the edges that touch them (and their other ends).
func (s *Server) graph(c echo.Context) error {
	ns := c.QueryParam("namespace")
	ev, ws, err := s.cfg.State.Evaluator(c.Request().Context())
	if err != nil {
		return err
	}
	nodeNames := map[string]bool{}
	err = s.cfg.State.Read(c.Request().Context(), func(tx store.Tx) error {
		nodes, err := tx.ListNodes()
		for _, n := range nodes {
			nodeNames[n.Namespace+"/"+n.Name] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	g := netmap.ConnectivityGraph(ev, ws, nodeNames, ns)
	out := Graph{Nodes: make([]GraphNode, 0, len(g.Nodes)), Edges: make([]GraphEdge, 0, len(g.Edges))}
	for _, n := range g.Nodes {
		out.Nodes = append(out.Nodes, GraphNode{Key: n.Key, Namespace: n.Namespace, Name: n.Name, Node: n.Node, IsNode: n.IsNode})
	}
	for _, e := range g.Edges {
		out.Edges = append(out.Edges, GraphEdge{From: e.From, To: e.To, Ports: e.Ports})
	}
	return c.JSON(http.StatusOK, out)
}

// eventKeepalive is how often the event stream sends a comment so that
// proxies and the browser keep the connection.
const eventKeepalive = 15 * time.Second

// events streams state events as server-sent events: "change" with an
// Event as data, and "resync" when events were lost. At least once per
// keepalive interval (Config.Keepalive) it authenticates the request
// again; when its credential no longer holds (user deleted, session
// ended, API token revoked or expired) it sends "end" with a wire.Error
// as data and ends.
func (s *Server) events(c echo.Context) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, ": latch events\n\n"); err != nil {
		return nil
	}
	w.Flush()
	watcher, stop := s.cfg.State.Watch()
	defer stop()
	tick := time.NewTicker(eventKeepalive)
	defer tick.Stop()
	recheck := time.NewTicker(s.cfg.Keepalive)
	defer recheck.Stop()
	ctx := c.Request().Context()
	for {
		var msg string
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			msg = ": keepalive\n\n"
		case <-recheck.C:
			err := s.adminStillAuthorized(c)
			if err == nil {
				continue
			}
			ae := classify(err)
			data, _ := jsonString(wire.Error{Error: ae.err.Error(), Code: ae.code})
			_, _ = io.WriteString(w, "event: end\ndata: "+data+"\n\n")
			w.Flush()
			return nil
		case ev := <-watcher.C:
			if watcher.Lost() {
				msg = "event: resync\ndata: {}\n\n"
			}
			data, err := jsonString(ev)
			if err != nil {
				return err
			}
			msg += "event: change\ndata: " + data + "\n\n"
		}
		if _, err := io.WriteString(w, msg); err != nil {
			return nil
		}
		w.Flush()
	}
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/policy"
)

const adminActor = "admin"

func (s *Server) adminRoutes(g *echo.Group) {
	g.GET("/nodes", s.listNodes)
	g.GET("/nodes/:name", s.getNode)
	g.DELETE("/nodes/:name", s.deleteNode)
	g.GET("/nodes/:name/view", s.nodeView)
	g.GET("/nodes/:name/grants", s.nodeGrants)
	g.POST("/nodes/:name/grants", s.grantNode)
	g.POST("/nodes/:name/grants/revoke", s.revokeNodeGrants)
	g.GET("/namespaces", s.listNamespaces)
	g.PUT("/namespaces/:name", s.putNamespace)
	g.GET("/workloads", s.listWorkloads)
	g.GET("/policies", s.listPolicies)
	g.POST("/policies", s.applyPolicies, BodyLimit(PolicyBodyLimit))
	g.DELETE("/policies/:namespace/:name", s.deletePolicy)
	g.GET("/tokens", s.listTokens)
	g.POST("/tokens", s.createToken)
	g.DELETE("/tokens/:id", s.revokeToken)
	g.GET("/audit", s.listAudit)
	g.GET("/flows", s.listFlows)
	g.GET("/namespaces/:name/suggest", s.suggest)
	g.GET("/whoami", s.whoami)
	g.GET("/users", s.listUsers)
	g.POST("/users", s.createUser)
	g.DELETE("/users/:name", s.deleteUser)
	g.GET("/apitokens", s.listAPITokens)
	g.POST("/apitokens", s.createAPIToken)
	g.DELETE("/apitokens/:id", s.revokeAPIToken)
	g.GET("/status", s.status)
	g.POST("/policies/validate", s.validatePolicies, BodyLimit(PolicyBodyLimit))
	g.GET("/whatif", s.whatIf)
	g.GET("/graph", s.graph)
	g.GET("/events", s.events)
}

func (s *Server) read(c echo.Context, fn func(store.Tx) (any, error)) error {
	var out any
	err := s.cfg.State.Read(c.Request().Context(), func(tx store.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// listNodes lists the nodes with their SPIFFE IDs, where those come from,
// and whether they are online.
func (s *Server) listNodes(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) { return s.nodeStatuses(tx) })
}

func (s *Server) getNode(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		n, err := tx.GetNode(c.Param("name"))
		if err != nil {
			return nil, err
		}
		return s.nodeStatus(tx, n)
	})
}

func (s *Server) deleteNode(c echo.Context) error {
	if err := s.cfg.State.DeleteNode(c.Request().Context(), PrincipalOf(c).Name, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// nodeGrants shows what a node may host.
func (s *Server) nodeGrants(c echo.Context) error {
	g, err := s.cfg.State.Grants(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toNodeGrants(g))
}

// grantNode adds grants to a node; revokeNodeGrants removes them. Both
// answer with the node's grants after the change.
func (s *Server) grantNode(c echo.Context) error {
	g, err := bindGrantSet(c)
	if err != nil {
		return err
	}
	if _, err := s.cfg.State.GrantNode(c.Request().Context(), PrincipalOf(c).Name, c.Param("name"), g); err != nil {
		return err
	}
	return s.nodeGrants(c)
}

func (s *Server) revokeNodeGrants(c echo.Context) error {
	g, err := bindGrantSet(c)
	if err != nil {
		return err
	}
	if _, err := s.cfg.State.RevokeNode(c.Request().Context(), PrincipalOf(c).Name, c.Param("name"), g); err != nil {
		return err
	}
	return s.nodeGrants(c)
}

func bindGrantSet(c echo.Context) (grant.Set, error) {
	var req adminapi.GrantSet
	if err := bind(c, &req); err != nil {
		return grant.Set{}, err
	}
	return fromGrantSet(req)
}

func (s *Server) nodeView(c echo.Context) error {
	v := s.cfg.State.View(c.Param("name"))
	if v == nil {
		return fail(http.StatusNotFound, "not_found", "node %q has no view: it does not exist", c.Param("name"))
	}
	return c.JSON(http.StatusOK, toNodeView(v))
}

func (s *Server) listNamespaces(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		nss, err := tx.ListNamespaces()
		return list(nss, toNamespace), err
	})
}

// putNamespace takes the namespace's name from the path; a name in the
// body is ignored.
func (s *Server) putNamespace(c echo.Context) error {
	var req adminapi.Namespace
	if err := bind(c, &req); err != nil {
		return err
	}
	ns := store.Namespace{Name: c.Param("name"), Labels: req.Labels, Mode: req.Mode}
	if err := s.cfg.State.PutNamespace(c.Request().Context(), PrincipalOf(c).Name, ns); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toNamespace(ns))
}

func (s *Server) listWorkloads(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		ws, err := tx.ListWorkloads()
		return list(ws, toWorkload), err
	})
}

func (s *Server) listPolicies(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		ps, err := tx.ListPolicies()
		return list(ps, toPolicy), err
	})
}

// applyPolicies takes multi-document YAML in the body; the file name for
// messages comes from the "filename" query parameter, and the namespace
// of policies that name none from the "namespace" query parameter (as
// kubectl's -n; without it, every policy must name its namespace).
func (s *Server) applyPolicies(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	name := c.QueryParam("filename")
	if name == "" {
		name = "request"
	}
	keys, err := s.cfg.State.ApplyPoliciesWith(c.Request().Context(), PrincipalOf(c).Name, policyOptions(c), policy.File{Name: name, Data: body})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, adminapi.PolicyApplied{Applied: keys})
}

// policyOptions reads the "namespace" query parameter of the policy
// endpoints: the namespace of policies that name none.
func policyOptions(c echo.Context) policy.ParseOptions {
	return policy.ParseOptions{DefaultNamespace: c.QueryParam("namespace")}
}

func (s *Server) deletePolicy(c echo.Context) error {
	if err := s.cfg.State.DeletePolicy(c.Request().Context(), PrincipalOf(c).Name, c.Param("namespace"), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) createToken(c echo.Context) error {
	var req adminapi.JoinTokenRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	workloads, err := fromGrants(req.Workloads)
	if err != nil {
		return err
	}
	if req.Uses == 0 {
		req.Uses = 1
	}
	ttl := time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return fail(http.StatusBadRequest, "invalid", "ttl %q: want a positive duration such as 30m or 24h", req.TTL)
		}
		if d > state.MaxJoinTokenTTL {
			return fail(http.StatusBadRequest, "invalid", "ttl %q: a join token is valid for at most %s: choose a shorter ttl", req.TTL, state.Days(state.MaxJoinTokenTTL))
		}
		ttl = d
	}
	tok, hash, err := ca.NewToken(s.cfg.CA.Fingerprint())
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	t := store.Token{ID: tok.ID, SecretHash: hash, Namespace: req.Namespace, Labels: req.Labels, Workloads: workloads,
		UsesLeft: req.Uses, ExpiresAt: now.Add(ttl), CreatedAt: now}
	if err := s.cfg.State.AddToken(c.Request().Context(), PrincipalOf(c).Name, t); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, adminapi.JoinTokenCreated{Token: tok.String(), ID: tok.ID, ExpiresAt: t.ExpiresAt})
}

// listTokens lists the join tokens; the converter leaves out their
// secrets' hashes.
func (s *Server) listTokens(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		ts, err := tx.ListTokens()
		return list(ts, toJoinToken), err
	})
}

func (s *Server) revokeToken(c echo.Context) error {
	if err := s.cfg.State.RevokeToken(c.Request().Context(), PrincipalOf(c).Name, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listAudit(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		es, err := tx.ListAudit(200)
		return list(es, toAuditEntry), err
	})
}

package api

import (
	"crypto/tls"
	"errors"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func (s *Server) spiffeRoutes(g *echo.Group) {
	g.GET("/spiffe/nodes", s.listSpiffeNodes)
	g.POST("/spiffe/nodes/approve", s.approveSpiffeNode)
	g.POST("/spiffe/nodes/reject", s.rejectSpiffeNode)
}

// listSpiffeNodes lists every SPIFFE ID that presented itself as a node:
// pending, rejected and admitted; ?status= filters.
func (s *Server) listSpiffeNodes(c echo.Context) error {
	status := c.QueryParam("status")
	return s.read(c, func(tx store.Tx) (any, error) {
		all, err := tx.ListSpiffeNodes()
		out := []adminapi.SpiffeNode{}
		for _, r := range all {
			if status == "" || r.Status == status {
				out = append(out, toSpiffeNode(r))
			}
		}
		return out, err
	})
}

func (s *Server) approveSpiffeNode(c echo.Context) error {
	var req adminapi.SpiffeApproval
	if err := bind(c, &req); err != nil {
		return err
	}
	workloads, err := fromGrants(req.Workloads)
	if err != nil {
		return err
	}
	if req.Node == "" || req.Namespace == "" {
		return fail(http.StatusBadRequest, "invalid", "approve needs the node (its name or SPIFFE ID) and a namespace")
	}
	n, err := s.cfg.State.ApproveSpiffeNode(c.Request().Context(), PrincipalOf(c).Name, req.Node, req.Namespace, req.Labels,
		grant.Set{Workloads: workloads, WorkloadIDs: req.WorkloadIDs})
	if err != nil {
		return err
	}
	return s.read(c, func(tx store.Tx) (any, error) { return s.nodeStatus(tx, n) })
}

func (s *Server) rejectSpiffeNode(c echo.Context) error {
	var req adminapi.SpiffeRejection
	if err := bind(c, &req); err != nil {
		return err
	}
	if req.Node == "" {
		return fail(http.StatusBadRequest, "invalid", "reject needs the node (its name or SPIFFE ID)")
	}
	if err := s.cfg.State.RejectSpiffeNode(c.Request().Context(), PrincipalOf(c).Name, req.Node); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// spiffeNode authenticates a node whose certificate is an SVID of the
// trusted SPIRE trust domain: verified against SPIRE's bundle, admitted by
// the mapping or waiting for approval.
func (s *Server) spiffeNode(c echo.Context) (store.Node, error) {
	r := c.Request()
	id, err := s.cfg.Spiffe.Verify(r.TLS.PeerCertificates, s.cfg.Now())
	if err != nil {
		return store.Node{}, fail(http.StatusUnauthorized, "bad_certificate", "%v", err)
	}
	n, err := s.cfg.State.SpiffeNode(r.Context(), id.String())
	switch {
	case errors.Is(err, state.ErrPending):
		return store.Node{}, fail(http.StatusForbidden, "pending", "%v", err)
	case errors.Is(err, state.ErrRejected):
		return store.Node{}, fail(http.StatusForbidden, "rejected", "%v", err)
	case errors.Is(err, state.ErrInvalid), errors.Is(err, state.ErrConflict):
		return store.Node{}, fail(http.StatusForbidden, "refused", "%v", err)
	case err != nil:
		return store.Node{}, err
	}
	return n, nil
}

// SpiffeALPN is the TLS application protocol a node that takes its
// identity from SPIRE offers, so that the coordinator presents its own
// SPIRE SVID to it instead of the SVID of its embedded CA.
const SpiffeALPN = wire.SpiffeALPN

// TLSConfigWithSPIRE is TLSConfig for a coordinator that also has an SVID
// from its own SPIRE agent (svids): a client offering SpiffeALPN gets the
// SPIRE SVID (the current one at each handshake), every other client the
// embedded CA's. Client certificates are verified per request as with
// TLSConfig.
func TLSConfigWithSPIRE(authority *ca.CA, own *x509svid.SVID, svids x509svid.Source) *tls.Config {
	base := TLSConfig(authority, own)
	spire := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: tlsconfig.GetCertificate(svids),
		ClientAuth:     tls.RequestClientCert,
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, SpiffeALPN) {
			return spire, nil
		}
		return nil, nil
	}
	return base
}

// spiffeWorkload turns a declared workload into an inventory workload and
// checks the form of its SPIFFE ID. A workload's SPIFFE ID becomes its
// label policy.SpiffeIDLabel (set by package state, once the ID is checked
// against the node's workload ID patterns); only a node whose own SVID is
// from SPIRE may declare one, in SPIRE's trust domain. Nobody sets a
// reserved label (policy.IsReservedLabel) directly.
func (s *Server) spiffeWorkload(c echo.Context, d wire.WorkloadDecl) (inventory.Workload, error) {
	w := workloadOf(d)
	for k := range d.Labels {
		if policy.IsReservedLabel(k) {
			return w, fail(http.StatusBadRequest, "invalid", "workload %s/%s: the label %s is set by the coordinator (%s from the workload's SPIFFE ID, spiffe_id=), not declared", d.Namespace, d.Name, k, policy.SpiffeIDLabel)
		}
	}
	if d.SpiffeID == "" {
		return w, nil
	}
	if _, spire := c.Get(ctxSpiffe).(string); !spire || s.cfg.Spiffe == nil {
		return w, fail(http.StatusBadRequest, "invalid", "workload %s/%s declares the SPIFFE ID %s, but this node's identity is not from SPIRE: run the node with --spiffe-socket", d.Namespace, d.Name, d.SpiffeID)
	}
	id, err := spiffeid.FromString(d.SpiffeID)
	if err != nil || policy.CheckSpiffeID(d.SpiffeID) != nil || id.TrustDomain() != s.cfg.Spiffe.TD {
		return w, fail(http.StatusBadRequest, "invalid", "workload %s/%s: SPIFFE ID %q is not an ID of SPIRE's trust domain %q", d.Namespace, d.Name, d.SpiffeID, s.cfg.Spiffe.TD.Name())
	}
	return w, nil
}

package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/store"
)

// Who is asking, and the overview: nodes with their identities,
// namespaces, the baseline.

func (s *Server) whoami(c echo.Context) error {
	return c.JSON(http.StatusOK, toPrincipal(PrincipalOf(c)))
}

// nodeStatuses lists the nodes with their identities (nodeStatus).
func (s *Server) nodeStatuses(tx store.Tx) ([]adminapi.Node, error) {
	nodes, err := tx.ListNodes()
	if err != nil {
		return nil, err
	}
	spire, err := spireIDs(tx)
	if err != nil {
		return nil, err
	}
	online := s.cfg.State.Online()
	out := make([]adminapi.Node, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, s.withIdentity(n, spire, online))
	}
	return out, nil
}

// nodeStatus is one node with its identity (nodeStatuses).
func (s *Server) nodeStatus(tx store.Tx, n store.Node) (adminapi.Node, error) {
	spire, err := spireIDs(tx)
	if err != nil {
		return adminapi.Node{}, err
	}
	return s.withIdentity(n, spire, s.cfg.State.Online()), nil
}

// spireIDs maps the names of the nodes admitted through SPIRE to their
// SPIFFE IDs.
func spireIDs(tx store.Tx) (map[string]string, error) {
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
	return spire, nil
}

// withIdentity converts a node with its identity: the SPIRE SPIFFE ID of a
// node admitted through SPIRE, else the ID the embedded CA issues.
func (s *Server) withIdentity(n store.Node, spire map[string]string, online map[string]bool) adminapi.Node {
	out := toNode(n)
	out.Online, out.Identity = online[n.Name], adminapi.IdentityCA
	if id, ok := spire[n.Name]; ok {
		out.SpiffeID, out.Identity = id, adminapi.IdentitySPIRE
	} else if id, err := s.cfg.CA.NodeID(n.Name); err == nil {
		out.SpiffeID = id.String()
	}
	return out
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
		return adminapi.Status{Now: s.cfg.Now(), Baseline: string(s.cfg.State.Baseline()), SvidTTL: s.cfg.SVIDTTL.String(),
			Nodes: nodes, Namespaces: list(nss, toNamespace)}, nil
	})
}
